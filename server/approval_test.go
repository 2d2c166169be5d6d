package server_test

import (
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

// pause shows service's transition id paused for approval, in the status
// and to the fake actions (which stand for the daemon and its journal).
func (e *env) pause(service, id string) {
	list := e.status.Statuses()
	for i := range list {
		if list[i].Service == service {
			list[i].Phase = reconcile.PhaseApproval
			list[i].DesiredActive, list[i].DesiredVersion = spec.GroupB, "1.9.0"
			list[i].Revision.Hash, list[i].Revision.Subject = revNew, service+": release 1.9.0"
			list[i].Versions = maps.Clone(list[i].Versions)
			list[i].Versions[spec.GroupB] = "1.9.0" // deployed and verified
			list[i].InSync, list[i].Summary = false, "release 1.9.0: group A -> group B, phase approval"
			list[i].Conditions = conds(false, "Progressing", list[i].Summary, true, reconcile.ReasonApprovalPending, "paused for approval", false, "None", "")
			list[i].Transition = &reconcile.Transition{ID: id, Kind: reconcile.KindRelease, From: spec.GroupA, To: spec.GroupB, Version: "1.9.0", FromVersion: list[i].Versions[spec.GroupA],
				Phase: reconcile.PhaseApproval, Started: t0.Add(-time.Minute), PhaseSince: t0.Add(-10 * time.Second),
				Approval: &reconcile.ApprovalProgress{Since: t0.Add(-10 * time.Second), Deadline: t0.Add(time.Hour), OnTimeout: spec.ApprovalAbort}}
			list[i].Phases = []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify}
			if len(list[i].Preview) > 0 { // the preview phase moved the preview routes to group B
				list[i].Phases = append(list[i].Phases, reconcile.PhasePreviewRoute)
				list[i].Preview = slices.Clone(list[i].Preview)
				for j := range list[i].Preview {
					list[i].Preview[j].Group = reconcile.ActiveB
				}
				list[i].Bindings = slices.Clone(list[i].Bindings)
				for j, b := range list[i].Bindings {
					if b.Binding.Preview {
						list[i].Bindings[j].Backends = groupBackends(list[i].Groups, spec.GroupB)
					}
				}
			}
			list[i].Phases = append(list[i].Phases, reconcile.PhaseApproval, reconcile.PhaseEnable, reconcile.PhaseShift,
				reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch)
		}
	}
	e.status.set(list)
	e.actions.mu.Lock()
	defer e.actions.mu.Unlock()
	if e.actions.paused == nil {
		e.actions.paused = map[string]string{}
	}
	e.actions.paused[service] = id
}

// groupBackends are the backends of a binding that carries group g alone.
func groupBackends(groups spec.Groups, g spec.Group) []providers.Backend {
	weights := map[string]int{}
	for _, gg := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range groups.Get(gg) {
			weights[in.ID] = 0
			if gg == g {
				weights[in.ID] = 100
			}
		}
	}
	return backends(weights, -1)
}

func TestPromoteAndAbortThroughTheAPI(t *testing.T) {
	auth := map[string]string{"Authorization": "Bearer " + token}
	tests := []struct {
		name, path, body string
		header           map[string]string
		code             int
		answer           string
		decided          []decisionCall
	}{
		{name: "promote whichever is paused", path: "/api/v1/services/push/promote", header: auth, code: 202,
			answer:  `{"service": "push", "action": "promote", "by": "api (API token holder from 127.0.0.1)"}`,
			decided: []decisionCall{{"promote", "push", "", "api (API token holder from 127.0.0.1)", reconcile.AnyPause}}},
		{name: "abort the named transition, saying who asks", path: "/api/v1/services/push/abort", header: auth,
			body: `{"transition": "push-1", "by": "cli alice@ops"}`, code: 202,
			answer:  `{"service": "push", "action": "abort", "by": "cli alice@ops (API token holder from 127.0.0.1)"}`,
			decided: []decisionCall{{"abort", "push", "push-1", "cli alice@ops (API token holder from 127.0.0.1)", reconcile.AnyPause}}},
		{name: "promote a rollout step's pause", path: "/api/v1/services/push/promote", header: auth,
			body: `{"transition": "push-1", "step": 2}`, code: 202,
			answer:  `{"service": "push", "action": "promote", "by": "api (API token holder from 127.0.0.1)"}`,
			decided: []decisionCall{{"promote", "push", "push-1", "api (API token holder from 127.0.0.1)", 2}}},
		{name: "a negative step is refused", path: "/api/v1/services/push/promote", header: auth, body: `{"step": -1}`, code: 400,
			answer: `{"error": "request body: want nothing or {\"transition\": \"ID\", \"step\": N, \"by\": \"who\"}: field \"step\": 0 (the approval gate) or a rollout step from 1, got -1"}`},
		{name: "another transition is a conflict", path: "/api/v1/services/push/promote", header: auth,
			body: `{"transition": "push-0"}`, code: 409,
			answer: `{"error": "promote push: no release of this service is paused for approval"}`},
		{name: "nothing paused is a conflict", path: "/api/v1/services/gateway/promote", header: auth, code: 409,
			answer: `{"error": "promote gateway: no release of this service is paused for approval"}`},
		{name: "an unknown service is not found", path: "/api/v1/services/nope/abort", header: auth, code: 409},
		{name: "without the token it is refused", path: "/api/v1/services/push/promote", code: 401},
		{name: "a bad body is refused", path: "/api/v1/services/push/promote", header: auth, body: `{"by": "x\ny"}`, code: 400,
			answer: `{"error": "request body: want nothing or {\"transition\": \"ID\", \"step\": N, \"by\": \"who\"}: field \"by\": at most 80 printable characters"}`},
		{name: "a cross-origin browser request is refused", path: "/api/v1/services/push/promote", code: 403,
			header: map[string]string{"Authorization": "Bearer " + token, "Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, server.Options{Token: token})
			e.pause("push", "push-1")
			code, _, body := e.do(t, "POST", tc.path, tc.body, tc.header)
			require.Equal(t, tc.code, code, body)
			if tc.answer != "" {
				require.JSONEq(t, tc.answer, body)
			}
			require.Equal(t, tc.decided, e.actions.decided())
		})
	}
}

var linkKey = []byte("0123456789abcdef0123456789abcdef")

// linkEnv serves the fixtures with links signed under linkKey and push's
// transition push-1 paused.
func linkEnv(t *testing.T) (*env, *approvallink.Signer) {
	signer, err := approvallink.New("https://tandem.example.com/ops", linkKey, time.Hour)
	require.NoError(t, err)
	e := start(t, server.Options{Token: token, Links: signer, AllowedHosts: []string{"tandem.example.com"}})
	e.pause("push", "push-1")
	return e, signer
}

// local is a link's path and query, to send to the test server.
func local(t *testing.T, link string) (path string, q url.Values) {
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(u.Path, "/ops/approval/"), u.Path)
	return strings.TrimPrefix(u.Path, "/ops"), u.Query()
}

func sign(t *testing.T, s *approvallink.Signer, service, transition string, action spec.ApprovalDecision) (string, url.Values) {
	link, err := s.URL(service, transition, 0, action, t0, time.Time{})
	require.NoError(t, err)
	return local(t, link)
}

// post sends the confirmation page's form.
func (e *env) post(t *testing.T, path string, form url.Values, header map[string]string) (int, string) {
	h := map[string]string{"Content-Type": "application/x-www-form-urlencoded"}
	for k, v := range header {
		h[k] = v
	}
	code, _, body := e.do(t, "POST", path, form.Encode(), h)
	return code, body
}

func TestALinkGetOnlyShowsAConfirmationAndItsPostActsOnce(t *testing.T) {
	e, s := linkEnv(t)
	path, q := sign(t, s, "push", "push-1", spec.ApprovalPromote)

	// A chat app's preview (or the person) fetches the page: nothing happens.
	for range 3 {
		code, h, body := e.do(t, "GET", path+"?"+q.Encode(), "", nil)
		require.Equal(t, http.StatusOK, code, body)
		require.Equal(t, "no-referrer", h.Get("Referrer-Policy"))
		require.Contains(t, body, `<button id="confirm" type="submit">promote the release of push</button>`)
		require.Contains(t, body, "push-1")
	}
	require.Empty(t, e.actions.decided(), "a GET never acts")

	// The page's form posts the link's parts back, without the API token.
	form := url.Values{}
	for _, m := range regexp.MustCompile(`<input type="hidden" name="(\w)" value="([^"]*)">`).FindAllStringSubmatch(pageOf(t, e, path, q), -1) {
		form.Set(m[1], m[2])
	}
	require.Equal(t, q, form)
	code, body := e.post(t, path, form, nil)
	require.Equal(t, http.StatusAccepted, code, body)
	require.Contains(t, body, "promote of transition push-1 accepted")
	decided := e.actions.decided()
	require.Len(t, decided, 1)
	require.Equal(t, "push-1", decided[0].Transition)
	require.Equal(t, "link (nonce "+q.Get("n")+", from 127.0.0.1)", decided[0].By, "the audit trail names the link's nonce")

	// Replayed: refused, and nothing more is decided.
	e.pause("push", "push-1") // even were it paused again
	code, body = e.post(t, path, q, nil)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body, "this link was already used")
	require.Len(t, e.actions.decided(), 1)
}

func pageOf(t *testing.T, e *env, path string, q url.Values) string {
	_, _, body := e.do(t, "GET", path+"?"+q.Encode(), "", nil)
	return body
}

func TestForgedExpiredAndStaleLinksAreRefused(t *testing.T) {
	other, err := approvallink.New("https://tandem.example.com/ops", []byte("another key of thirty-two bytes!!"), time.Hour)
	require.NoError(t, err)
	e, s := linkEnv(t)
	path, q := sign(t, s, "push", "push-1", spec.ApprovalPromote)
	set := func(k, v string) url.Values {
		c := url.Values{}
		for kk, vv := range q {
			c[kk] = append([]string(nil), vv...)
		}
		c.Set(k, v)
		return c
	}
	otherPath, otherQ := sign(t, other, "push", "push-1", spec.ApprovalPromote)
	expiredLink, err := s.URL("push", "push-1", 0, spec.ApprovalPromote, t0.Add(-2*time.Hour), time.Time{})
	require.NoError(t, err)
	expiredPath, expiredQ := local(t, expiredLink)
	boundLink, err := s.URL("push", "push-1", 0, spec.ApprovalPromote, t0.Add(-10*time.Minute), t0.Add(-time.Minute))
	require.NoError(t, err)
	boundPath, boundQ := local(t, boundLink)
	stalePath, staleQ := sign(t, s, "push", "push-0", spec.ApprovalPromote)
	abortPath := strings.Replace(path, "/promote", "/abort", 1)

	for _, tc := range []struct {
		name string
		path string
		q    url.Values
		code int
		want string
	}{
		{"signed with another key", otherPath, otherQ, 403, "signature does not match"},
		{"bad signature", path, set("s", "AAAA"), 403, "signature does not match"},
		{"altered service", strings.Replace(path, "/push/", "/gateway/", 1), q, 403, "signature does not match"},
		{"altered action", abortPath, q, 403, "signature does not match"},
		{"altered transition", path, set("t", "push-2"), 403, "signature does not match"},
		{"altered expiry", path, set("e", "99999999999"), 403, "signature does not match"},
		{"part missing", path, set("n", ""), 403, "lacks its"},
		{"expired", expiredPath, expiredQ, 403, "the link has expired"},
		{"expired at the gate's own deadline", boundPath, boundQ, 403, "the link has expired at 2025-03-01T02:59:00Z"},
		{"for another transition", stalePath, staleQ, 409, "no release of this service is paused for approval"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, body := e.post(t, tc.path, tc.q, nil)
			require.Equal(t, tc.code, code, body)
			require.Contains(t, body, tc.want)
			code, _, body = e.do(t, "GET", tc.path+"?"+tc.q.Encode(), "", nil)
			require.NotEqual(t, http.StatusOK, code, body)
			require.NotContains(t, body, `id="confirm"`)
		})
	}
	require.Empty(t, e.actions.decided())

	// A cross-site page posting a genuine link is refused too.
	code, _ := e.post(t, path, q, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	require.Equal(t, http.StatusForbidden, code)
	require.Empty(t, e.actions.decided())
}

func TestALinkUsedBeforeARestartIsRefusedAfterIt(t *testing.T) {
	e, s := linkEnv(t)
	path, q := sign(t, s, "push", "push-1", spec.ApprovalAbort)
	code, body := e.post(t, path, q, nil)
	require.Equal(t, http.StatusAccepted, code, body)

	// A restarted daemon's server has forgotten the nonces it took; the
	// decision the link made was journaled with its nonce and ended the
	// pause, so the same link finds nothing to decide.
	e2 := start(t, server.Options{Token: token, Links: s, AllowedHosts: []string{"tandem.example.com"}})
	code, body = e2.post(t, path, q, nil)
	require.Equal(t, http.StatusConflict, code, body)
	require.Contains(t, body, "no release of this service is paused for approval")
	code, _, body = e2.do(t, "GET", path+"?"+q.Encode(), "", nil)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, body, "not paused for approval any more")
	require.Empty(t, e2.actions.decided())
}

func TestLinksAreNotServedWithoutAKey(t *testing.T) {
	e := start(t, server.Options{Token: token})
	e.pause("push", "push-1")
	code, _, _ := e.do(t, "POST", "/approval/push/promote", "", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.Empty(t, e.actions.decided())
}

func TestStatusTableShowsThePauseAndTheDecision(t *testing.T) {
	e := start(t, server.Options{})
	e.pause("gateway", "gateway-1")
	var b strings.Builder
	require.NoError(t, server.PrintServices(&b, server.ServiceList{Time: t0, Services: e.status.Statuses()}, server.FormatTable))
	require.Contains(t, b.String(), "release:approval")
	require.Contains(t, b.String(), "gateway: PAUSED for approval since 2025-03-01T02:59:50Z (10s ago), until 2025-03-01T04:00:00Z, then abort: "+
		"release 1.9.0 to group B (transition gateway-1). Promote or abort: tandem promote|abort gateway, the dashboard, the API, or the chat message's links")

	list := e.status.Statuses()
	for i := range list {
		if list[i].Service == "gateway" {
			list[i].Transition.Phase = reconcile.PhaseEnable
			list[i].Transition.Approval.Decision = &reconcile.ApprovalVerdict{Transition: "gateway-1", Action: spec.ApprovalPromote,
				By: "link (nonce n1, from 10.0.0.9)", At: t0}
		}
	}
	b.Reset()
	require.NoError(t, server.PrintServices(&b, server.ServiceList{Time: t0, Services: list}, server.FormatTable))
	require.Contains(t, b.String(), "gateway: 1.9.0 promoted at the approval gate by link (nonce n1, from 10.0.0.9) at 2025-03-01T03:00:00Z")
}

// pauseAtStep shows service's release paused at the manual pause of
// rollout step (from 1) of three.
func (e *env) pauseAtStep(service, id string, step int) {
	e.pause(service, id)
	list := e.status.Statuses()
	for i := range list {
		if list[i].Service == service {
			list[i].Phase = reconcile.PhaseShift
			tr := list[i].Transition
			tr.Phase, tr.Approval = reconcile.PhaseShift, &reconcile.ApprovalProgress{Since: t0.Add(-time.Hour),
				Decision: &reconcile.ApprovalVerdict{Transition: id, Action: spec.ApprovalPromote, By: "cli", At: t0.Add(-time.Hour)}}
			tr.Rollout = &reconcile.RolloutProgress{Steps: []reconcile.RolloutStep{{Share: 10, Manual: true}, {Share: 50, Manual: true}, {Share: 100}},
				Step: step - 1, Reached: t0.Add(-time.Minute), Pause: &reconcile.ApprovalProgress{Since: t0.Add(-10 * time.Second)}}
		}
	}
	e.status.set(list)
}

// A link is bound to its pause: at a manual rollout step, the approval
// gate's links (and another step's) find nothing to decide; the step's own
// link decides that step.
func TestALinkDecidesOnlyThePauseItWasMadeFor(t *testing.T) {
	e, s := linkEnv(t)
	e.pauseAtStep("push", "push-1", 2)
	path, q := sign(t, s, "push", "push-1", spec.ApprovalAbort) // the gate's
	code, _, body := e.do(t, "GET", path+"?"+q.Encode(), "", nil)
	require.Equal(t, http.StatusConflict, code, body)
	require.Contains(t, body, "transition push-1 of push is not paused for approval any more at the approval gate")
	nonce := ""
	for _, step := range []int{1, 2} {
		link, err := s.URL("push", "push-1", step, spec.ApprovalAbort, t0, time.Time{})
		require.NoError(t, err)
		path, q := local(t, link)
		code, _, body := e.do(t, "GET", path+"?"+q.Encode(), "", nil)
		if step == 1 {
			require.Equal(t, http.StatusConflict, code, body)
			continue
		}
		require.Equal(t, http.StatusOK, code, body)
		require.Contains(t, body, `paused at <span id="pause">rollout step 2</span>`)
		code, body = e.post(t, path, q, nil)
		require.Equal(t, http.StatusAccepted, code, body)
		nonce = q.Get("n")
	}
	require.Equal(t, []decisionCall{{"abort", "push", "push-1", "link (nonce " + nonce + ", from 127.0.0.1)", 2}}, e.actions.decided())
}

func TestStatusTableShowsAPauseAtARolloutStep(t *testing.T) {
	e := start(t, server.Options{})
	e.pauseAtStep("gateway", "gateway-1", 2)
	var b strings.Builder
	require.NoError(t, server.PrintServices(&b, server.ServiceList{Time: t0, Services: e.status.Statuses()}, server.FormatTable))
	require.Contains(t, b.String(), "release:shift 2/3 50%")
	require.Contains(t, b.String(), "gateway: PAUSED at step 2 (share 50%) for approval since 2025-03-01T02:59:50Z (10s ago), until someone decides: "+
		"release 1.9.0 to group B (transition gateway-1). Promote (next step) or abort (all traffic back to group A): tandem promote|abort gateway")
}
