package demoapp_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/demoapp"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func start(t *testing.T, o demoapp.Options) *demoapp.App {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	o.Listener = ln
	if o.Name == "" {
		o.Name, o.Version, o.Group = "a1", "1.0.0", "A"
	}
	a, err := demoapp.Start(t.Context(), o)
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Stop() })
	return a
}

func get(t *testing.T, url string) (*http.Response, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, string(b)
}

func dial(t *testing.T, ctx context.Context, a *demoapp.App) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, "ws://"+a.Addr()+"/ws", nil)
	require.NoError(t, err)
	require.Equal(t, "a1", resp.Header.Get("X-Backend"))
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// metric returns one sample line of /metrics, e.g. "tandem_demo_websockets_open 2".
func metric(t *testing.T, a *demoapp.App, name string) string {
	t.Helper()
	_, body := get(t, "http://"+a.Addr()+"/metrics")
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			return line
		}
	}
	return ""
}

func TestEchoAnswersWithTheBodyAndTheInstanceHeaders(t *testing.T) {
	a := start(t, demoapp.Options{Name: "b2", Version: "2.0.0", Group: "B"})
	resp, err := http.Post("http://"+a.Addr()+"/echo", "text/plain", strings.NewReader("req-42"))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "req-42", string(body))
	require.Equal(t, "b2", resp.Header.Get("X-Backend"))
	require.Equal(t, "2.0.0", resp.Header.Get("X-Version"))
	require.Equal(t, "B", resp.Header.Get("X-Group"))

	_, version := get(t, "http://"+a.Addr()+"/version")
	require.JSONEq(t, `{"version":"2.0.0","name":"b2","group":"B"}`, version)
	resp, health := get(t, "http://"+a.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "ok\n", health)
	require.Equal(t, `tandem_demo_requests_total{handler="echo"} 1`, metric(t, a, "tandem_demo_requests_total"))
}

func TestBadEchoRequestsAreRefused(t *testing.T) {
	a := start(t, demoapp.Options{})
	for _, tc := range []struct {
		name, method, path string
		code               int
	}{
		{"delay that is not a duration", http.MethodPost, "/echo?delay=soon", http.StatusBadRequest},
		{"delay above 30s", http.MethodPost, "/echo?delay=31s", http.StatusBadRequest},
		{"method other than GET and POST", http.MethodPut, "/echo", http.StatusMethodNotAllowed},
		{"drain by GET", http.MethodGet, "/drain", http.StatusMethodNotAllowed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+a.Addr()+tc.path, nil)
			require.NoError(t, err)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			require.Equal(t, tc.code, resp.StatusCode)
		})
	}
}

func TestWebSocketEchoesInOrderAndIsCountedWhileOpen(t *testing.T) {
	a := start(t, demoapp.Options{})
	ctx := t.Context()
	c := dial(t, ctx, a)
	for _, msg := range []string{"1", "2", "3"} {
		require.NoError(t, c.Write(ctx, websocket.MessageText, []byte(msg)))
	}
	for _, want := range []string{"1", "2", "3"} {
		_, got, err := c.Read(ctx)
		require.NoError(t, err)
		require.Equal(t, want, string(got))
	}
	require.Equal(t, "tandem_demo_websockets_open 1", metric(t, a, "tandem_demo_websockets_open"))
	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return metric(t, a, "tandem_demo_websockets_open") == "tandem_demo_websockets_open 0" },
		5*time.Second, 10*time.Millisecond)
}

func TestDrainClosesWebSocketsWithGoingAwayAndStillAcceptsNewOnes(t *testing.T) {
	a := start(t, demoapp.Options{DrainJitter: 50 * time.Millisecond})
	ctx := t.Context()
	conns := []*websocket.Conn{dial(t, ctx, a), dial(t, ctx, a)}
	// The client's handshake ends before the app has registered the socket.
	require.Eventually(t, func() bool { return metric(t, a, "tandem_demo_websockets_open") == "tandem_demo_websockets_open 2" },
		5*time.Second, 5*time.Millisecond)
	resp, err := http.Post("http://"+a.Addr()+"/drain", "", nil)
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	require.JSONEq(t, `{"closing":2}`, string(body))
	for _, c := range conns {
		_, _, err := c.Read(ctx)
		require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err))
	}
	// Draining is not shutting down: the app stays healthy and takes new WebSockets.
	resp, _ = get(t, "http://"+a.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	c := dial(t, ctx, a)
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("after drain")))
	_, got, err := c.Read(ctx)
	require.NoError(t, err)
	require.Equal(t, "after drain", string(got))
}

func TestStopWaitsForInFlightRequestsAndClosesWebSocketsWithGoingAway(t *testing.T) {
	a := start(t, demoapp.Options{})
	ctx := t.Context()
	ws := dial(t, ctx, a)

	// A request held by the app for 300ms must complete although Stop is
	// called while it is in flight.
	echoed := make(chan string, 1)
	go func() {
		resp, err := http.Post("http://"+a.Addr()+"/echo?delay=300ms", "text/plain", strings.NewReader("slow"))
		if err != nil {
			echoed <- err.Error()
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		echoed <- resp.Status + " " + string(b)
	}()
	require.Eventually(t, func() bool { return metric(t, a, "tandem_demo_inflight_requests") == "tandem_demo_inflight_requests 1" },
		5*time.Second, 5*time.Millisecond)

	closed := make(chan error, 1)
	go func() {
		_, _, err := ws.Read(ctx)
		closed <- err
	}()
	require.NoError(t, a.Stop())
	// Stop returned: the request was answered in full, the WebSocket was
	// closed with 1001, and the port no longer accepts connections.
	require.Equal(t, "200 OK slow", <-echoed)
	require.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(<-closed))
	_, err := net.Dial("tcp", a.Addr())
	require.Error(t, err)
}

func TestHealthzTurns503DuringTheShutdownDelayWhileRequestsAreStillServed(t *testing.T) {
	a := start(t, demoapp.Options{ShutdownDelay: 500 * time.Millisecond})
	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop() }()
	require.Eventually(t, func() bool {
		resp, _ := get(t, "http://"+a.Addr()+"/healthz")
		return resp.StatusCode == http.StatusServiceUnavailable
	}, 5*time.Second, 5*time.Millisecond)
	resp, body := get(t, "http://"+a.Addr()+"/echo")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	require.NoError(t, <-stopped)
}

func TestSetHealthyFailsOnlyTheHealthCheck(t *testing.T) {
	a := start(t, demoapp.Options{})
	a.SetHealthy(false)
	require.False(t, a.Healthy())
	resp, _ := get(t, "http://"+a.Addr()+"/healthz")
	require.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	resp, body := get(t, "http://"+a.Addr()+"/echo")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	a.SetHealthy(true)
	require.True(t, a.Healthy())
	resp, _ = get(t, "http://"+a.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestStartFailsOnAnAddressInUse(t *testing.T) {
	a := start(t, demoapp.Options{})
	_, err := demoapp.Start(t.Context(), demoapp.Options{Name: "dup", Listen: a.Addr()})
	require.ErrorContains(t, err, "demo app dup: listen tcp "+a.Addr())
}

func TestRunServesUntilItsContextEnds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- demoapp.Run(ctx, demoapp.Options{Name: "a1", Version: "1.0.0", Listener: ln}) }()
	resp, body := get(t, "http://"+addr+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode, body)
	cancel()
	require.NoError(t, <-done)
	_, err = net.Dial("tcp", addr)
	require.Error(t, err)
}

func TestRegisterRunsBeforeServingAndDeregistersFirstAtStop(t *testing.T) {
	var events []string
	a := start(t, demoapp.Options{Name: "a1", Version: "1.2.0", Group: "A",
		Register: func(_ context.Context, a *demoapp.App) (func(), error) {
			events = append(events, "register "+a.Instance().Addr()+" "+a.Version())
			return func() {
				// Still serving: deregistration comes before the shutdown.
				resp, body := get(t, "http://"+a.Addr()+"/healthz")
				events = append(events, "deregister "+resp.Status+" "+strings.TrimSpace(body))
			}, nil
		}})
	require.Equal(t, []string{"register " + a.Addr() + " 1.2.0"}, events)
	require.NoError(t, a.Stop())
	require.Equal(t, []string{"register " + a.Addr() + " 1.2.0", "deregister 200 OK ok"}, events)
}

func TestAFailedRegistrationFailsStartAndFreesTheListener(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	_, err = demoapp.Start(t.Context(), demoapp.Options{Name: "a1", Version: "1.0.0", Listener: ln,
		Register: func(context.Context, *demoapp.App) (func(), error) { return nil, io.ErrUnexpectedEOF }})
	require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	require.ErrorContains(t, err, "demo app a1: registering")
	ln2, err := net.Listen("tcp", ln.Addr().String())
	require.NoError(t, err, "the listener was closed")
	require.NoError(t, ln2.Close())
}

func TestAFaultyVersionFailsOneRouteWithHealthGreenAndItsMetricsSayIt(t *testing.T) {
	faults := map[string]demoapp.Fault{"2.0.0": {Status: 500}, "3.0.0": {Path: "/version", Delay: 50 * time.Millisecond}}
	good := start(t, demoapp.Options{Name: "a1", Version: "1.0.0", Group: "A", Faults: faults})
	bad := start(t, demoapp.Options{Name: "b1", Version: "2.0.0", Group: "B", Faults: faults})
	slow := start(t, demoapp.Options{Name: "b2", Version: "3.0.0", Group: "B", Faults: faults})

	resp, _ := get(t, "http://"+good.Addr()+"/echo")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	resp, body := get(t, "http://"+bad.Addr()+"/echo")
	require.Equal(t, http.StatusInternalServerError, resp.StatusCode)
	require.Contains(t, body, "fault injected for version 2.0.0")
	resp, _ = get(t, "http://"+bad.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode, "health stays green")
	resp, _ = get(t, "http://"+slow.Addr()+"/echo")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the fault is on another route")
	resp, _ = get(t, "http://"+slow.Addr()+"/version")
	require.Equal(t, http.StatusOK, resp.StatusCode)

	_, metrics := get(t, "http://"+bad.Addr()+"/metrics")
	require.Contains(t, metrics, `tandem_demo_http_requests_total{code="500",group="B",route="/echo",version="2.0.0"} 1`)
	require.Contains(t, metrics, `tandem_demo_http_requests_total{code="200",group="B",route="/healthz",version="2.0.0"} 1`)
	_, metrics = get(t, "http://"+slow.Addr()+"/metrics")
	// The slow answer is in a bucket above 50ms and none below.
	require.Contains(t, metrics, `tandem_demo_http_request_duration_seconds_bucket{group="B",route="/version",version="3.0.0",le="0.025"} 0`)
	require.Contains(t, metrics, `tandem_demo_http_request_duration_seconds_count{group="B",route="/version",version="3.0.0"} 1`)
}

func TestFaultsParseFromTheCommandLine(t *testing.T) {
	v, f, err := demoapp.ParseFault("2.0.0=status:503@/version")
	require.NoError(t, err)
	require.Equal(t, "2.0.0", v)
	require.Equal(t, demoapp.Fault{Path: "/version", Status: 503}, f)
	_, f, err = demoapp.ParseFault("2.0.0=delay:300ms")
	require.NoError(t, err)
	require.Equal(t, demoapp.Fault{Delay: 300 * time.Millisecond}, f)
	for _, bad := range []string{"2.0.0", "=status:500", "2.0.0=status:abc", "2.0.0=status:42", "2.0.0=delay:-1s", "2.0.0=boom", "2.0.0=status:500@echo"} {
		_, _, err := demoapp.ParseFault(bad)
		require.Error(t, err, bad)
	}
}
