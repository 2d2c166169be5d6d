package probe_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/probe"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func instanceOf(t *testing.T, addr string) spec.Instance {
	t.Helper()
	host, port, err := net.SplitHostPort(addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return spec.Instance{IP: host, Port: p, ID: "i-" + port}
}

func startApp(t *testing.T, version string) spec.Instance {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := demoapp.Start(t.Context(), demoapp.Options{Name: "a1", Version: version, Group: "A", Listener: ln, DrainJitter: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Stop() })
	return a.Instance()
}

// stub serves fixed answers by path.
func stub(t *testing.T, routes map[string]func(w http.ResponseWriter, r *http.Request)) spec.Instance {
	t.Helper()
	mux := http.NewServeMux()
	for path, h := range routes {
		mux.HandleFunc(path, h)
	}
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return instanceOf(t, srv.Listener.Addr().String())
}

func text(code int, body string) func(http.ResponseWriter, *http.Request) {
	return func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

func service() *spec.Service {
	s := &spec.Service{
		Name:   "demo",
		Health: spec.Health{HTTP: &spec.HTTPProbe{Path: "/healthz"}, Version: spec.VersionSource{HTTP: "/version"}},
		Drain:  spec.Drain{Metrics: "/metrics", Signal: &spec.DrainSignal{HTTP: "/drain"}},
	}
	s.Default()
	return s
}

func TestProbeOfTheDemoAppReadsHealthAndTheJSONVersion(t *testing.T) {
	in := startApp(t, "1.4.2")
	res := probe.New(nil, nil).Probe(t.Context(), service(), in)
	require.Equal(t, providers.ProbeResult{Healthy: true, Version: "1.4.2"}, res)
}

func TestProbeOutcomes(t *testing.T) {
	ok := text(http.StatusOK, "ok\n")
	for _, tc := range []struct {
		name   string
		routes map[string]func(http.ResponseWriter, *http.Request)
		svc    func(*spec.Service)
		want   providers.ProbeResult
		detail string // substring of Detail
	}{
		{
			name:   "plain-text version body is the version",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": ok, "/version": text(http.StatusOK, "2.0.1\n")},
			want:   providers.ProbeResult{Healthy: true, Version: "2.0.1"},
		},
		{
			name:   "without health.version.http the version is left to the registry",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": ok},
			svc:    func(s *spec.Service) { s.Health.Version = spec.VersionSource{NacosMetadata: "version"} },
			want:   providers.ProbeResult{Healthy: true},
		},
		{
			name:   "non-2xx health answer is unhealthy with the status",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": text(http.StatusServiceUnavailable, "draining"), "/version": text(http.StatusOK, "2.0.1")},
			detail: "/healthz: 503 Service Unavailable",
		},
		{
			name:   "redirect is not followed and is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": func(w http.ResponseWriter, r *http.Request) { http.Redirect(w, r, "/login", http.StatusFound) }},
			detail: "302 Found",
		},
		{
			name:   "JSON version without a version field is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": ok, "/version": text(http.StatusOK, `{"name":"a1"}`)},
			detail: "reading the version: the answer names no version",
		},
		{
			name:   "broken JSON version is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": ok, "/version": text(http.StatusOK, `{"version":`)},
			detail: "reading the version: the answer is not valid JSON",
		},
		{
			name:   "failing version endpoint is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": ok},
			detail: "reading the version: GET http://",
		},
		{
			name:   "health answer slower than health.timeout is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }},
			svc:    func(s *spec.Service) { s.Health.Timeout = spec.Duration(100 * time.Millisecond) },
			detail: "context deadline exceeded",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := stub(t, tc.routes)
			svc := service()
			if tc.svc != nil {
				tc.svc(svc)
			}
			res := probe.New(nil, nil).Probe(t.Context(), svc, in)
			if tc.detail == "" {
				require.Equal(t, tc.want, res)
				return
			}
			require.False(t, res.Healthy)
			require.Contains(t, res.Detail, tc.detail)
		})
	}
}

func TestProbeUsesTheHealthPortWhenSet(t *testing.T) {
	mgmt := stub(t, map[string]func(http.ResponseWriter, *http.Request){"/healthz": text(http.StatusOK, "ok"), "/version": text(http.StatusOK, "9.9.9")})
	svc := service()
	svc.Health.HTTP.Port = mgmt.Port
	res := probe.New(nil, nil).Probe(t.Context(), svc, spec.Instance{IP: mgmt.IP, Port: 1, ID: "x"})
	require.Equal(t, providers.ProbeResult{Healthy: true, Version: "9.9.9"}, res)
}

func TestProbeOfAnInstanceThatIsDownNamesTheURL(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	in := instanceOf(t, ln.Addr().String())
	require.NoError(t, ln.Close())
	res := probe.New(nil, nil).Probe(t.Context(), service(), in)
	require.False(t, res.Healthy)
	require.Contains(t, res.Detail, "GET http://"+in.Addr()+"/healthz: ")
	require.Contains(t, res.Detail, "connection refused")
}

func TestEvidenceOfTheDemoAppCountsInFlightRequestsAndWebSockets(t *testing.T) {
	in := startApp(t, "1.0.0")
	p := probe.New(nil, nil)
	svc := service()
	ev, err := p.Evidence(t.Context(), svc, in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{}, ev)

	// Three requests held by the app, two WebSockets open.
	reqCtx, cancelReqs := context.WithCancel(t.Context())
	var finished atomic.Int32
	for range 3 {
		go func() {
			defer finished.Add(1)
			req, _ := http.NewRequestWithContext(reqCtx, http.MethodPost, "http://"+in.Addr()+"/echo?delay=30s", nil)
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	closes := make(chan websocket.StatusCode, 2)
	for range 2 {
		c, _, err := websocket.Dial(t.Context(), "ws://"+in.Addr()+"/ws", nil)
		require.NoError(t, err)
		defer c.CloseNow()
		go func() { // reading answers the app's close frame
			_, _, err := c.Read(t.Context())
			closes <- websocket.CloseStatus(err)
		}()
	}
	require.Eventually(t, func() bool {
		ev, err := p.Evidence(t.Context(), svc, in)
		return err == nil && ev == providers.Evidence{InFlight: 3, Sessions: 2}
	}, 5*time.Second, 10*time.Millisecond)

	// The drain signal closes the WebSockets; cancelled requests end.
	require.NoError(t, p.SignalDrain(t.Context(), svc, in))
	require.Equal(t, websocket.StatusGoingAway, <-closes)
	require.Equal(t, websocket.StatusGoingAway, <-closes)
	cancelReqs()
	require.Eventually(t, func() bool {
		ev, err := p.Evidence(t.Context(), svc, in)
		return err == nil && ev == providers.Evidence{} && finished.Load() == 3
	}, 5*time.Second, 10*time.Millisecond)
}

func TestEvidenceReadsCommonInFlightGaugesAndSumsTheirSeries(t *testing.T) {
	in := stub(t, map[string]func(http.ResponseWriter, *http.Request){"/metrics": text(http.StatusOK, strings.Join([]string{
		"# TYPE http_server_active_requests gauge",
		`http_server_active_requests{http_route="/a"} 2`,
		`http_server_active_requests{http_route="/b"} 3`,
		"# TYPE process_open_fds gauge",
		"process_open_fds 12",
		"",
	}, "\n"))})
	ev, err := probe.New(nil, nil).Evidence(t.Context(), service(), in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{InFlight: 5}, ev)
}

func TestEvidenceFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		metrics   func(http.ResponseWriter, *http.Request)
		svc       func(*spec.Service)
		permanent bool
		errPart   string
	}{
		{"metrics without an in-flight gauge are a permanent error", text(http.StatusOK, "process_open_fds 12\n"), nil, true,
			"/metrics has none of tandem_demo_inflight_requests, http_server_active_requests"},
		{"drain.metrics unset is a permanent error", nil, func(s *spec.Service) { s.Drain.Metrics = "" }, true, "drain.metrics is not set"},
		{"unparsable metrics are transient", text(http.StatusOK, "tandem_demo_inflight_requests one\n"), nil, false, "parsing /metrics as Prometheus text"},
		{"failing metrics endpoint is transient", text(http.StatusInternalServerError, ""), nil, false, "/metrics: 500 Internal Server Error"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			routes := map[string]func(http.ResponseWriter, *http.Request){}
			if tc.metrics != nil {
				routes["/metrics"] = tc.metrics
			}
			in := stub(t, routes)
			svc := service()
			if tc.svc != nil {
				tc.svc(svc)
			}
			_, err := probe.New(nil, nil).Evidence(t.Context(), svc, in)
			require.ErrorContains(t, err, "evidence of "+in.String())
			require.ErrorContains(t, err, tc.errPart)
			require.Equal(t, tc.permanent, providers.IsPermanent(err))
		})
	}
}

func TestSignalDrain(t *testing.T) {
	var posts atomic.Int32
	in := stub(t, map[string]func(http.ResponseWriter, *http.Request){
		"POST /drain":  func(w http.ResponseWriter, _ *http.Request) { posts.Add(1); w.WriteHeader(http.StatusAccepted) },
		"POST /broken": text(http.StatusNotFound, ""),
	})
	var logs bytes.Buffer
	p := probe.New(nil, slog.New(slog.NewTextHandler(&logs, nil)))

	require.NoError(t, p.SignalDrain(t.Context(), service(), in))
	require.EqualValues(t, 1, posts.Load())
	require.Contains(t, logs.String(), `msg="drain signalled" action=signal-drain target=demo instance=`+in.String())

	svc := service()
	svc.Drain.Signal = nil
	require.NoError(t, p.SignalDrain(t.Context(), svc, in), "without drain.signal nothing is sent")
	require.EqualValues(t, 1, posts.Load())

	svc.Drain.Signal = &spec.DrainSignal{HTTP: "/broken"}
	require.EqualError(t, p.SignalDrain(t.Context(), svc, in),
		"signalling drain to "+in.String()+": POST http://"+in.Addr()+"/broken: 404 Not Found")
}

func TestProbesOfMetadataAndUnlistedAddressesAreRefused(t *testing.T) {
	res := probe.New(nil, nil).Probe(t.Context(), service(), spec.Instance{IP: "169.254.169.254", Port: 80})
	require.False(t, res.Healthy)
	require.Contains(t, res.Detail, "refused by policy: 169.254.169.254 is a link-local address (cloud metadata services live there): refused unless policy.network.probe lists it explicitly")

	_, err := probe.New(nil, nil).Evidence(t.Context(), service(), spec.Instance{IP: "100.100.100.200", Port: 80})
	require.ErrorContains(t, err, "100.100.100.200 is the Alibaba Cloud metadata service")

	in := startApp(t, "1.0.0")
	res = probe.New(spec.NewAllowlist("policy.network.probe", "10.0.0.0/8"), nil).Probe(t.Context(), service(), in)
	require.False(t, res.Healthy)
	require.Contains(t, res.Detail, "127.0.0.1 is not allowed by policy.network.probe")
	res = probe.New(spec.NewAllowlist("policy.network.probe", "127.0.0.0/8"), nil).Probe(t.Context(), service(), in)
	require.True(t, res.Healthy, res.Detail)
}
