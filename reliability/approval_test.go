package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// pauseLinks receives the daemon's webhook notifications and keeps the
// signed links of each ApprovalPending, by transition.
type pauseLinks struct {
	mu    sync.Mutex
	links map[string]map[string]string // transition -> action -> link
}

func (p *pauseLinks) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var m struct {
		reconcile.Event
		Links map[string]string `json:"links"`
	}
	body, _ := io.ReadAll(r.Body)
	if json.Unmarshal(body, &m) == nil && m.Reason == reconcile.ReasonApprovalPending {
		p.mu.Lock()
		p.links[m.Transition] = m.Links
		p.mu.Unlock()
	}
	w.WriteHeader(http.StatusNoContent)
}

func (p *pauseLinks) await(ctx context.Context, transition string) (map[string]string, error) {
	var out map[string]string
	err := poll(ctx, 20*time.Millisecond, func() bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		out = p.links[transition]
		return out != nil
	})
	return out, err
}

// awaitPaused waits until the service's status shows a release paused at
// its approval gate, or atStep at a manual rollout step, and returns the
// transition.
func (e *env) awaitPaused(ctx context.Context, service string, atStep bool) *reconcile.Transition {
	e.t.Helper()
	what := "a release paused for approval"
	if atStep {
		what = "a release paused at a rollout step"
	}
	st := e.daemon.waitStatus(ctx, service, what, func(s reconcile.Status) bool {
		a, step := s.Transition.OpenPause()
		return a != nil && (step > 0) == atStep
	})
	return st.Transition
}

// killWhilePaused SIGKILLs the daemon n times while the release is paused
// (at the gate or a manual step), restarting it each time, and checks that
// the same pause of the same transition comes back.
func (e *env) killWhilePaused(ctx context.Context, service string, paused *reconcile.Transition, n int) {
	e.t.Helper()
	pause, step := paused.OpenPause()
	require.NotNil(e.t, pause, "killWhilePaused needs a paused transition")
	for range n {
		e.daemon.kill()
		e.daemon.start()
		again := e.awaitPaused(ctx, service, step > 0)
		againPause, againStep := again.OpenPause()
		require.Equal(e.t, paused.ID, again.ID, "the same transition is paused after the restart")
		require.Equal(e.t, step, againStep, "at the same pause")
		require.Equal(e.t, pause.Since.UTC(), againPause.Since.UTC(), "since when: the journaled pause")
	}
}

// decideThroughKills posts a decision (action promote or abort, with its
// JSON body) and SIGKILLs the daemon right after, until the restarted
// daemon no longer shows the pause: a kill may lose an accepted decision
// the pass had not journaled yet, and it is then asked again.
func (e *env) decideThroughKills(ctx context.Context, service, action, body string) {
	e.t.Helper()
	for {
		code, answer, err := e.daemon.postBody("/api/v1/services/"+service+"/"+action, body)
		require.NoError(e.t, err)
		require.Equal(e.t, http.StatusAccepted, code, "%s", answer)
		e.daemon.kill()
		e.daemon.start()
		st := e.daemon.waitStatus(ctx, service, "the pause or what follows it", func(s reconcile.Status) bool {
			c, _ := condition(s, reconcile.ConditionStalled)
			return s.Transition != nil || s.InSync || c.Status
		})
		if !st.Transition.Paused() {
			return
		}
	}
}

// newLinkEnv is the stage of the SIGKILL tests of pauses: svc alone, behind
// the ALB emulator and in Nacos, its ApprovalPending notifications posted to
// a webhook that collects their signed links.
func newLinkEnv(t *testing.T, svc stage.Service) (*env, *pauseLinks) {
	t.Helper()
	links := &pauseLinks{links: map[string]map[string]string{}}
	hook := httptest.NewServer(links)
	t.Cleanup(hook.Close)
	e := newEnv(t, envOptions{
		services: []stage.Service{svc},
		timing: stage.Timing{Propagation: time.Second, Quiet: 100 * time.Millisecond, VerifyWindow: time.Second,
			HealthDeadline: 20 * time.Second, DeployTimeout: 10 * time.Second, DrainTimeout: 15 * time.Second},
		config: func(_ *stage.Stage, cfg *spec.Config) {
			cfg.Notify = append(cfg.Notify, spec.Notifier{Name: "approvals", Type: "webhook", URL: hook.URL, Events: []string{reconcile.ReasonApprovalPending}})
		},
	})
	e.daemon.cfg.API.ExternalURL, e.daemon.cfg.API.LinkKeyEnv = "http://"+e.daemon.cfg.Listen, "TANDEM_TEST_LINK_KEY"
	e.daemon.writeConfig()
	e.daemon.env = append(e.daemon.env, "TANDEM_TEST_LINK_KEY=a-link-key-of-more-than-32-bytes-for-tests")
	return e, links
}

// linkPost sends a link's confirmation form (what the page's button does).
func (e *env) linkPost(link string) (int, string) {
	e.t.Helper()
	u, err := url.Parse(link)
	require.NoError(e.t, err)
	code, body, err := e.daemon.postBody(u.Path, u.Query().Encode(), "Content-Type", "application/x-www-form-urlencoded")
	require.NoError(e.t, err)
	return code, string(body)
}

// TestSIGKILLWhilePausedKeepsThePauseAndADecisionCompletesIt: a release
// paused at the approval gate survives SIGKILLs and restarts (same
// transition, same pause, announced once, deployed once); a promote through
// the API then completes it, and a promote link from the announcement,
// replayed after the pause is over, is refused. A second release is
// paused, the daemon killed, and the abort link of its announcement ends
// it: the old group keeps serving, its weights and registrations never
// changed. Invariants hold throughout and users notice nothing.
func TestSIGKILLWhilePausedKeepsThePauseAndADecisionCompletesIt(t *testing.T) {
	e, links := newLinkEnv(t, stage.Service{Name: "web", LB: spec.KindALB, Nacos: true, Approval: "{}"})
	ctx, cancel := context.WithTimeout(t.Context(), 4*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	web := e.startTraffic(e.stage.URL("web"), 50, 5)

	// Release 1.1.0: paused, killed three times, still paused.
	rev, err := e.commit(ctx, "web", "1.1.0")
	require.NoError(t, err)
	paused := e.awaitPaused(ctx, "web", false)
	first, err := links.await(ctx, paused.ID)
	require.NoError(t, err)
	e.killWhilePaused(ctx, "web", paused, 3)
	require.Equal(t, 1, e.deploy.count("web", paused.To, "1.1.0"), "deployed once")

	// Promote through the API; a kill right after may lose an accepted
	// decision the pass had not journaled yet: then it is still paused.
	e.decideThroughKills(ctx, "web", "promote", fmt.Sprintf(`{"transition": %q, "by": "crash test"}`, paused.ID))
	e.requireOutcome(ctx, "web", rev, succeeded)
	e.requireLiveIs("web", paused.To, "1.1.0")
	code, body := e.linkPost(first["promote"])
	require.Equal(t, http.StatusConflict, code, "a promote link of a pause that is over: %s", body)
	code, body = e.linkPost(first["abort"])
	require.Equal(t, http.StatusConflict, code, "%s", body)

	// Release 1.2.0: paused, killed, then aborted through its link.
	rev, err = e.commit(ctx, "web", "1.2.0")
	require.NoError(t, err)
	paused = e.awaitPaused(ctx, "web", false)
	second, err := links.await(ctx, paused.ID)
	require.NoError(t, err)
	before := e.mon.live("web")
	svc, _ := e.stage.Service("web")
	for _, in := range svc.Instances(paused.From) {
		require.Equal(t, svc.Traffic[0].Weight, before[in.Addr()].weights[svc.Traffic[0].Key()], "%s serves", in)
		require.True(t, before[in.Addr()].enabled, "%s is enabled", in)
	}
	stopWatch := e.watchGroup("web", paused.From, before)
	e.killWhilePaused(ctx, "web", paused, 1)
	u, err := url.Parse(second["abort"])
	require.NoError(t, err)
	code, page, err := e.daemon.get(u.RequestURI())
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, string(page), `id="confirm"`)
	require.True(t, e.awaitPaused(ctx, "web", false).Paused(), "the GET did not act")
	code, body = e.linkPost(second["abort"])
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	st := e.requireOutcome(ctx, "web", rev, aborted)
	require.Nil(t, stopWatch(), "the serving group's weights and registrations never changed")
	e.requireLiveIs("web", paused.From, "1.1.0")
	c, _ := condition(st, reconcile.ConditionStalled)
	require.Contains(t, c.Message, "aborted at the approval gate by link (nonce ")

	// After a restart, the used link (its decision journaled) is refused.
	e.daemon.kill()
	e.daemon.start()
	code, body = e.linkPost(second["abort"])
	require.Equal(t, http.StatusConflict, code, "replayed after a restart: %s", body)

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

// watchGroup samples group g of a service until the returned function is
// called, and returns then the first sample in which an instance of g had
// other weights or another registration than in before (nil: none).
func (e *env) watchGroup(service string, g spec.Group, before map[string]instanceLive) func() error {
	svc, _ := e.stage.Service(service)
	done := make(chan struct{})
	result := make(chan error, 1)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				result <- nil
				return
			case <-tick.C:
			}
			now := e.mon.live(service)
			for _, in := range svc.Instances(g) {
				a, b := before[in.Addr()], now[in.Addr()]
				if !maps.Equal(a.weights, b.weights) || a.enabled != b.enabled {
					result <- fmt.Errorf("%s: weights %v enabled %t, then weights %v enabled %t", in, a.weights, a.enabled, b.weights, b.enabled)
					return
				}
			}
		}
	}()
	return func() error {
		close(done)
		return <-result
	}
}
