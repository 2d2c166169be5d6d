package reconcile_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// oldJournal is a journal written before the transition's deploy and drain
// facts moved into their own objects: they sit at its top level.
const oldJournal = `{
  "service": "user-service",
  "transition": {
    "id": "user-service-20250301T025700.000000000",
    "kind": "release",
    "from": "A",
    "to": "B",
    "version": "1.1.0",
    "fromVersion": "1.0.0",
    "revision": "rev-1.1.0",
    "desiredActive": "B",
    "desiredVersion": "1.1.0",
    "phase": "drain",
    "started": "2025-03-01T02:57:00Z",
    "phaseSince": "2025-03-01T03:00:00Z",
    "deployStarted": true,
    "deployStartedAt": "2025-03-01T02:57:01Z",
    "deployDone": true,
    "served": true,
    "signaled": true,
    "zeroSince": "2025-03-01T03:00:30Z",
    "ceiling": true,
    "closed": 3,
    "closedOn": ["alb:prod/sgp-1"]
  }
}`

func TestAJournalInTheOldFlatFormStillLoads(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "user-service.json"), []byte(oldJournal), 0o600))
	store, err := reconcile.NewFileStore(dir)
	require.NoError(t, err)
	st, err := store.Load(context.Background(), "user-service")
	require.NoError(t, err)
	tr := st.Transition
	require.NotNil(t, tr)
	require.Equal(t, reconcile.PhaseDrain, tr.Phase)
	require.Equal(t, spec.GroupB, tr.To)
	require.Equal(t, reconcile.DeployProgress{Started: true, StartedAt: time.Date(2025, 3, 1, 2, 57, 1, 0, time.UTC), Done: true}, tr.Deploy)
	require.Equal(t, reconcile.DrainProgress{Signaled: true, ZeroSince: time.Date(2025, 3, 1, 3, 0, 30, 0, time.UTC), Ceiling: true, Closed: 3,
		ClosedOn: []string{"alb:prod/sgp-1"}}, tr.Drain)
	require.True(t, tr.Served)

	// Saved again, it is in the new form and reads back the same.
	require.NoError(t, store.Save(context.Background(), st))
	b, err := os.ReadFile(filepath.Join(dir, "user-service.json"))
	require.NoError(t, err)
	require.NotContains(t, string(b), "deployStarted")
	require.Contains(t, string(b), `"deploy"`)
	again, err := store.Load(context.Background(), "user-service")
	require.NoError(t, err)
	require.Equal(t, st, again)
}

// A release resumed from an old journal in the middle of its drain does
// not deploy again and does not signal the drained group a second time.
func TestAReleaseResumesFromAnOldFlatJournal(t *testing.T) {
	e := newEnv(t, service(t, spec.GroupA, "1.0.0"), spec.GroupA, "1.0.0", "1.0.0")
	want := service(t, spec.GroupB, "1.1.0")
	// Run the release up to its drain, then rewrite its journal in the old form.
	for range 200 {
		if st := e.state(want.Name); st.Transition != nil && st.Transition.Phase == reconcile.PhaseDrain && st.Transition.Drain.Signaled {
			break
		}
		_ = e.pass(want)
	}
	st := e.state(want.Name)
	var err error
	require.True(t, st.Transition.Drain.Signaled)
	require.True(t, st.Transition.Deploy.Done)
	require.Len(t, e.world.Deploys(), 1)
	e.world.UpdateApp("10.0.1.11:8080", func(a *memory.App) { a.Signalled = false })
	dir := t.TempDir()
	writeFlat(t, dir, st)
	e.store, err = reconcile.NewFileStore(dir)
	require.NoError(t, err)
	e.rec = e.reconciler() // a restart of the daemon on the old journal
	require.NoError(t, e.converge(want, 500))
	require.Len(t, e.world.Deploys(), 1, "no second deploy")
	require.False(t, e.world.App("10.0.1.11:8080").Signalled, "no second drain signal")
}

// writeFlat journals st in the old flat form.
func writeFlat(t *testing.T, dir string, st reconcile.State) {
	t.Helper()
	b, err := json.Marshal(st)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	tr := m["transition"].(map[string]any)
	for sub, names := range map[string]map[string]string{
		"deploy": {"started": "deployStarted", "startedAt": "deployStartedAt", "done": "deployDone"},
		"drain":  {"signaled": "signaled", "zeroSince": "zeroSince", "ceiling": "ceiling", "closed": "closed", "closedOn": "closedOn"},
	} {
		o, _ := tr[sub].(map[string]any)
		for k, old := range names {
			if v, ok := o[k]; ok {
				tr[old] = v
			}
		}
		delete(tr, sub)
	}
	b, err = json.Marshal(m)
	require.NoError(t, err)
	require.NotContains(t, string(b), `"deploy"`)
	require.NoError(t, os.WriteFile(filepath.Join(dir, st.Service+".json"), b, 0o600))
}
