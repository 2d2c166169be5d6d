package reliability_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// manualStepRollout waits for a decision at 30 %.
const manualStepRollout = "{steps: [{traffic: 30, pause: manual}, {traffic: 100}]}"

// awaitStepPaused waits until the service's status shows a release paused
// at a manual rollout step, and returns the transition.
func (e *env) awaitStepPaused(ctx context.Context, service string) *reconcile.Transition {
	e.t.Helper()
	st := e.daemon.waitStatus(ctx, service, "a release paused at a rollout step", func(s reconcile.Status) bool {
		a, step := s.Transition.OpenPause()
		return a != nil && step > 0
	})
	return st.Transition
}

// killWhileStepPaused SIGKILLs the daemon n times while the release waits
// at a manual step, restarting it each time, and checks that the same
// pause of the same step comes back.
func (e *env) killWhileStepPaused(ctx context.Context, service string, paused *reconcile.Transition, n int) {
	e.t.Helper()
	for range n {
		e.daemon.kill()
		e.daemon.start()
		again := e.awaitStepPaused(ctx, service)
		require.Equal(e.t, paused.ID, again.ID, "the same transition is paused after the restart")
		require.Equal(e.t, paused.Rollout.Step, again.Rollout.Step, "at the same step")
		require.Equal(e.t, paused.Rollout.Pause.Since.UTC(), again.Rollout.Pause.Since.UTC(), "since when: the journaled pause")
	}
}

// TestSIGKILLAtAManualRolloutStepKeepsThePauseAndADecisionEndsIt: a release
// whose first rollout step (30 %) waits for a decision survives SIGKILLs at
// the pause (same step, same pause, announced once, deployed once); a
// decision for the approval gate is refused; the step's promote link
// completes it. A second release is paused at the step, killed, and aborted
// through the API: all traffic goes back to the old group at once.
// Invariants hold throughout and users notice nothing.
func TestSIGKILLAtAManualRolloutStepKeepsThePauseAndADecisionEndsIt(t *testing.T) {
	links := &pauseLinks{links: map[string]map[string]string{}}
	hook := httptest.NewServer(links)
	t.Cleanup(hook.Close)
	e := newEnv(t, envOptions{
		services: []stage.Service{{Name: "web", LB: spec.KindALB, Nacos: true, Rollout: manualStepRollout}},
		timing: stage.Timing{Propagation: time.Second, Quiet: 100 * time.Millisecond, VerifyWindow: time.Second,
			HealthDeadline: 20 * time.Second, DeployTimeout: 10 * time.Second, DrainTimeout: 15 * time.Second},
		config: func(_ *stage.Stage, cfg *spec.Config) {
			cfg.Notify = append(cfg.Notify, spec.Notifier{Name: "approvals", Type: "webhook", URL: hook.URL, Events: []string{reconcile.ReasonApprovalPending}})
		},
	})
	e.daemon.cfg.API.ExternalURL, e.daemon.cfg.API.LinkKeyEnv = "http://"+e.daemon.cfg.Listen, "TANDEM_TEST_LINK_KEY"
	e.daemon.writeConfig()
	e.daemon.env = append(e.daemon.env, "TANDEM_TEST_LINK_KEY=a-link-key-of-more-than-32-bytes-for-tests")
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	web := e.startTraffic(e.stage.URL("web"), 50, 5)

	// Release 1.1.0: paused at step 1, killed twice, still paused there.
	rev, err := e.commit(ctx, "web", "1.1.0")
	require.NoError(t, err)
	paused := e.awaitStepPaused(ctx, "web")
	first, err := links.await(ctx, paused.ID)
	require.NoError(t, err)
	u, err := url.Parse(first["promote"])
	require.NoError(t, err)
	require.Equal(t, "1", u.Query().Get("p"), "the link is bound to step 1")
	e.killWhileStepPaused(ctx, "web", paused, 2)
	require.Equal(t, 1, e.deploy.count("web", paused.To, "1.1.0"), "deployed once")

	code, body, err := e.daemon.postBody("/api/v1/services/web/promote", fmt.Sprintf(`{"transition": %q, "step": 0, "by": "crash test"}`, paused.ID))
	require.NoError(t, err)
	require.Equal(t, http.StatusConflict, code, "a promote for the approval gate does not promote the step: %s", body)
	code, body2 := e.linkPost(first["promote"])
	require.Equal(t, http.StatusAccepted, code, "%s", body2)
	e.requireOutcome(ctx, "web", rev, succeeded)
	e.requireLiveIs("web", paused.To, "1.1.0")

	// Release 1.2.0: paused at step 1, killed, aborted through the API
	// (a kill right after may lose an accepted decision the pass had not
	// journaled yet: then it is asked again).
	rev, err = e.commit(ctx, "web", "1.2.0")
	require.NoError(t, err)
	paused = e.awaitStepPaused(ctx, "web")
	e.killWhileStepPaused(ctx, "web", paused, 1)
	for {
		code, body, err := e.daemon.postBody("/api/v1/services/web/abort", fmt.Sprintf(`{"transition": %q, "step": 1, "by": "crash test"}`, paused.ID))
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, code, "%s", body)
		e.daemon.kill()
		e.daemon.start()
		st := e.daemon.waitStatus(ctx, "web", "the pause or what follows it", func(s reconcile.Status) bool {
			c, _ := condition(s, reconcile.ConditionStalled)
			return s.Transition != nil || s.InSync || c.Status
		})
		if !st.Transition.Paused() {
			break
		}
	}
	st := e.requireOutcome(ctx, "web", rev, aborted)
	e.requireLiveIs("web", paused.From, "1.1.0")
	c, _ := condition(st, reconcile.ConditionStalled)
	require.Contains(t, c.Message, "aborted at rollout step 1/2 (30%) by crash test")

	e.mon.requireNoViolation()
	requireUnnoticed(t, "web (ALB)", web.Stop())
	recorded := map[string]int{}
	for _, ev := range e.daemon.eventsFile() {
		recorded[ev.Reason]++
	}
	require.Equal(t, 2, recorded[reconcile.ReasonApprovalPending], "each pause announced once, whatever the kills")
	require.Equal(t, 1, recorded[reconcile.ReasonPromoted])
	require.Equal(t, 1, recorded[reconcile.ReasonAborted])
	e.daemon.stop()
}
