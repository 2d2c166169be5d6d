package reconcile_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// count returns how many events of reason were recorded.
func (e *env) count(reason string) int {
	n := 0
	for _, ev := range e.events {
		if ev.Reason == reason {
			n++
		}
	}
	return n
}

// A journal that cannot be read stalls the service visibly: it stays
// listed, with a Stalled condition saying why, and the stall is announced
// once, then its end.
func TestAnUnreadableJournalIsAVisibleStallAnnouncedOnce(t *testing.T) {
	dir := t.TempDir()
	store, err := reconcile.NewFileStore(dir)
	require.NoError(t, err)
	svc := service(t, spec.GroupA, "1.0.0")
	e := &env{t: t, world: memory.New(), store: store}
	e.world.AddService(svc, spec.GroupA, "1.0.0", "1.0.0")
	e.rec = e.reconciler()
	journal := filepath.Join(dir, svc.Name+".json")
	require.NoError(t, os.WriteFile(journal, []byte("{not json"), 0o600))

	for range 3 {
		err := e.pass(svc)
		require.Equal(t, reconcile.ClassStalled, reconcile.Classify(err))
	}
	st, ok := e.rec.Status(svc.Name)
	require.True(t, ok, "the service stays listed")
	require.Len(t, e.rec.Statuses(), 1)
	require.False(t, st.Ready())
	stalled := condition(st, reconcile.ConditionStalled)
	require.True(t, stalled.Status)
	require.Equal(t, "CorruptJournal", stalled.Reason)
	require.Contains(t, stalled.Message, journal)
	require.Equal(t, 1, e.count(reconcile.ReasonStalled), "one announcement per stall, not one per pass")

	require.NoError(t, os.Remove(journal)) // the operator removed it
	require.NoError(t, e.converge(svc, 10))
	require.Equal(t, 1, e.count(reconcile.ReasonStallResolved))
	st, _ = e.rec.Status(svc.Name)
	require.False(t, condition(st, reconcile.ConditionStalled).Status)
}

// A permanent error while reading live state (a deleted server group, a
// revoked key) is a stall like any other: in status and announced once.
func TestAPermanentErrorReadingLiveStateIsAnnouncedOnce(t *testing.T) {
	svc := service(t, spec.GroupA, "1.0.0")
	e := newEnv(t, svc, spec.GroupA, "1.0.0", "1.0.0")
	gone := true
	e.world.SetFaults(memory.Faults{Fail: func(op string) error {
		if op == "backends" && gone {
			return providers.Permanent("ServerGroupNotFound", errors.New("server group sgp-1 does not exist"))
		}
		return nil
	}})
	for range 3 {
		require.Equal(t, reconcile.ClassStalled, reconcile.Classify(e.pass(svc)))
	}
	st, ok := e.rec.Status(svc.Name)
	require.True(t, ok)
	stalled := condition(st, reconcile.ConditionStalled)
	require.True(t, stalled.Status)
	require.Equal(t, "ServerGroupNotFound", stalled.Reason)
	require.Equal(t, 1, e.count(reconcile.ReasonStalled))
	for _, ev := range e.events {
		if ev.Reason == reconcile.ReasonStalled {
			require.Equal(t, reconcile.EventWarning, ev.Type)
			require.Contains(t, ev.Message, "server group sgp-1 does not exist")
		}
	}

	gone = false
	require.NoError(t, e.converge(svc, 10))
	require.Equal(t, 1, e.count(reconcile.ReasonStallResolved))
}
