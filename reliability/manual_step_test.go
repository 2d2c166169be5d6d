package reliability_test

import (
	"context"
	"fmt"
	"net/http"
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

// TestSIGKILLAtAManualRolloutStepKeepsThePauseAndADecisionEndsIt: a release
// whose first rollout step (30 %) waits for a decision survives SIGKILLs at
// the pause (same step, same pause, announced once, deployed once); a
// decision for the approval gate is refused; the step's promote link
// completes it. A second release is paused at the step, killed, and aborted
// through the API: all traffic goes back to the old group at once.
// Invariants hold throughout and users notice nothing.
func TestSIGKILLAtAManualRolloutStepKeepsThePauseAndADecisionEndsIt(t *testing.T) {
	e, links := newLinkEnv(t, stage.Service{Name: "web", LB: spec.KindALB, Nacos: true, Rollout: manualStepRollout})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	web := e.startTraffic(e.stage.URL("web"), 50, 5)

	// Release 1.1.0: paused at step 1, killed twice, still paused there.
	rev, err := e.commit(ctx, "web", "1.1.0")
	require.NoError(t, err)
	paused := e.awaitPaused(ctx, "web", true)
	first, err := links.await(ctx, paused.ID)
	require.NoError(t, err)
	u, err := url.Parse(first["promote"])
	require.NoError(t, err)
	require.Equal(t, "1", u.Query().Get("p"), "the link is bound to step 1")
	e.killWhilePaused(ctx, "web", paused, 2)
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
	paused = e.awaitPaused(ctx, "web", true)
	e.killWhilePaused(ctx, "web", paused, 1)
	e.decideThroughKills(ctx, "web", "abort", fmt.Sprintf(`{"transition": %q, "step": 1, "by": "crash test"}`, paused.ID))
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
