package reliability_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// rolloutKillsPerPosition is how often each position of a rollout is hit.
const rolloutKillsPerPosition = 3

// crashRollout has a step that only raises the target (10%), one that
// raises the target and then lowers the serving group (60%: the target at
// its full weight, the serving group at 67 of 100), and the last one.
const crashRollout = "{steps: [{traffic: 10, pause: 300ms}, {traffic: 60, pause: 300ms, hold: 200ms}, {traffic: 100}]}"

// rolloutPosition names where a journaled rollout is: the step and whether
// its weights are being set ("moving", with a raise waited on when
// ShiftWait is set: between the raise and the lower) or it is held.
func rolloutPosition(t *reconcile.Transition) string {
	if t == nil || t.Phase != reconcile.PhaseShift || t.Rollout == nil {
		return ""
	}
	r := t.Rollout
	switch {
	case !r.Reached.IsZero():
		return fmt.Sprintf("step %d held", r.Step+1)
	case t.ShiftWait != nil:
		return fmt.Sprintf("step %d raised, not lowered", r.Step+1)
	}
	return fmt.Sprintf("step %d moving", r.Step+1)
}

// rolloutPositions are the positions kills aim at: every step between its
// raise and its lower (for the last step the lower is the whole of it)
// and every step but the last while held.
var rolloutPositions = []string{
	"step 1 raised, not lowered", "step 1 held",
	"step 2 raised, not lowered", "step 2 held",
	"step 3 raised, not lowered",
}

// TestSIGKILLAtEveryRolloutStepBreaksNoInvariant runs a service behind the
// ALB (and in Nacos) whose releases shift in weight steps, releases and
// reverts back to back (both directions roll out), and kills `tandem run`
// with SIGKILL at every position of the rollout. The monitor checks
// invariants 1-4 throughout; every transition must end in its desired
// state or a clean abort, and the users' traffic must notice nothing.
func TestSIGKILLAtEveryRolloutStepBreaksNoInvariant(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(seedEnv); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, seedEnv)
	}
	t.Logf("kill schedule seed %d (%s=%d replays it)", seed, seedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	e := newEnv(t, envOptions{
		services: []stage.Service{{Name: "web", LB: spec.KindALB, Nacos: true, Rollout: crashRollout}},
		timing: stage.Timing{Propagation: time.Second, Quiet: 100 * time.Millisecond, VerifyWindow: 500 * time.Millisecond,
			HealthDeadline: 20 * time.Second, DeployTimeout: 10 * time.Second, DrainTimeout: 15 * time.Second},
		warmUp: 200 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	web := e.startTraffic(e.stage.URL("web"), 50, 5)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var results []transition
	var driveErr error
	wg.Go(func() { results, driveErr = drive(ctx, e, "web", stop) })

	kills := map[string]int{}
	hit := map[string]bool{} // transition id + position: each position once per transition
	for {
		var needy []string
		for _, p := range rolloutPositions {
			if kills[p] < rolloutKillsPerPosition {
				needy = append(needy, p)
			}
		}
		if len(needy) == 0 {
			break
		}
		var at, id string
		err := poll(ctx, time.Millisecond, func() bool {
			st, err := e.daemon.journal("web")
			at = ""
			if err == nil && st.Transition != nil {
				at, id = rolloutPosition(st.Transition), st.Transition.ID
			}
			return slices.Contains(needy, at) && !hit[id+" "+at]
		})
		require.NoError(t, err, "seed %d: waiting for a rollout at %v (kills so far %v)", seed, needy, kills)
		time.Sleep(time.Duration(rng.Int64N(int64(20 * time.Millisecond)))) // a random moment of the position, not a synchronisation
		if st, err := e.daemon.journal("web"); err == nil {
			at = rolloutPosition(st.Transition)
		}
		e.daemon.kill()
		kills[at]++
		hit[id+" "+at] = true
		e.daemon.start()
	}
	close(stop)
	wg.Wait()
	require.NoError(t, driveErr, "seed %d", seed)
	t.Logf("SIGKILLs by rollout position: %v", kills)

	e.mon.requireNoViolation()
	counts := map[outcome]int{}
	for _, tr := range results {
		counts[tr.outcome]++
		if tr.release && tr.outcome == succeeded {
			require.Equal(t, 1, e.deploy.count("web", tr.active, tr.version), "seed %d: release %s deployed once", seed, tr.version)
		}
	}
	t.Logf("transitions: %v", counts)
	// Every kill resumed its rollout where the journal had it: within a
	// transition, the steps reached never go back.
	last := map[string]int{}
	for _, ev := range e.daemon.eventsFile() {
		var step, steps, share int
		if ev.Reason != reconcile.ReasonRolloutStep {
			continue
		}
		if _, err := fmt.Sscanf(ev.Message, "rollout step %d/%d (%d%%) reached", &step, &steps, &share); err != nil {
			continue
		}
		require.GreaterOrEqual(t, step, last[ev.Transition], "seed %d: %s reached step %d after step %d", seed, ev.Transition, step, last[ev.Transition])
		last[ev.Transition] = step
	}
	require.NotEmpty(t, last, "the events log records the steps reached")
	g, version := serving(results)
	e.requireLiveIs("web", g, version)
	requireUnnoticed(t, "web (ALB)", web.Stop())
	e.daemon.stop()
}
