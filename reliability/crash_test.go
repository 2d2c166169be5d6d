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

// The kill schedule: at least killsPerPhase SIGKILLs in each phase of a
// transition (8 phases: 64 kills), each at a random moment of the phase.
const (
	killsPerPhase = 8
	// seedEnv replays a kill schedule; killsEnv asks for more kills per
	// phase (a longer run).
	seedEnv  = "TANDEM_CRASH_SEED"
	killsEnv = "TANDEM_CRASH_KILLS_PER_PHASE"
)

// killJitter bounds the random delay between seeing a phase in the journal
// and the kill: about the phase's length with the test's durations, so
// that kills land anywhere in it (a kill that lands in the next phase
// counts there).
var killJitter = map[reconcile.Phase]time.Duration{
	reconcile.PhasePrepare: 300 * time.Millisecond, // the deploy: ~450ms
	reconcile.PhaseVerify:  300 * time.Millisecond, // the warm-up: 500ms
	// The preview route (both services have one): raise, the LB's 2 checks, lower, as in the shift.
	reconcile.PhasePreviewRoute: 700 * time.Millisecond,
	reconcile.PhaseSmoke:        150 * time.Millisecond, // web's smoke checks: /echo?delay=200ms on every instance at once
	reconcile.PhaseEnable:       300 * time.Millisecond, // the push delay: 500ms
	reconcile.PhaseShift:        700 * time.Millisecond, // raise (an ALB job: 300ms; SLB: at once), the LB's 2 checks (~200ms), lower
	reconcile.PhaseDisable:      300 * time.Millisecond,
	reconcile.PhaseDrain:        800 * time.Millisecond, // propagation 1s, then quiet
	reconcile.PhaseWatch:        700 * time.Millisecond, // verify.window 1s
}

// crashPhases are the phases kills aim at. prepare counts only while a
// deploy is in progress.
var crashPhases = []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhasePreviewRoute, reconcile.PhaseSmoke, reconcile.PhaseEnable,
	reconcile.PhaseShift, reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}

// TestSIGKILLAtEveryPhaseBreaksNoInvariantAndDeploysNoGroupTwice runs two
// services (one behind ALB, one behind SLB, both in Nacos, each with a
// preview route, whose binding the monitor checks like the others) through releases
// and reverts back to back, while the `tandem run` process is killed with
// SIGKILL at random moments of every phase and restarted at once. A monitor
// samples the live state throughout and checks invariants 1-4; at the end
// every transition must have ended in its desired state or in a clean,
// reported abort, no deploy may have run twice, and users (HTTP and
// WebSocket traffic through both load balancers) must have noticed nothing.
func TestSIGKILLAtEveryPhaseBreaksNoInvariantAndDeploysNoGroupTwice(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(seedEnv); v != "" {
		var err error
		seed, err = strconv.ParseUint(v, 10, 64)
		require.NoError(t, err, seedEnv)
	}
	t.Logf("kill schedule seed %d (%s=%d replays it)", seed, seedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, seed>>1))
	perPhase := killsPerPhase
	if v := os.Getenv(killsEnv); v != "" {
		n, err := strconv.Atoi(v)
		require.NoError(t, err, killsEnv)
		perPhase = max(n, killsPerPhase)
	}
	services := []string{"web", "api"}
	e := newEnv(t, envOptions{
		services: []stage.Service{{Name: "web", LB: spec.KindALB, Nacos: true, Preview: true, Gates: webSmoke}, {Name: "api", LB: spec.KindSLB, Nacos: true, Preview: true}},
		timing: stage.Timing{Propagation: time.Second, Quiet: 100 * time.Millisecond, VerifyWindow: time.Second,
			HealthDeadline: 20 * time.Second, DeployTimeout: 10 * time.Second, DrainTimeout: 15 * time.Second},
		warmUp: 500 * time.Millisecond,
	})
	ctx, cancel := context.WithTimeout(t.Context(), 6*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, services...)
	web := e.startTraffic(e.stage.URL("web"), 50, 5)
	api := e.startTraffic(e.stage.URL("api"), 50, 5)

	start := time.Now()
	stop := make(chan struct{})
	var wg sync.WaitGroup
	results := make([][]transition, len(services))
	errs := make([]error, len(services))
	for i, svc := range services {
		wg.Go(func() { results[i], errs[i] = drive(ctx, e, svc, stop) })
	}

	kills := map[reconcile.Phase]int{}
	var idleKills, restarts int
	var restartTime time.Duration
	for {
		needy := phasesBelow(kills, perPhase)
		if len(needy) == 0 {
			break
		}
		svc, target, err := awaitPhase(ctx, e.daemon, services, needy)
		require.NoError(t, err, "seed %d: waiting for a transition in phase %v (kills so far %v)", seed, needy, kills)
		select {
		case <-ctx.Done():
			t.Fatalf("seed %d: %v", seed, ctx.Err())
		case <-time.After(time.Duration(rng.Int64N(int64(killJitter[target])))):
		}
		phase := reconcile.Phase("idle")
		if st, err := e.daemon.journal(svc); err == nil && st.Transition != nil {
			phase = st.Transition.Phase
		}
		e.daemon.kill()
		if phase == "idle" {
			idleKills++
		} else {
			kills[phase]++
		}
		t0 := time.Now()
		e.daemon.start()
		restartTime += time.Since(t0)
		restarts++
	}
	close(stop)
	wg.Wait()
	for i, svc := range services {
		require.NoError(t, errs[i], "seed %d: %s", seed, svc)
	}
	total := 0
	for _, n := range kills {
		total += n
	}
	t.Logf("%d SIGKILLs in %s: %v, plus %d between transitions; restart to API up: %s on average",
		total, time.Since(start).Round(time.Second), kills, idleKills, (restartTime / time.Duration(restarts)).Round(time.Millisecond))

	// Invariants 1-4 held at every sample.
	e.mon.requireNoViolation()
	samples, gains := e.mon.stats()
	t.Logf("monitor: %d samples, %d weight or enable gains checked", samples, gains)

	// Every transition ended in its desired state or a clean abort, and
	// every release deployed its group exactly once.
	require.Empty(t, e.deploy.repeated(), "seed %d: deploys started more than once", seed)
	counts := map[outcome]int{}
	released := map[string]bool{}
	for i, svc := range services {
		for _, tr := range results[i] {
			counts[tr.outcome]++
			if tr.release {
				released[svc+"/"+string(tr.active)+"/"+tr.version] = true
			}
			if tr.release && tr.outcome == succeeded {
				require.Equal(t, 1, e.deploy.count(svc, tr.active, tr.version), "seed %d: %s release %s deployed once", seed, svc, tr.version)
			}
		}
		g, version := serving(results[i])
		e.requireLiveIs(svc, g, version)
	}
	for _, d := range e.deploy.requests() {
		require.True(t, released[d.Service+"/"+string(d.Group)+"/"+d.Version], "seed %d: deploy %+v was not asked for by a release", seed, d)
	}
	t.Logf("transitions: %v", counts)
	recorded := map[string]int{}
	for _, ev := range e.daemon.eventsFile() {
		recorded[ev.Reason]++
	}
	t.Logf("events log: %d TransitionStarted, %d TransitionSucceeded, %d TransitionAborted, %d StepApplied, %d StepFailed",
		recorded[reconcile.ReasonTransitionStarted], recorded[reconcile.ReasonTransitionSucceeded], recorded[reconcile.ReasonTransitionAborted],
		recorded[reconcile.ReasonStepApplied], recorded[reconcile.ReasonStepFailed])
	requireUnnoticed(t, "web (ALB)", web.Stop())
	requireUnnoticed(t, "api (SLB)", api.Stop())
	e.daemon.stop()
}

// webSmoke are web's smoke tests in the SIGKILL suite: slow enough to be
// killed during (a restart runs them again), harmless to repeat.
const webSmoke = `smoke:
  http:
    - {name: echo, method: POST, path: "/echo?delay=200ms", body: smoke, expect: {status: [200], bodyContains: smoke}}
    - {name: version, path: /version, expect: {bodyContains: '"version"'}}
`

// transition is one commit a driver made and how it ended.
type transition struct {
	rev     string
	release bool
	active  spec.Group // the group the commit asks for
	version string
	outcome outcome
}

// serving returns the group and version that serve after the transitions:
// the last one's, or after an aborted release the group that kept serving,
// at the version the transition before brought it to.
func serving(trs []transition) (spec.Group, string) {
	last := trs[len(trs)-1]
	if last.outcome == succeeded {
		return last.active, last.version
	}
	if len(trs) == 1 {
		return last.active.Other(), "1.0.0" // the stage's initial version
	}
	prev := trs[len(trs)-2]
	return prev.active, prev.version
}

// drive commits releases and reverts of a service back to back, each once
// the previous one has ended, until stop is closed.
func drive(ctx context.Context, e *env, service string, stop <-chan struct{}) ([]transition, error) {
	var out []transition
	for i := 1; ; i++ {
		for _, version := range []string{fmt.Sprintf("1.%d.0", i), ""} {
			select {
			case <-stop:
				return out, nil
			default:
			}
			rev, err := e.commit(ctx, service, version)
			if err != nil {
				return out, err
			}
			res, st, err := e.awaitOutcome(ctx, service, rev)
			if err != nil {
				return out, err
			}
			// After an aborted release, the revert that follows puts Git
			// back on the group that kept serving.
			out = append(out, transition{rev: rev, release: version != "", active: st.DesiredActive, version: st.DesiredVersion, outcome: res})
		}
	}
}

// phasesBelow lists the phases with fewer than n kills.
func phasesBelow(kills map[reconcile.Phase]int, n int) []reconcile.Phase {
	var out []reconcile.Phase
	for _, p := range crashPhases {
		if kills[p] < n {
			out = append(out, p)
		}
	}
	return out
}

// awaitPhase polls the journals until a service's transition is in one of
// phases (prepare counts only with its deploy started and not finished),
// and returns the service and the phase.
func awaitPhase(ctx context.Context, d *daemon, services []string, phases []reconcile.Phase) (string, reconcile.Phase, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var svc string
	var phase reconcile.Phase
	err := poll(ctx, 2*time.Millisecond, func() bool {
		for _, name := range services {
			st, err := d.journal(name)
			if err != nil || st.Transition == nil || !slices.Contains(phases, st.Transition.Phase) {
				continue
			}
			if t := st.Transition; t.Phase == reconcile.PhasePrepare && (!t.Deploy.Started || t.Deploy.Done) {
				continue
			}
			svc, phase = name, st.Transition.Phase
			return true
		}
		return false
	})
	if err != nil {
		return "", "", fmt.Errorf("no transition reached phase %v: %w", phases, err)
	}
	return svc, phase, nil
}
