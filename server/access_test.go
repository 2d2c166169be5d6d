package server_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/server"
)

const readToken = "rd-4c1e8a2f9b7d3e05a6c4"

// reads are every read the read token guards.
var reads = []string{"/api/v1/services", "/api/v1/services/push", "/api/v1/events", "/", "/static/app.js", "/static/app.css"}

func TestReadTokenGuardsEveryRead(t *testing.T) {
	e := start(t, server.Options{Token: token, ReadToken: readToken, Registry: newRegistry(t)})
	for _, path := range append(reads, "/api/v1/stream") {
		code, h, body := e.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusUnauthorized, code, "%s without a token", path)
		require.NotContains(t, body, "user-service", path)
		if strings.HasPrefix(path, "/api/") {
			require.Equal(t, `Bearer realm="tandem"`, h.Get("WWW-Authenticate"), path)
		}
		code, _, _ = e.do(t, "GET", path, "", map[string]string{"Authorization": "Bearer " + readToken + "x"})
		require.Equal(t, http.StatusUnauthorized, code, "%s with a wrong token", path)
	}
	for _, tok := range []string{readToken, token} {
		for _, path := range reads {
			code, _, _ := e.do(t, "GET", path, "", map[string]string{"Authorization": "Bearer " + tok})
			require.Equal(t, http.StatusOK, code, "%s with a token", path)
		}
		frames := openStreamWith(t, e.client, e.url, map[string]string{"Authorization": "Bearer " + tok})
		require.Equal(t, "events", frames.next(t).event)
	}
	// The probes and (by default) the metrics stay open.
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		code, _, _ := e.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, code, path)
	}
	// The read token does not write.
	code, _, _ := e.do(t, "POST", "/api/v1/services/push/sync", "", map[string]string{"Authorization": "Bearer " + readToken})
	require.Equal(t, http.StatusUnauthorized, code)
	require.Empty(t, e.actions.recorded())
}

func TestMetricsCanRequireAToken(t *testing.T) {
	e := start(t, server.Options{ReadToken: readToken, MetricsRequireToken: true, Registry: newRegistry(t)})
	code, _, _ := e.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _, body := e.do(t, "GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + readToken})
	require.Equal(t, http.StatusOK, code)
	require.Contains(t, body, "tandem_reconcile_duration_seconds")
	code, _, _ = e.do(t, "GET", "/healthz", "", nil)
	require.Equal(t, http.StatusOK, code)

	// With only the write token, that one.
	e = start(t, server.Options{Token: token, MetricsRequireToken: true, Registry: newRegistry(t)})
	code, _, _ = e.do(t, "GET", "/metrics", "", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	code, _, _ = e.do(t, "GET", "/metrics", "", map[string]string{"Authorization": "Bearer " + token})
	require.Equal(t, http.StatusOK, code)
	code, _, _ = e.do(t, "GET", "/api/v1/services", "", nil)
	require.Equal(t, http.StatusOK, code, "reads stay open without a read token")
}

// noRedirect is a client that shows redirects instead of following them.
func noRedirect(c *http.Client) *http.Client {
	cp := *c
	cp.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &cp
}

func login(t *testing.T, e *env, tok string, header map[string]string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", e.url+"/login", strings.NewReader(url.Values{"token": {tok}}.Encode()))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := noRedirect(e.client).Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	return resp
}

func TestDashboardLoginSetsASessionCookieThatGrantsReadingOnly(t *testing.T) {
	e := start(t, server.Options{Token: token, ReadToken: readToken})
	code, h, body := e.do(t, "GET", "/", "", nil)
	require.Equal(t, http.StatusUnauthorized, code)
	require.Contains(t, body, `<form method="post" action="login">`, "the page is the login form")
	require.Contains(t, h.Get("Content-Security-Policy"), "form-action 'self'")

	resp := login(t, e, "wrong", nil)
	require.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	require.Empty(t, resp.Cookies(), "a wrong token gets no session")

	resp = login(t, e, readToken, map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"})
	require.Equal(t, http.StatusForbidden, resp.StatusCode, "another site cannot log a browser in")
	require.Empty(t, resp.Cookies())

	for _, tok := range []string{readToken, token} {
		resp = login(t, e, tok, nil)
		require.Equal(t, http.StatusSeeOther, resp.StatusCode)
		require.Equal(t, "/", resp.Header.Get("Location"), "back to the dashboard")
		cookies := resp.Cookies()
		require.Len(t, cookies, 1)
		c := cookies[0]
		require.Equal(t, "tandem_session", c.Name)
		require.True(t, c.HttpOnly)
		require.Equal(t, http.SameSiteStrictMode, c.SameSite)
		require.Equal(t, "/", c.Path)
		require.Equal(t, 12*3600, c.MaxAge)
		require.NotContains(t, c.Value, tok, "the cookie holds no token")

		session := map[string]string{"Cookie": "tandem_session=" + c.Value}
		for _, path := range reads {
			code, _, _ := e.do(t, "GET", path, "", session)
			require.Equal(t, http.StatusOK, code, "%s with the session", path)
		}
		frames := openStreamWith(t, e.client, e.url, session)
		require.Equal(t, "events", frames.next(t).event, "EventSource sends the cookie")
		code, _, _ = e.do(t, "POST", "/api/v1/services/push/sync", "", session)
		require.Equal(t, http.StatusUnauthorized, code, "a session never writes")
	}
	for what, v := range map[string]string{
		"forged":  "9999999999.00",
		"expired": e.srv.Session(time.Now().Add(-time.Second)),
		"garbage": "x",
	} {
		code, _, _ := e.do(t, "GET", "/api/v1/services", "", map[string]string{"Cookie": "tandem_session=" + v})
		require.Equal(t, http.StatusUnauthorized, code, "a %s session", what)
	}
	require.Empty(t, e.actions.recorded())
}

func TestWithoutAReadTokenThereIsNoLogin(t *testing.T) {
	e := start(t, server.Options{Token: token})
	resp := login(t, e, token, nil)
	require.Equal(t, http.StatusNotFound, resp.StatusCode, "no login route")
	code, _, _ := e.do(t, "GET", "/api/v1/services", "", nil)
	require.Equal(t, http.StatusOK, code)
}

func TestHostsOutsideTheAllowlistAreRefused(t *testing.T) {
	e := start(t, server.Options{AllowedHosts: []string{"tandem.internal"}, Registry: newRegistry(t)})
	host := func(h, path string) int {
		req, err := http.NewRequest("GET", e.url+path, nil)
		require.NoError(t, err)
		req.Host = h
		resp, err := e.client.Do(req)
		require.NoError(t, err)
		require.NoError(t, resp.Body.Close())
		return resp.StatusCode
	}
	for _, path := range append(reads, "/api/v1/stream") {
		require.Equal(t, http.StatusMisdirectedRequest, host("evil.example", path), path)
		require.Equal(t, http.StatusMisdirectedRequest, host("evil.example:8080", path), path)
		require.Equal(t, http.StatusMisdirectedRequest, host("tandem.internal.evil.example", path), path)
	}
	require.Equal(t, http.StatusMisdirectedRequest, host("evil.example", "/api/v1/services/push/sync"), "POST too")
	for _, h := range []string{"127.0.0.1:8080", "localhost:8080", "LOCALHOST", "[::1]:8080", "10.1.2.3", "tandem.internal:8080", "Tandem.Internal."} {
		require.Equal(t, http.StatusOK, host(h, "/api/v1/services"), h)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		require.Equal(t, http.StatusOK, host("scrape.example", path), "%s answers any host", path)
	}

	any := start(t, server.Options{AllowedHosts: []string{"*"}})
	req, err := http.NewRequest("GET", any.url+"/api/v1/services", nil)
	require.NoError(t, err)
	req.Host = "evil.example"
	resp, err := any.client.Do(req)
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusOK, resp.StatusCode, `"*" allows any host`)
}

func TestStreamsBeyondTheLimitAreRefused(t *testing.T) {
	e := start(t, server.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var first context.CancelFunc
	for i := range server.DefaultMaxStreams {
		sctx, stop := context.WithCancel(ctx)
		if i == 0 {
			first = stop
		} else {
			defer stop()
		}
		frames := openStreamCtx(t, sctx, e.client, e.url, nil)
		require.Equal(t, "events", frames.next(t).event)
	}
	refused := func() *http.Response {
		req, err := http.NewRequest("GET", e.url+"/api/v1/stream", nil)
		require.NoError(t, err)
		resp, err := e.client.Do(req)
		require.NoError(t, err)
		return resp
	}
	resp := refused()
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode, "stream %d", server.DefaultMaxStreams+1)
	require.Equal(t, "10", resp.Header.Get("Retry-After"))
	require.NoError(t, resp.Body.Close())
	// One ends: its slot is free again (once its handler has returned).
	first()
	require.Eventually(t, func() bool {
		resp := refused()
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 10*time.Second, 5*time.Millisecond)
}

func TestAnswersCarryNoSecret(t *testing.T) {
	const planted = "planted-S3cret+Value/x="
	const bearerTok = "eyJhbGciOiJIUzI1NiJ9.e30.sig"
	e := start(t, server.Options{Redactor: redact.New(planted)})
	list := fixtures()
	list[2].Message = "deploy failed: echo " + planted + "\nAuthorization: Bearer " + bearerTok
	list[2].Conditions[2].Message = "hook said password=" + planted
	list[3].Registry.Instances[0].Metadata["db.password"] = planted // as a registry would list it, unfiltered
	e.status.set(list)
	e.events.Record(reconcile.Event{Time: t0, Service: "push", Type: reconcile.EventWarning, Reason: reconcile.ReasonStepFailed,
		Message: "deploy output:\n" + planted})
	frames := openStream(t, e)
	var seen []string
	for range 2 {
		seen = append(seen, frames.next(t).data)
	}
	for _, path := range []string{"/api/v1/services", "/api/v1/services/push", "/api/v1/services/user-service", "/api/v1/events"} {
		code, _, body := e.do(t, "GET", path, "", nil)
		require.Equal(t, http.StatusOK, code)
		seen = append(seen, body)
	}
	for i, s := range seen {
		require.NotContains(t, s, planted, "answer %d", i)
		require.NotContains(t, s, "planted-S3cret", "answer %d", i)
		require.NotContains(t, s, bearerTok, "answer %d", i)
	}
	require.Contains(t, seen[3], "echo <redacted>")
}

func TestTheListenAddressNameIsAllowed(t *testing.T) {
	require.Equal(t, []string{"a.example", "tandem.internal"}, server.AllowedHosts("tandem.internal:8080", []string{"a.example"}))
	require.Equal(t, []string{"a.example"}, server.AllowedHosts("10.0.0.5:8080", []string{"a.example"}))
	require.Empty(t, server.AllowedHosts(":8080", nil))
	require.Equal(t, []string{"*"}, server.AllowedHosts("tandem.internal:8080", []string{"*"}))
}

// TestAStalledStreamClientIsDropped: a client that stops reading while a
// large message is on its way is dropped when a write misses its deadline,
// and its stream slot (and the memory of its messages) is freed.
func TestAStalledStreamClientIsDropped(t *testing.T) {
	e := start(t, server.Options{MaxStreams: 1})
	e.srv.SetStreamWriteTimeout(200 * time.Millisecond)
	base := fixtures()
	list := make([]reconcile.Status, 0, 5000)
	for i := range 5000 { // a services message of ~16 MB: more than the socket buffers hold
		s := base[i%len(base)]
		s.Service = fmt.Sprintf("%s-%04d", s.Service, i)
		list = append(list, s)
	}
	e.status.set(list)
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.url, "http://"))
	require.NoError(t, err)
	defer conn.Close()
	_, err = fmt.Fprintf(conn, "GET /api/v1/stream HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	require.NoError(t, err) // and never read
	// The stalled stream holds the only slot until its write times out.
	require.Eventually(t, func() bool {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, "GET", e.url+"/api/v1/stream", nil)
		require.NoError(t, err)
		resp, err := e.client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 20*time.Second, 20*time.Millisecond, "the stalled client's slot is freed")
}
