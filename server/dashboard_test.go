package server_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// pageState is what the dashboard shows, read from its DOM by readPage.
type pageState struct {
	Connection string        `json:"connection"`
	Totals     string        `json:"totals"`
	Notice     *string       `json:"notice"` // nil when hidden
	Services   []serviceView `json:"services"`
	Events     []eventView   `json:"events"`
	Resources  []string      `json:"resources"`
}

type serviceView struct {
	Name        string            `json:"name"`
	State       string            `json:"state"`
	Desired     string            `json:"desired"`
	Live        string            `json:"live"`
	Groups      map[string]string `json:"groups"` // group -> "version | role | registry"
	Bindings    []string          `json:"bindings"`
	Transition  string            `json:"transition"`
	Phases      []string          `json:"phases"` // the phase strip; nil without a transition
	Phase       *string           `json:"phase"`
	Elapsed     *string           `json:"elapsed"`
	Evidence    *string           `json:"evidence"`
	Message     *string           `json:"message"`
	Conditions  []string          `json:"conditions"`
	Stalled     *string           `json:"stalled"`
	Drift       []string          `json:"drift"`
	DriftMarkup int               `json:"driftMarkup"` // elements inside the drift list items: must be 0
	Revision    string            `json:"revision"`
	Analysis    []string          `json:"analysis"` // query counts value detail; nil without an analysis
}

type eventView struct {
	Text string `json:"text"`
	When string `json:"when"`
}

// readPage collects what an operator sees, by the dashboard's data-* hooks.
const readPage = `(() => {
  const txt = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent.trim() : null; };
  const all = (root, sel) => [...root.querySelectorAll(sel)];
  return {
    connection: txt(document, "#conn"),
    totals: txt(document, "#totals"),
    notice: document.getElementById("notice").hidden ? null : document.getElementById("notice").innerText,
    services: all(document, "article[data-service]").map((a) => ({
      name: a.dataset.service,
      state: txt(a, "[data-field=state]"),
      desired: txt(a, "[data-field=desired]"),
      live: txt(a, "[data-field=live]"),
      groups: Object.fromEntries(all(a, "[data-group]").map((g) => [g.dataset.group,
        [txt(g, "[data-field=version]"), txt(g, "[data-field=role]"), txt(g, "[data-field=registry]") || "no registry"].join(" | ")])),
      bindings: all(a, "[data-binding]").map((b) =>
        b.dataset.binding + " A=" + txt(b, "[data-field=weight-A]") + " B=" + txt(b, "[data-field=weight-B]") +
        " sums=" + b.dataset.weightA + "/" + b.dataset.weightB +
        " bar=" + all(b, ".seg").map((s) => s.textContent).join(",") +
        (b.dataset.preview ? " preview=" + b.dataset.preview + " (" + txt(b, "[data-field=preview]") + ")" : "")),
      transition: txt(a, "[data-field=transition]"),
      phases: a.querySelector("[data-field=phases]") ? all(a, "[data-field=phases] li").map((li) => li.textContent) : null,
      phase: txt(a, "[data-field=phase]"),
      elapsed: txt(a, "[data-field=elapsed]"),
      evidence: txt(a, "[data-field=evidence]"),
      message: txt(a, "[data-field=message]"),
      conditions: all(a, "[data-condition]").map((c) => c.dataset.condition + "=" + txt(c, "[data-field=status]") + " " + txt(c, "[data-field=reason]") + " " + c.className),
      stalled: txt(a, "[data-field=stalled-message]"),
      drift: all(a, "[data-field=drift] li").map((li) => li.textContent),
      driftMarkup: all(a, "[data-field=drift] li *").length,
      revision: txt(a, "[data-field=revision]"),
      analysis: (() => {
        const rows = all(a, "[data-field=analysis] tr[data-query]");
        return rows.length ? rows.map((r) => [r.dataset.query, txt(r, "[data-field=counts]"), txt(r, "[data-field=value]"), txt(r, "[data-field=detail]")].join(" | ")) : null;
      })(),
    })),
    events: all(document, "#events li").map((li) => ({
      text: li.dataset.reason + " " + (li.dataset.service || "-") + ": " + txt(li, ".msg"),
      when: txt(li, ".when"),
    })),
    resources: performance.getEntriesByType("resource").map((r) => r.name),
  };
})()`

func ptr(s string) *string { return &s }

// TestDashboardShowsTheStatusAndFollowsItLive drives Debian's chromium
// over the DevTools protocol against a server on 127.0.0.1 with fixture
// statuses, checks what the page shows, then changes the status and
// records an event and checks that the page follows without a reload.
func TestDashboardShowsTheStatusAndFollowsItLive(t *testing.T) {
	src := &switchSource{}
	var notReady atomic.Pointer[string]
	e := start(t, server.Options{Source: src, Ready: func() error {
		if why := notReady.Load(); why != nil {
			return errors.New(*why)
		}
		return nil
	}})
	b := startBrowser(t) // stopped first: the server's Close waits for the page's stream to end
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	require.NoError(t, b.navigate(ctx, e.url+"/"))
	b.waitFor(ctx, t, "four services and a live connection",
		`document.querySelectorAll("article[data-service]").length === 4 && document.querySelectorAll("#events li").length === 4 && document.getElementById("conn").textContent === "live"`)
	var page pageState
	require.NoError(t, b.eval(ctx, readPage, &page))

	require.Equal(t, "live", page.Connection)
	require.Equal(t, "4 services · 1 stalled · 1 in transition", page.Totals)
	require.Nil(t, page.Notice, "nothing to say beyond the services")
	require.Len(t, page.Services, 4)
	billing, gateway, push, us := page.Services[0], page.Services[1], page.Services[2], page.Services[3]

	require.Equal(t, serviceView{
		Name: "billing", State: "SUSPENDED", Desired: "B @ 5.0.2", Live: "B",
		Groups: map[string]string{
			"A": "5.0.1 | idle | registry: enabled 0/1 · visible 0/1",
			"B": "5.0.2 | SERVING | registry: enabled 1/1 · visible 1/1",
		},
		Bindings: []string{}, Transition: "suspended",
		Conditions: []string{"Ready=False Suspended cond c-false-bad", "Reconciling=False Idle cond c-quiet", "Stalled=False None cond c-quiet"},
		Drift:      []string{}, Revision: "desired 1a2b3c4 by Zhang Min — “billing: suspend for the audit” · applied 0c0ffee",
	}, billing)

	require.Equal(t, serviceView{
		Name: "gateway", State: "READY", Desired: "A @ 1.8.0", Live: "A",
		Groups: map[string]string{"A": "1.8.0 | SERVING | no registry", "B": "1.7.9 | idle | no registry"},
		Bindings: []string{"slb:prod-hz/lb-bp1gateway/rsp-bp1gateway A=100 B=0 sums=200/0 bar=A 100%",
			"slb:prod-hz/lb-bp1gateway/rsp-bp1gwpreview A=100 B=0 sums=200/0 bar=A 100% preview=A (preview route → A)"},
		Transition: "no transition",
		Conditions: []string{"Ready=True InSync cond c-true-good", "Reconciling=False Idle cond c-quiet", "Stalled=False None cond c-quiet"},
		Drift:      []string{}, Revision: "desired 9f8e7d6 by Li Wei — “gateway: release 1.8.0” · applied same",
	}, gateway)

	stalled := fixtures()[2].Conditions[2].Message
	require.Equal(t, serviceView{
		Name: "push", State: "STALLED", Desired: "A @ 3.2.0", Live: "B",
		Groups:     map[string]string{"A": "unknown | idle | no registry", "B": "3.1.0 | SERVING | no registry"},
		Bindings:   []string{"alb:prod-hz/sgp-bp1push A=0 B=50–100 sums=0/150 bar=B 100%"},
		Transition: "no transition",
		Conditions: []string{"Ready=False ReleaseFailed cond c-false-bad", "Reconciling=False Idle cond c-quiet", "Stalled=True ReleaseFailed cond c-true-bad"},
		Stalled:    ptr("Stalled: ReleaseFailed: " + stalled),
		Drift: []string{
			"alb:prod-hz/sgp-bp1push has backend i-bp1rogue (10.0.9.9:9000) that is in neither group",
			"alb:prod-hz/sgp-bp1push: i-bp1psb02 has weight 50, want 100 <b>not markup</b>",
		},
		Revision: "desired 1a2b3c4 by Zhang Min — “push: release 3.2.0” · applied 0c0ffee",
	}, push, "status text is shown as text, never as markup")

	elapsed := us.Elapsed
	us.Elapsed = nil
	evidence := "haproxy:edge/user_be sessions=3, in-flight=2 websockets=1"
	require.Equal(t, serviceView{
		Name: "user-service", State: "RELEASING", Desired: "B @ 2.4.1", Live: "B",
		Groups: map[string]string{
			"A": "2.4.0 | idle | registry: enabled 0/2 · visible 0/2",
			"B": "2.4.1 | SERVING | registry: enabled 2/2 · visible 2/2",
		},
		Bindings:   []string{"haproxy:edge/user_be A=0 B=100 sums=0/200 bar=B 100%"},
		Transition: "release 2.4.1: group A → group B", Phase: ptr("drain"), Evidence: ptr(evidence),
		Phases:     []string{"✓ prepare", "✓ verify", "✓ analysis", "✓ enable", "✓ shift", "✓ disable", "drain", "watch"},
		Conditions: []string{"Ready=False Progressing cond c-false-bad", "Reconciling=True Draining cond c-true-busy", "Stalled=False None cond c-quiet"},
		Drift:      []string{}, Revision: "desired 1a2b3c4 by Zhang Min — “user-service: release 2.4.1” · applied 0c0ffee",
		Analysis: []string{
			"error-rate | 3 ok · 0 failed · 0 inconclusive | 0.002 | successful",
			"p99-latency | 2 ok · 0 failed · 1 inconclusive | NaN | inconclusive: the value is NaN (e.g. 0/0: no requests in the range)",
		},
	}, us)
	require.NotNil(t, elapsed)
	require.GreaterOrEqual(t, parseElapsed(t, *elapsed), 42*time.Second, "elapsed in phase is measured by the server's clock")
	require.Less(t, parseElapsed(t, *elapsed), 5*time.Minute)

	require.Equal(t, []string{
		"DriftDetected push: alb:prod-hz/sgp-bp1push has backend i-bp1rogue (10.0.9.9:9000) that is in neither group",
		"PhaseCompleted user-service: phase disable completed",
		"TransitionStarted user-service: release 2.4.1: move traffic from group A (2.4.0) to group B (2.4.1)",
		"TransitionAborted push: group B serves 3.1.0 again after abort: deploy of 3.2.0 to group A failed: exit status 1",
	}, eventTexts(page.Events), "newest first")
	require.True(t, strings.HasSuffix(page.Events[0].When, "02:59:30"), page.Events[0].When)
	for _, r := range page.Resources {
		require.True(t, strings.HasPrefix(r, e.url+"/"), "the page loaded %s from elsewhere", r)
	}

	// Live: the drain ends, the stalled release is fixed, an event arrives.
	next := fixtures()
	p := &next[2]
	p.LiveActive, p.AppliedRevision, p.Drift, p.Message = reconcile.ActiveA, revNew, nil, ""
	p.Versions = map[spec.Group]string{spec.GroupA: "3.2.0", spec.GroupB: "3.1.0"}
	p.Bindings[0].Backends = backends(map[string]int{"i-bp1psa01": 100, "i-bp1psa02": 100, "i-bp1psb01": 0, "i-bp1psb02": 0}, -1)
	p.Conditions = conds(true, "InSync", "in sync: group A serves 3.2.0", false, "Idle", "", false, "None", "")
	u := &next[3]
	u.Phase, u.Transition.Phase, u.Transition.PhaseSince = reconcile.PhaseWatch, reconcile.PhaseWatch, t0.Add(-5*time.Second)
	u.Evidence, u.Message = "", "watching group B until verify.window 1m0s has passed"
	u.Conditions[1].Reason = "Watching"
	e.status.set(next)
	e.events.Record(reconcile.Event{Time: t0, Service: "user-service", Type: reconcile.EventNormal, Reason: reconcile.ReasonPhaseCompleted,
		Message: "phase drain completed", Phase: reconcile.PhaseDrain, Duration: 37 * time.Second})

	b.waitFor(ctx, t, "the watch phase, the fixed release and the new event",
		`(() => { const us = document.querySelector('article[data-service="user-service"] [data-field=phase]');
		 const push = document.querySelector('article[data-service="push"] [data-field=state]');
		 const ev = document.querySelector("#events li");
		 return us && us.textContent === "watch" && push && push.textContent === "READY" && ev && ev.textContent.includes("phase drain completed"); })()`)
	require.NoError(t, b.eval(ctx, readPage, &page))
	require.Equal(t, "4 services · 1 in transition", page.Totals)
	push, us = page.Services[2], page.Services[3]
	require.Equal(t, "A", push.Live)
	require.Equal(t, []string{"alb:prod-hz/sgp-bp1push A=100 B=0 sums=200/0 bar=A 100%"}, push.Bindings)
	require.Equal(t, map[string]string{"A": "3.2.0 | SERVING | no registry", "B": "3.1.0 | idle | no registry"}, push.Groups)
	require.Nil(t, push.Stalled)
	require.Empty(t, push.Drift)
	require.Equal(t, "desired 1a2b3c4 by Zhang Min — “push: release 3.2.0” · applied same", push.Revision)
	require.Nil(t, us.Evidence)
	require.Equal(t, ptr("watching group B until verify.window 1m0s has passed"), us.Message)
	require.Contains(t, us.Conditions, "Reconciling=True Watching cond c-true-busy")
	require.Len(t, page.Events, 5)
	require.Equal(t, "PhaseCompleted user-service: phase drain completed", page.Events[0].Text)

	// A release that rolls out in steps shows its step and share while it
	// shifts; without release gates, its strip has the classic phases.
	u.Phase, u.Transition.Phase = reconcile.PhaseShift, reconcile.PhaseShift
	u.Phases = []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseEnable, reconcile.PhaseShift,
		reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}
	u.Transition.Rollout = &reconcile.RolloutProgress{Steps: []reconcile.RolloutStep{{Share: 10, Pause: time.Minute}, {Share: 50, Hold: time.Minute}, {Share: 100}},
		Step: 1, Reached: t0.Add(-2 * time.Second)}
	e.status.set(next)
	b.waitFor(ctx, t, "the rollout step",
		`(() => { const r = document.querySelector('article[data-service="user-service"] [data-field=rollout]');
		 return r && r.textContent === "step 2/3 · 50% to group B"; })()`)
	require.NoError(t, b.eval(ctx, readPage, &page))
	require.Equal(t, []string{"✓ prepare", "✓ verify", "✓ enable", "shift", "disable", "drain", "watch"}, page.Services[3].Phases,
		"no release gate: no gate phase")
	u.Phase, u.Transition.Phase, u.Transition.Rollout = reconcile.PhaseWatch, reconcile.PhaseWatch, nil
	e.status.set(next)
	b.waitFor(ctx, t, "no rollout after the shift",
		`document.querySelector('article[data-service="user-service"] [data-field=rollout]') === null`)

	// The replica stops acting and Git fails: the page says so above all.
	why := "this replica is not acting: tandem-2 (pid 4242) leads; ask it"
	notReady.Store(&why)
	good, head := &gitsource.Revision{Hash: revOld}, &gitsource.Revision{Hash: revNew}
	src.set(gitsource.Status{Good: good, Head: head, Failures: 4, FetchErr: errors.New("fetching branch main: connection refused"),
		Rejected: &gitsource.Rejection{Reason: gitsource.ReasonInvalid, Err: errors.New("services/push.yaml:7: version: must not be empty")}})
	b.waitFor(ctx, t, "the notice", `!document.getElementById("notice").hidden`)
	require.NoError(t, b.eval(ctx, readPage, &page))
	require.Equal(t, ptr("Not ready: "+why+"\n"+
		"Git: head 1a2b3c4 is NOT applied: services/push.yaml:7: version: must not be empty\n"+
		"Git: fetching fails (4 in a row): fetching branch main: connection refused"), page.Notice)
	notReady.Store(nil)
	src.set(gitsource.Status{Good: head, Head: head})
	b.waitFor(ctx, t, "the notice gone", `document.getElementById("notice").hidden`)

	require.Empty(t, b.pageErrors(), "the page threw or logged errors")
}

// switchSource is a desired-state source whose status the test changes.
type switchSource struct {
	mu sync.Mutex
	st gitsource.Status
}

func (s *switchSource) set(st gitsource.Status) { s.mu.Lock(); s.st = st; s.mu.Unlock() }

func (s *switchSource) Current() gitsource.Status { s.mu.Lock(); defer s.mu.Unlock(); return s.st }

func eventTexts(evs []eventView) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.Text)
	}
	return out
}

// parseElapsed reads the dashboard's "42s", "3m 07s", "1h 02m".
func parseElapsed(t *testing.T, s string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(strings.ReplaceAll(s, " ", ""))
	require.NoError(t, err, "elapsed %q", s)
	return d
}

// TestDashboardBehindAReadToken: with
// api.readTokenEnv set, the page is a login form; a wrong token is
// refused, the right one sets the session cookie, and the dashboard then
// loads and follows the stream (EventSource sends the cookie).
func TestDashboardBehindAReadToken(t *testing.T) {
	e := start(t, server.Options{Token: token, ReadToken: readToken})
	b := startBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	require.NoError(t, b.navigate(ctx, e.url+"/"))
	b.waitFor(ctx, t, "the login form", `document.getElementById("token") !== null && document.querySelectorAll("article[data-service]").length === 0`)
	submit := func(tok string) {
		var ok bool
		require.NoError(t, b.eval(ctx, `(() => { document.getElementById("token").value = `+jsString(tok)+`; document.querySelector("form").submit(); return true; })()`, &ok))
	}
	submit("wrong-token")
	b.waitFor(ctx, t, "the refusal", `(() => { const m = document.getElementById("login-error"); return m !== null && m.textContent === "Wrong token."; })()`)
	submit(readToken)
	b.waitFor(ctx, t, "four services and a live connection",
		`document.querySelectorAll("article[data-service]").length === 4 && document.getElementById("conn").textContent === "live"`)
	var cookie string
	require.NoError(t, b.eval(ctx, `document.cookie`, &cookie))
	require.Empty(t, cookie, "the session cookie is HttpOnly: no script reads it")

	// Live through the cookie: a new event arrives on the stream.
	e.events.Record(reconcile.Event{Time: t0, Service: "push", Type: reconcile.EventNormal, Reason: reconcile.ReasonPhaseCompleted,
		Message: "phase shift completed after login", Phase: reconcile.PhaseShift})
	b.waitFor(ctx, t, "the new event", `document.querySelector("#events li").textContent.includes("after login")`)
	require.Empty(t, b.pageErrors(), "the page threw or logged errors")
}

func jsString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// TestDashboardPromotesAPausedRelease: a release paused at its approval
// gate shows since when, until when, who may decide, and Promote and Abort
// buttons (only there), which call the API with the token typed.
func TestDashboardPromotesAPausedRelease(t *testing.T) {
	e := start(t, server.Options{Token: token})
	e.pause("gateway", "gateway-1")
	b := startBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	require.NoError(t, b.navigate(ctx, e.url+"/"))
	b.waitFor(ctx, t, "the paused release", `(() => { const a = document.querySelector('article[data-service="gateway"]');
		return a && a.querySelector("[data-field=state]").textContent === "PAUSED FOR APPROVAL"; })()`)
	var view struct {
		Buttons int    `json:"buttons"`
		Pause   string `json:"pause"`
	}
	require.NoError(t, b.eval(ctx, `(() => ({ buttons: document.querySelectorAll("[data-action]").length,
		pause: document.querySelector('article[data-service="gateway"] [data-field=approval-pause]').textContent }))()`, &view))
	require.Equal(t, 2, view.Buttons, "Promote and Abort, on the paused service only")
	require.Contains(t, view.Pause, "Paused since 2025-03-01T02:59:50.000Z")
	require.Contains(t, view.Pause, "until 2025-03-01T04:00:00.000Z, then abort")
	var strip []string
	require.NoError(t, b.eval(ctx, `[...document.querySelectorAll('article[data-service="gateway"] [data-field=phases] li')].map((li) => li.textContent)`, &strip))
	require.Equal(t, []string{"✓ prepare", "✓ verify", "✓ preview", "approval", "enable", "shift", "disable", "drain", "watch"}, strip,
		"the gates the service sets, and only those")

	// docs/dashboard.png: a release paused for approval, one draining, one
	// stalled, one suspended (go test ./server -run TestDashboardPromotesAPausedRelease -update).
	png, err := b.screenshot(ctx)
	require.NoError(t, err)
	require.True(t, len(png) > 1000 && string(png[1:4]) == "PNG")
	require.NoError(t, os.WriteFile(filepath.Join(t.TempDir(), "dashboard.png"), png, 0o644))
	if *update {
		require.NoError(t, os.WriteFile(filepath.Join("..", "docs", "dashboard.png"), png, 0o644))
	}

	var ok bool
	require.NoError(t, b.eval(ctx, `(() => { const a = document.querySelector('article[data-service="gateway"]');
		const tok = a.querySelector("[data-field=approval-token]"); tok.value = `+jsString(token)+`;
		tok.dispatchEvent(new Event("input")); a.querySelector("[data-action=promote]").click(); return true; })()`, &ok))
	b.waitFor(ctx, t, "the answer", `(() => { const r = document.querySelector('article[data-service="gateway"] [data-field=approval-result]');
		return r && r.textContent.startsWith("promote accepted"); })()`)
	require.Equal(t, []decisionCall{{"promote", "gateway", "gateway-1", "dashboard (API token holder from 127.0.0.1)", 0}}, e.actions.decided())

	// Paused at a manual rollout step: shown with its step and share, and
	// the promote is bound to that step.
	e.pauseAtStep("gateway", "gateway-1", 2)
	b.waitFor(ctx, t, "the step's pause", `(() => { const a = document.querySelector('article[data-service="gateway"]');
		return a && a.querySelector("[data-field=state]").textContent === "PAUSED AT STEP 2 (50%) FOR APPROVAL"; })()`)
	require.NoError(t, b.eval(ctx, `document.querySelector('article[data-service="gateway"] [data-field=approval-pause]').textContent`, &view.Pause))
	require.Contains(t, view.Pause, "Paused at step 2 (share 50%) for approval since 2025-03-01T02:59:50.000Z")
	require.NoError(t, b.eval(ctx, `(() => { document.querySelector('article[data-service="gateway"] [data-action=promote]').click(); return true; })()`, &ok))
	b.waitFor(ctx, t, "the second answer", `(() => { const r = document.querySelector('article[data-service="gateway"] [data-field=approval-result]');
		return r && r.textContent.startsWith("promote accepted"); })()`)
	require.Equal(t, decisionCall{"promote", "gateway", "gateway-1", "dashboard (API token holder from 127.0.0.1)", 2}, e.actions.decided()[1])

	e.status.set(fixtures()) // the pause is over: the buttons go
	b.waitFor(ctx, t, "no buttons", `document.querySelectorAll("[data-action]").length === 0`)
	require.Empty(t, b.pageErrors(), "the page threw or logged errors")
}
