package reliability_test

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// loadgenBucket is the resolution of loadgen's timeline (its default).
const loadgenBucket = 100 * time.Millisecond

// faultTiming is short but keeps the drain honest: consumers of Nacos need
// drain.propagation (their cache plus the push delay) to move.
var faultTiming = stage.Timing{Quiet: 200 * time.Millisecond, VerifyWindow: time.Second, HealthDeadline: 15 * time.Second,
	DeployTimeout: 3 * time.Second, DrainTimeout: 20 * time.Second}

// faultCase is one fault injected into a release of service "web" (and
// its revert) under live traffic.
type faultCase struct {
	name string
	lb   string // spec.KindALB or spec.KindSLB
	// window replaces verify.window (the watch must outlast the failure
	// threshold when the fault comes after the shift).
	window time.Duration
	// hook, when set, replaces the http deploy hook with this shell script
	// (deploy.exec).
	hook string
	// before runs before the release is committed; during runs beside it.
	before, during func(t *testing.T, e *env, ctx context.Context)
	want           outcome
	// reported checks that the fault was reported: the daemon's events,
	// the status at the end of the release, and its log.
	reported func(t *testing.T, e *env, evs []reconcile.Event, st reconcile.Status, log string)
}

// TestFaultsEndSafeAndReportedAndUsersNoticeNothing injects each fault of
// the systems Tandem depends on into a release and its revert, with HTTP and
// WebSocket traffic through the load balancer and through a Nacos consumer.
// Each must end safe (the monitor saw no invariant broken; the release
// completed, or was undone with the old group serving), be reported, and
// fail no user request.
func TestFaultsEndSafeAndReportedAndUsersNoticeNothing(t *testing.T) {
	for _, tc := range []faultCase{
		{name: "20% throttling and 5xx on ALB are retried", lb: spec.KindALB, before: throttle, want: succeeded, reported: reportsRetries},
		{name: "20% throttling and 5xx on SLB are retried", lb: spec.KindSLB, before: throttle, want: succeeded, reported: reportsRetries},
		{
			name: "slow ALB jobs and a job that fails are waited for and retried",
			lb:   spec.KindALB,
			before: func(t *testing.T, e *env, _ context.Context) {
				e.stage.Alibaba().SetFaults(emulator.Faults{JobDelay: 2 * time.Second})
				e.stage.Alibaba().FailJobs(1, "SystemBusy")
			},
			want: succeeded,
			reported: func(t *testing.T, e *env, evs []reconcile.Event, _ reconcile.Status, _ string) {
				failed := find(evs, reconcile.ReasonStepFailed, reconcile.PhaseShift)
				require.NotEmpty(t, failed, "the failed job is reported: %s", reasons(evs))
				require.Contains(t, failed[0].Message, "SystemBusy")
				for _, e := range find(evs, reconcile.ReasonPhaseCompleted, reconcile.PhaseShift) {
					require.GreaterOrEqual(t, e.Duration, 2*time.Second, "the shift waited for its slow job")
				}
			},
		},
		{
			name:     "Nacos restarted in the enable phase",
			lb:       spec.KindALB,
			during:   restartNacosIn(reconcile.PhaseEnable),
			want:     succeeded,
			reported: reportsNacosOutage,
		},
		{
			name:     "Nacos restarted in the disable phase",
			lb:       spec.KindALB,
			during:   restartNacosIn(reconcile.PhaseDisable),
			want:     succeeded,
			reported: reportsNacosOutage,
		},
		{
			name: "an http deploy that fails aborts the release",
			lb:   spec.KindALB,
			before: func(t *testing.T, e *env, _ context.Context) {
				e.deploy.setMode(deployFail)
			},
			want:     aborted,
			reported: reportsAbort("database migration 0042 failed"),
		},
		{
			name: "an http deploy that hangs aborts the release at deploy.timeout",
			lb:   spec.KindALB,
			before: func(t *testing.T, e *env, _ context.Context) {
				e.deploy.setMode(deployHang)
			},
			want:     aborted,
			reported: reportsAbort("deploy.timeout 3s"),
		},
		{
			name:     "an exec hook that fails aborts the release",
			lb:       spec.KindSLB,
			hook:     "echo \"deploying $TANDEM_SERVICE $TANDEM_VERSION to $TANDEM_GROUP\"\necho 'artifact not found' >&2\nexit 3\n",
			want:     aborted,
			reported: reportsAbort("artifact not found"),
		},
		{
			name: "an exec hook that hangs is killed at deploy.timeout and the release aborts",
			lb:   spec.KindSLB,
			hook: "echo $$ > \"$HOOK_PID_FILE\"\nexec sleep 3600\n",
			want: aborted,
			reported: func(t *testing.T, e *env, evs []reconcile.Event, st reconcile.Status, log string) {
				reportsAbort("deploy.timeout 3s")(t, e, evs, st, log)
				data, err := os.ReadFile(e.hookPIDFile)
				require.NoError(t, err)
				pid, err := strconv.Atoi(strings.TrimSpace(string(data)))
				require.NoError(t, err)
				require.ErrorIs(t, syscall.Kill(pid, 0), syscall.ESRCH, "the hung hook was killed")
			},
		},
		{
			name:   "a health check that fails after the shift swaps back",
			lb:     spec.KindALB,
			window: 10 * time.Second,
			during: func(t *testing.T, e *env, ctx context.Context) {
				_, _, err := awaitPhase(ctx, e.daemon, []string{"web"}, []reconcile.Phase{reconcile.PhaseDisable, reconcile.PhaseDrain})
				require.NoError(t, err)
				svc, _ := e.stage.Service("web")
				for _, in := range svc.Instances(spec.GroupB) {
					e.mon.exemptHealth(in.Addr())
					a, ok := e.stage.Fleet().App(in.Addr())
					require.True(t, ok)
					a.SetHealthy(false)
				}
			},
			want: aborted,
			reported: func(t *testing.T, e *env, evs []reconcile.Event, st reconcile.Status, _ string) {
				require.NotEmpty(t, find(evs, reconcile.ReasonSwapBackStarted, ""), reasons(evs))
				swapped := find(evs, reconcile.ReasonSwappedBack, "")
				require.NotEmpty(t, swapped, reasons(evs))
				require.Contains(t, swapped[0].Message, "consecutive health checks")
				requireStalled(t, st, "ReleaseFailed", "consecutive health checks")
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) { runFault(t, tc) })
	}
}

// runFault runs one case: the release with the fault, then the revert.
func runFault(t *testing.T, tc faultCase) {
	timing := faultTiming
	if tc.window > 0 {
		timing.VerifyWindow = tc.window
	}
	e := newEnv(t, envOptions{services: []stage.Service{{Name: "web", LB: tc.lb, Nacos: true}}, timing: timing,
		warmUp: 200 * time.Millisecond})
	e.daemon.args = []string{"--log-level", "debug"}
	if tc.hook != "" {
		e.useExecHook(tc.hook)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	viaLB := e.startTraffic(e.stage.URL("web"), 100, 10)
	consumerStart := time.Now()
	viaNacos := e.startTraffic(e.stage.ConsumerURL("web"), 30, 3)

	if tc.before != nil {
		tc.before(t, e, ctx)
	}
	rev, err := e.commit(ctx, "web", "1.1.0")
	require.NoError(t, err)
	if tc.during != nil {
		tc.during(t, e, ctx)
	}
	st := e.requireOutcome(ctx, "web", rev, tc.want)
	evs, err := e.daemon.events()
	require.NoError(t, err)
	log, err := os.ReadFile(e.daemon.logPath)
	require.NoError(t, err)
	tc.reported(t, e, evs, st, string(log))
	if tc.want == aborted {
		e.requireLiveIs("web", spec.GroupA, "1.0.0")
	} else {
		e.requireLiveIs("web", spec.GroupB, "1.1.0")
	}

	// The revert goes back to group A, under the same fault.
	rev, err = e.commit(ctx, "web", "")
	require.NoError(t, err)
	e.requireOutcome(ctx, "web", rev, succeeded)
	e.requireLiveIs("web", spec.GroupA, "1.0.0")
	e.mon.requireNoViolation()
	r := viaLB.Stop()
	t.Logf("through the load balancer: %s", r)
	requireUnnoticed(t, "load balancer", r)
	r = viaNacos.Stop()
	t.Logf("through the nacos consumer: %s", r)
	if o := e.nacosOutage; !o.from.IsZero() {
		// While Nacos restarts, its consumers can be pushed an empty list
		// (the apps register again in any order), whatever Tandem does:
		// requests that failed then are the outage's, and are only counted.
		from, to := o.from.Sub(consumerStart)-loadgenBucket, o.to.Sub(consumerStart)+loadgenBucket
		outside, inside := 0, 0
		for _, p := range r.Timeline {
			if p.At >= from && p.At <= to {
				inside += p.Failed
			} else {
				outside += p.Failed
			}
		}
		t.Logf("consumer requests failed during the Nacos restart (%s to %s): %d", from, to, inside)
		require.Zero(t, outside, "nacos consumer: requests failed outside the Nacos restart: %s", r)
		r.Failed -= inside
	}
	requireUnnoticed(t, "nacos consumer", r)
	require.Empty(t, e.deploy.repeated())
	e.daemon.stop()
}

// reportsNacosOutage checks that the daemon reported the outage while it
// lasted (the restart kept Nacos down until it did).
func reportsNacosOutage(t *testing.T, e *env, _ []reconcile.Event, _ reconcile.Status, _ string) {
	require.NotEmpty(t, e.nacosOutage.report, "the outage was reported while it lasted")
	t.Logf("the outage was reported: %s", e.nacosOutage.report)
}

// throttle makes the Alibaba OpenAPI refuse 20% of calls with
// Throttling.User and answer 10% with 503. The first weight write of the
// release meets one of each for certain, so that both are always seen (a
// release makes only a few dozen calls: by chance alone, one in a few runs
// had no 503).
func throttle(_ *testing.T, e *env, _ context.Context) {
	emu := e.stage.Alibaba()
	emu.SetFaults(emulator.Faults{ThrottleRate: 0.2, ErrorRate: 0.1})
	for _, write := range []string{"UpdateServerGroupServersAttribute", "SetVServerGroupAttribute"} {
		emu.Inject(write, "ServiceUnavailable", http.StatusServiceUnavailable, 1)
		emu.Inject(write, "Throttling.User", http.StatusBadRequest, 1)
	}
}

// reportsRetries checks that the throttled and failed calls were retried
// and logged (at debug level: they were absorbed).
func reportsRetries(t *testing.T, _ *env, _ []reconcile.Event, _ reconcile.Status, log string) {
	require.Contains(t, log, "retrying transient api error")
	require.Contains(t, log, "Throttling.User")
	require.Contains(t, log, "ServiceUnavailable")
}

// reportsAbort checks the report of a release undone before the shift: a
// TransitionAborted event and a ReleaseFailed stall, both naming the cause.
func reportsAbort(cause string) func(*testing.T, *env, []reconcile.Event, reconcile.Status, string) {
	return func(t *testing.T, _ *env, evs []reconcile.Event, st reconcile.Status, _ string) {
		abortedEvs := find(evs, reconcile.ReasonTransitionAborted, "")
		require.NotEmpty(t, abortedEvs, reasons(evs))
		require.Contains(t, abortedEvs[0].Message, cause)
		requireStalled(t, st, "ReleaseFailed", cause)
	}
}

func requireStalled(t *testing.T, st reconcile.Status, reason, contains string) {
	t.Helper()
	c, ok := condition(st, reconcile.ConditionStalled)
	require.True(t, ok)
	require.True(t, c.Status, "%+v", st.Conditions)
	require.Equal(t, reason, c.Reason)
	require.Contains(t, c.Message, contains)
}

// find returns the events with a reason (and phase, when not "").
func find(evs []reconcile.Event, reason string, phase reconcile.Phase) []reconcile.Event {
	var out []reconcile.Event
	for _, e := range evs {
		if e.Reason == reason && (phase == "" || e.Phase == phase) {
			out = append(out, e)
		}
	}
	return out
}

// consumerRecovery is how long a Nacos consumer of the stage takes to see
// instances that registered again: the push delay plus its cache.
const consumerRecovery = 1500 * time.Millisecond

// restartNacosIn restarts the Nacos emulator once the release is in phase,
// keeps it down until the daemon reports the outage, and notes when every
// instance is registered again.
func restartNacosIn(phase reconcile.Phase) func(*testing.T, *env, context.Context) {
	return func(t *testing.T, e *env, ctx context.Context) {
		_, _, err := awaitPhase(ctx, e.daemon, []string{"web"}, []reconcile.Phase{phase})
		require.NoError(t, err)
		e.nacosOutage.from = time.Now()
		require.NoError(t, e.stage.RestartNacos(func() {
			e.nacosOutage.report = e.awaitNacosOutageReported(ctx)
		}))
		svc, _ := e.stage.Service("web")
		ref := svc.Registry.Nacos
		require.NoError(t, poll(ctx, 10*time.Millisecond, func() bool {
			return len(e.stage.NacosEmulator().Instances(ref.Namespace, ref.Group, ref.Service)) == 2*len(svc.Instances(spec.GroupA))
		}), "the apps registered again")
		e.nacosOutage.to = time.Now().Add(consumerRecovery)
	}
}

// awaitNacosOutageReported polls the daemon (bounded) until its status or
// its events report that Nacos cannot be reached, and returns the report.
func (e *env) awaitNacosOutageReported(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	since := time.Now()
	var report string
	_ = poll(ctx, 20*time.Millisecond, func() bool {
		if st, err := e.daemon.status("web"); err == nil {
			for _, c := range st.Conditions {
				if !c.Status && c.Type == reconcile.ConditionReady && c.Reason == "TransientError" && strings.Contains(c.Message, "nacos") {
					report = "status: " + c.Message
					return true
				}
			}
		}
		evs, err := e.daemon.events()
		if err != nil {
			return false
		}
		for _, ev := range evs {
			if ev.Reason == reconcile.ReasonStepFailed && ev.Time.After(since) && strings.Contains(ev.Message, "nacos") {
				report = "event: " + ev.Message
				return true
			}
		}
		return false
	})
	return report
}

// useExecHook replaces the http deploy hook of every service with a shell
// script (deploy.exec), committed before the daemon starts, and lets the
// daemon's policy run it with HOOK_PID_FILE in its environment.
func (e *env) useExecHook(script string) {
	e.t.Helper()
	path := filepath.Join(e.dir, "deploy-hook.sh")
	require.NoError(e.t, os.WriteFile(path, []byte("#!/bin/sh\n"+script), 0o755))
	e.hookPIDFile = filepath.Join(e.dir, "hook.pid")
	e.daemon.env = append(e.daemon.env, "HOOK_PID_FILE="+e.hookPIDFile)
	hooks := spec.HookPolicy{Commands: []string{path}, Env: []string{"HOOK_PID_FILE"}}
	e.stage.Config().Policy.Hooks = hooks // the stage loads what the test commits with it
	e.daemon.cfg.Policy.Hooks = hooks
	e.daemon.writeConfig()
	httpHook := regexp.MustCompile(`(?m)^  http: \{url: .*\}$`)
	files, err := filepath.Glob(filepath.Join(e.stage.RepoDir(), "services", "*.yaml"))
	require.NoError(e.t, err)
	for _, f := range files {
		data, err := os.ReadFile(f)
		require.NoError(e.t, err)
		require.True(e.t, httpHook.Match(data), "%s has no http deploy hook", f)
		data = httpHook.ReplaceAll(data, []byte(fmt.Sprintf("  exec: [%q]", path)))
		require.NoError(e.t, os.WriteFile(f, data, 0o644))
	}
	e.gitCommitAll("deploy with a script")
}

// gitCommitAll commits every change of the stage's working tree.
func (e *env) gitCommitAll(msg string) string {
	e.t.Helper()
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	run := func(args ...string) string {
		cmd := exec.Command("git", args...)
		cmd.Dir = e.stage.RepoDir()
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.invalid",
			"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.invalid", "GIT_CONFIG_NOSYSTEM=1")
		out, err := cmd.CombinedOutput()
		require.NoError(e.t, err, "git %v: %s", args, out)
		return strings.TrimSpace(string(out))
	}
	run("commit", "-q", "-a", "-m", msg)
	rev := run("rev-parse", "HEAD")
	e.commits[rev] = len(e.commits)
	return rev
}
