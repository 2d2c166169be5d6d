package server_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

const token = "tk-7f3a9c2e5b1d4068a9e7c3f1"

func (e *env) do(t *testing.T, method, path, body string, header map[string]string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, strings.NewReader(body))
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := e.client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, resp.Header, string(b)
}

func TestServicesListMatchesGolden(t *testing.T) {
	e := start(t, server.Options{})
	code, h, body := e.do(t, "GET", "/api/v1/services", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Equal(t, "application/json; charset=utf-8", h.Get("Content-Type"))
	golden(t, "services.json", []byte(body))

	var list server.ServiceList
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Equal(t, t0, list.Time)
	require.Equal(t, fixtures(), list.Services, "the JSON carries every field of the status")
}

type fakeSource struct{ st gitsource.Status }

func (f fakeSource) Current() gitsource.Status { return f.st }

func TestServicesListShowsTheSourceAndItsFetchFailure(t *testing.T) {
	good := &gitsource.Revision{Hash: revOld}
	e := start(t, server.Options{Source: fakeSource{gitsource.Status{Good: good, Head: good, Failures: 3,
		LastFetch: t0.Add(-time.Second), FetchErr: errors.New("fetching branch main from https://git.example.com/ops/desired.git: connection refused")}}})
	_, _, body := e.do(t, "GET", "/api/v1/services", "", nil)
	var list server.ServiceList
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	require.Equal(t, &server.SourceStatus{Revision: revOld, LastFetch: t0.Add(-time.Second), Failures: 3,
		FetchError: "fetching branch main from https://git.example.com/ops/desired.git: connection refused"}, list.Source)
}

func TestServicesListIsEmptyNotNullWithoutServices(t *testing.T) {
	e := start(t, server.Options{})
	e.status.set(nil)
	_, _, body := e.do(t, "GET", "/api/v1/services", "", nil)
	require.JSONEq(t, `{"time": "2025-03-01T03:00:00Z", "services": []}`, body)
}

func TestServiceByName(t *testing.T) {
	e := start(t, server.Options{})
	code, _, body := e.do(t, "GET", "/api/v1/services/push", "", nil)
	require.Equal(t, http.StatusOK, code)
	var st reconcile.Status
	require.NoError(t, json.Unmarshal([]byte(body), &st))
	require.Equal(t, fixtures()[2], st)

	code, _, body = e.do(t, "GET", "/api/v1/services/nope", "", nil)
	require.Equal(t, http.StatusNotFound, code)
	require.JSONEq(t, `{"error": "service \"nope\": no such service in the desired state"}`, body)
}

func TestEventsEndpoint(t *testing.T) {
	e := start(t, server.Options{})
	tests := []struct {
		name  string
		query string
		code  int
		want  []string // reasons, oldest first; or the error
	}{
		{"no query lists every event in memory", "", 200,
			[]string{"TransitionAborted", "TransitionStarted", "PhaseCompleted", "DriftDetected"}},
		{"service keeps that service's events", "?service=push", 200, []string{"TransitionAborted", "DriftDetected"}},
		{"since keeps later events", "?since=2025-03-01T02:59:00Z", 200, []string{"PhaseCompleted", "DriftDetected"}},
		{"limit keeps the newest", "?limit=1", 200, []string{"DriftDetected"}},
		{"an unknown service lists nothing", "?service=nope", 200, []string{}},
		{"a bad since is refused", "?since=yesterday", 400,
			[]string{`query parameter since: want an RFC 3339 time such as 2025-03-01T03:00:00Z, got "yesterday"`}},
		{"a zero limit is refused", "?limit=0", 400, []string{`query parameter limit: want an integer from 1 to 100000, got "0"`}},
		{"a non-numeric limit is refused", "?limit=ten", 400, []string{`query parameter limit: want an integer from 1 to 100000, got "ten"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, _, body := e.do(t, "GET", "/api/v1/events"+tc.query, "", nil)
			require.Equal(t, tc.code, code, body)
			if code != 200 {
				var eb server.ErrorBody
				require.NoError(t, json.Unmarshal([]byte(body), &eb))
				require.Equal(t, tc.want[0], eb.Error)
				return
			}
			var list server.EventList
			require.NoError(t, json.Unmarshal([]byte(body), &list))
			got := []string{}
			for _, ev := range list.Events {
				got = append(got, ev.Reason)
			}
			require.Equal(t, tc.want, got)
		})
	}
}

func TestEventsKeepEveryField(t *testing.T) {
	e := start(t, server.Options{})
	_, _, body := e.do(t, "GET", "/api/v1/events", "", nil)
	var list server.EventList
	require.NoError(t, json.Unmarshal([]byte(body), &list))
	want := fixtureEvents()
	require.Equal(t, []reconcile.Event{want[0], want[1], want[2], want[3]}, list.Events)
}

func TestActions(t *testing.T) {
	auth := map[string]string{"Authorization": "Bearer " + token}
	with := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": "Bearer " + token}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	tests := []struct {
		name      string
		token     spec.Secret
		path      string
		body      string
		header    map[string]string
		actionErr error
		code      int
		answer    string
		calls     []call
	}{
		{name: "sync with the token is accepted", token: token, path: "/api/v1/services/push/sync", header: auth,
			code: 202, answer: `{"service": "push", "action": "sync"}`, calls: []call{{"sync", "push", false}}},
		{name: "sync with retry clears a failed release", token: token, path: "/api/v1/services/push/sync?retry=true", header: auth,
			code: 202, answer: `{"service": "push", "action": "sync", "retry": true}`, calls: []call{{"sync", "push", true}}},
		{name: "the bearer scheme is case-insensitive", token: token, path: "/api/v1/services/push/sync",
			header: map[string]string{"Authorization": "bearer " + token}, code: 202, answer: `{"service": "push", "action": "sync"}`,
			calls: []call{{"sync", "push", false}}},
		{name: "sync without a token is refused", token: token, path: "/api/v1/services/push/sync",
			code: 401, answer: `{"error": "a bearer token is required (Authorization: Bearer <the token api.tokenEnv names>)"}`},
		{name: "sync with a wrong token is refused", token: token, path: "/api/v1/services/push/sync",
			header: map[string]string{"Authorization": "Bearer " + token + "x"}, code: 401,
			answer: `{"error": "a bearer token is required (Authorization: Bearer <the token api.tokenEnv names>)"}`},
		{name: "a token under another scheme is refused", token: token, path: "/api/v1/services/push/sync",
			header: map[string]string{"Authorization": "Basic " + token}, code: 401,
			answer: `{"error": "a bearer token is required (Authorization: Bearer <the token api.tokenEnv names>)"}`},
		{name: "without a configured token actions are open", path: "/api/v1/services/gateway/sync",
			code: 202, answer: `{"service": "gateway", "action": "sync"}`, calls: []call{{"sync", "gateway", false}}},
		{name: "a bad retry value is refused", token: token, path: "/api/v1/services/push/sync?retry=maybe", header: auth,
			code: 400, answer: `{"error": "query parameter retry: want true or false, got \"maybe\""}`},
		{name: "sync of an unknown service is not found", token: token, path: "/api/v1/services/nope/sync", header: auth,
			code: 404, answer: `{"error": "sync nope: no such service in the desired state"}`},
		{name: "a failing action is a server error", token: token, path: "/api/v1/services/push/sync", header: auth,
			actionErr: errors.New("journal of push: etcd unavailable"),
			code:      500, answer: `{"error": "journal of push: etcd unavailable"}`, calls: []call{{"sync", "push", false}}},
		{name: "suspend true suspends", token: token, path: "/api/v1/services/push/suspend", body: `{"suspend": true}`, header: auth,
			code: 202, answer: `{"service": "push", "action": "suspend"}`, calls: []call{{"suspend", "push", true}}},
		{name: "suspend false resumes", token: token, path: "/api/v1/services/push/suspend", body: `{"suspend": false}`, header: auth,
			code: 202, answer: `{"service": "push", "action": "resume"}`, calls: []call{{"suspend", "push", false}}},
		{name: "suspend without a token is refused", token: token, path: "/api/v1/services/push/suspend", body: `{"suspend": true}`,
			code: 401, answer: `{"error": "a bearer token is required (Authorization: Bearer <the token api.tokenEnv names>)"}`},
		{name: "suspend without the field is refused", token: token, path: "/api/v1/services/push/suspend", body: `{}`, header: auth,
			code: 400, answer: `{"error": "request body: want {\"suspend\": true} or {\"suspend\": false}: field \"suspend\" is missing"}`},
		{name: "suspend with an unknown field is refused", token: token, path: "/api/v1/services/push/suspend",
			body: `{"suspend": true, "forever": true}`, header: auth,
			code: 400, answer: `{"error": "request body: want {\"suspend\": true} or {\"suspend\": false}: json: unknown field \"forever\""}`},
		{name: "suspend with a string is refused", token: token, path: "/api/v1/services/push/suspend", body: `{"suspend": "yes"}`, header: auth,
			code: 400, answer: `{"error": "request body: want {\"suspend\": true} or {\"suspend\": false}: json: cannot unmarshal string into Go struct field SuspendRequest.suspend of type bool"}`},
		{name: "suspend with two values is refused", token: token, path: "/api/v1/services/push/suspend",
			body: `{"suspend": true} {"suspend": false}`, header: auth,
			code: 400, answer: `{"error": "request body: want {\"suspend\": true} or {\"suspend\": false}: more than one JSON value"}`},
		{name: "suspend of an unknown service is not found", token: token, path: "/api/v1/services/nope/suspend",
			body: `{"suspend": true}`, header: auth, code: 404, answer: `{"error": "suspend nope: no such service in the desired state"}`},
		{name: "a cross-origin browser request is refused even with the token", token: token, path: "/api/v1/services/push/sync",
			header: with(map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"}), code: 403,
			answer: `{"error": "cross-origin request refused: use the API from a tool, not from another web page"}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := start(t, server.Options{Token: tc.token})
			e.actions.err = tc.actionErr
			code, h, body := e.do(t, "POST", tc.path, tc.body, tc.header)
			require.Equal(t, tc.code, code, body)
			if tc.answer != "" {
				require.JSONEq(t, tc.answer, body)
			}
			if code == 401 {
				require.Equal(t, `Bearer realm="tandem"`, h.Get("WWW-Authenticate"))
			}
			require.Equal(t, tc.calls, e.actions.recorded())
		})
	}
}

func TestReadsStayOpenWhenATokenIsConfigured(t *testing.T) {
	e := start(t, server.Options{Token: token})
	for _, path := range []string{"/healthz", "/readyz", "/api/v1/services", "/api/v1/services/push", "/api/v1/events", "/"} {
		code, _, _ := e.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, code, path)
	}
}

func TestMethodsOtherThanTheRoutesAreRefused(t *testing.T) {
	e := start(t, server.Options{})
	code, _, _ := e.do(t, "GET", "/api/v1/services/push/sync", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, code)
	code, _, _ = e.do(t, "DELETE", "/api/v1/services/push", "", nil)
	require.Equal(t, http.StatusMethodNotAllowed, code)
	require.Empty(t, e.actions.recorded())
}

func TestHealthAndReadiness(t *testing.T) {
	var notReady error
	e := start(t, server.Options{Ready: func() error { return notReady }})
	code, _, body := e.do(t, "GET", "/healthz", "", nil)
	require.Equal(t, 200, code)
	require.Equal(t, "ok\n", body)
	code, _, body = e.do(t, "GET", "/readyz", "", nil)
	require.Equal(t, 200, code)
	require.Equal(t, "ok\n", body)

	notReady = errors.New("no good revision of the desired state yet")
	code, _, body = e.do(t, "GET", "/readyz", "", nil)
	require.Equal(t, http.StatusServiceUnavailable, code)
	require.Equal(t, "not ready: no good revision of the desired state yet\n", body)
	code, _, _ = e.do(t, "GET", "/healthz", "", nil)
	require.Equal(t, 200, code, "liveness does not depend on readiness")
}

func TestGitWebhookIsMountedAndChecksItsOwnSignature(t *testing.T) {
	var got []string
	hook := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got = append(got, r.Header.Get("X-Hub-Signature-256")+" "+string(b))
		w.WriteHeader(http.StatusNoContent)
	})
	e := start(t, server.Options{Token: token, GitWebhook: hook})
	code, _, _ := e.do(t, "POST", "/hooks/git", `{"ref":"refs/heads/main"}`, map[string]string{"X-Hub-Signature-256": "sha256=ab"})
	require.Equal(t, http.StatusNoContent, code, "the bearer token does not apply to the webhook")
	require.Equal(t, []string{`sha256=ab {"ref":"refs/heads/main"}`}, got)

	e = start(t, server.Options{})
	code, _, _ = e.do(t, "POST", "/hooks/git", `{}`, nil)
	require.Equal(t, http.StatusNotFound, code, "no webhook configured: no route")
}

func TestTheTokenNeverAppearsInAnyAnswer(t *testing.T) {
	e := start(t, server.Options{Token: token, Registry: newRegistry(t)})
	auth := map[string]string{"Authorization": "Bearer " + token}
	wrong := map[string]string{"Authorization": "Bearer " + token + "-wrong"}
	requests := []struct{ method, path, body string }{
		{"GET", "/healthz", ""}, {"GET", "/readyz", ""}, {"GET", "/metrics", ""},
		{"GET", "/api/v1/services", ""}, {"GET", "/api/v1/services/push", ""}, {"GET", "/api/v1/services/nope", ""},
		{"GET", "/api/v1/events", ""}, {"GET", "/api/v1/events?limit=x", ""},
		{"GET", "/", ""}, {"GET", "/static/app.js", ""}, {"GET", "/static/app.css", ""}, {"GET", "/nope", ""},
		{"POST", "/api/v1/services/push/sync", ""}, {"POST", "/api/v1/services/nope/sync", ""},
		{"POST", "/api/v1/services/push/suspend", `{"suspend": true}`}, {"POST", "/api/v1/services/push/suspend", `{"token": "` + token + `"}`},
		{"POST", "/hooks/git", ""},
	}
	for _, r := range requests {
		for _, h := range []map[string]string{nil, auth, wrong} {
			code, hdr, body := e.do(t, r.method, r.path, r.body, h)
			require.NotContains(t, body, token, "%s %s answered %d", r.method, r.path, code)
			for k, vs := range hdr {
				for _, v := range vs {
					require.NotContains(t, v, token, "header %s of %s %s", k, r.method, r.path)
				}
			}
		}
	}
	// The stream's first messages.
	frames := openStream(t, e)
	for range 2 {
		f := frames.next(t)
		require.NotContains(t, f.data, token)
	}
}

func TestDashboardIsServedWithNothingFromElsewhere(t *testing.T) {
	e := start(t, server.Options{})
	for path, ctype := range map[string]string{
		"/": "text/html; charset=utf-8", "/static/app.js": "text/javascript; charset=utf-8", "/static/app.css": "text/css; charset=utf-8",
	} {
		code, h, body := e.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, code, path)
		require.Equal(t, ctype, h.Get("Content-Type"), path)
		require.Contains(t, h.Get("Content-Security-Policy"), "default-src 'none'", path)
		require.Contains(t, h.Get("Content-Security-Policy"), "connect-src 'self'", path)
		for _, external := range []string{"http:", "https:", `src="//`, `href="//`, "@import"} {
			require.NotContains(t, body, external, "%s refers to something outside the server", path)
		}
	}
	code, _, body := e.do(t, "GET", "/", "", nil)
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, `<script src="static/app.js" defer></script>`)
}
