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
	prom "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
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
		Drain: spec.Drain{Evidence: &spec.DrainEvidence{Preset: spec.PresetDemo},
			Signal: &spec.DrainSignal{HTTP: "/drain"}},
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
			detail: "reading the version: the answer has no text at version",
		},
		{
			name:   "broken JSON version is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/healthz": ok, "/version": text(http.StatusOK, `{"version":`)},
			detail: "reading the version: the answer is not valid JSON",
		},
		{
			name: "Spring Boot: {\"status\":\"UP\"} is healthy, the version is build.version of /actuator/info",
			routes: map[string]func(http.ResponseWriter, *http.Request){
				"/actuator/health": text(http.StatusOK, `{"status":"UP","groups":["liveness"]}`),
				"/actuator/info":   text(http.StatusOK, `{"build":{"artifact":"orders","version":"3.1.4"},"git":{"branch":"main"}}`),
			},
			svc:  springBoot,
			want: providers.ProbeResult{Healthy: true, Version: "3.1.4"},
		},
		{
			name:   "Spring Boot: a 200 whose status is not UP is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/actuator/health": text(http.StatusOK, `{"status":"OUT_OF_SERVICE"}`)},
			svc:    springBoot,
			detail: `/actuator/health: status is "OUT_OF_SERVICE", not "UP"`,
		},
		{
			name:   "Spring Boot: a 503 DOWN is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/actuator/health": text(http.StatusServiceUnavailable, `{"status":"DOWN"}`)},
			svc:    springBoot,
			detail: "/actuator/health: 503 Service Unavailable",
		},
		{
			name:   "Spring Boot: a health answer that is not JSON is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){"/actuator/health": text(http.StatusOK, "UP")},
			svc:    springBoot,
			detail: "the answer is not a JSON object with a status",
		},
		{
			name: "Spring Boot: info without build.version is unhealthy",
			routes: map[string]func(http.ResponseWriter, *http.Request){
				"/actuator/health": text(http.StatusOK, `{"status":"UP"}`), "/actuator/info": text(http.StatusOK, `{}`),
			},
			svc:    springBoot,
			detail: "reading the version: the answer has no text at build.version",
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

// springBoot turns a service to health.preset spring-boot, as the spec's
// defaults do.
func springBoot(s *spec.Service) {
	s.Health = spec.Health{Preset: spec.PresetSpringBoot, Timeout: s.Health.Timeout}
	s.Default()
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

// The spring-boot preset reads what Micrometer 1.15 (Spring Boot 3.5)
// exports, as captured from e2e/java's provider with one POST in flight
// during the scrape: the scrape's own GET is taken off. (e2e's Java test
// reads the running app.)
func TestEvidenceOfSpringBootSubtractsItsOwnScrape(t *testing.T) {
	in := stub(t, map[string]func(http.ResponseWriter, *http.Request){"/actuator/prometheus": text(http.StatusOK, strings.Join([]string{
		"# HELP http_server_requests_active_seconds  ",
		"# TYPE http_server_requests_active_seconds summary",
		`http_server_requests_active_seconds_count{exception="none",method="GET",outcome="SUCCESS",status="200",uri="UNKNOWN"} 1`,
		`http_server_requests_active_seconds_sum{exception="none",method="GET",outcome="SUCCESS",status="200",uri="UNKNOWN"} 0.039230263`,
		`http_server_requests_active_seconds_count{exception="none",method="POST",outcome="SUCCESS",status="200",uri="UNKNOWN"} 2`,
		`http_server_requests_active_seconds_sum{exception="none",method="POST",outcome="SUCCESS",status="200",uri="UNKNOWN"} 1.029273972`,
		"# TYPE http_server_requests_active_seconds_max gauge",
		`http_server_requests_active_seconds_max{exception="none",method="GET",outcome="SUCCESS",status="200",uri="UNKNOWN"} 0.039496608`,
		"",
	}, "\n"))})
	svc := service()
	svc.Drain = spec.Drain{Evidence: &spec.DrainEvidence{Preset: spec.PresetSpringBoot}}
	svc.Default()
	ev, err := probe.New(nil, nil).Evidence(t.Context(), svc, in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{InFlight: 2}, ev)

	// On a separate management port Spring does not count the scrape: a
	// GET in flight there is a real request.
	svc.Health = spec.Health{HTTP: &spec.HTTPProbe{Path: "/actuator/health", Port: in.Port}}
	in.Port++ // the app's own port differs from the management port
	ev, err = probe.New(nil, nil).Evidence(t.Context(), svc, in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{InFlight: 3}, ev)
}

// OpenTelemetry's Go HTTP instrumentation (otelhttp v0.72.0, exported by the
// official Prometheus exporter) records request duration and body sizes but
// no http.server.active_requests, so there is no opentelemetry preset. A
// spec that looks for http_server_active_requests there gets a permanent
// error naming what was looked for, not a wait for drain.timeout.
func TestEvidenceOfAnOtelhttpAppSaysItHasNoInFlightSeries(t *testing.T) {
	reg := prom.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	require.NoError(t, err)
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	t.Cleanup(func() { require.NoError(t, meters.Shutdown(context.Background())) })
	echo := otelhttp.NewHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(w, r.Body)
	}), "echo", otelhttp.WithMeterProvider(meters))
	mux := http.NewServeMux()
	mux.Handle("/echo", echo)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	in := instanceOf(t, srv.Listener.Addr().String())
	svc := service()
	svc.Drain = spec.Drain{Metrics: "/metrics", Evidence: &spec.DrainEvidence{InFlight: []string{"http_server_active_requests"}}}
	p := probe.New(nil, nil)

	resp, err := http.Post(srv.URL+"/echo", "text/plain", strings.NewReader("x"))
	require.NoError(t, err)
	require.NoError(t, resp.Body.Close())
	_, err = p.Evidence(t.Context(), svc, in)
	require.True(t, providers.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "/metrics answers but has none of the in-flight series http_server_active_requests; "+
		"none of its")
	families := metricNames(t, srv.URL+"/metrics")
	require.Contains(t, families, "http_server_request_duration_seconds", "otelhttp's own series are there")
	for _, name := range families {
		require.NotContains(t, name, "active")
	}
}

// metricNames lists the metric families a Prometheus endpoint exports.
func metricNames(t *testing.T, url string) []string {
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var names []string
	for line := range strings.Lines(string(body)) {
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			names = append(names, strings.Fields(rest)[0])
		}
	}
	return names
}

func TestEvidenceFailures(t *testing.T) {
	for _, tc := range []struct {
		name      string
		metrics   func(http.ResponseWriter, *http.Request)
		svc       func(*spec.Service)
		permanent bool
		errPart   string
	}{
		{"metrics without an in-flight series are a permanent error naming the candidates", text(http.StatusOK, strings.Join([]string{
			"process_open_fds 12",
			"# TYPE http_server_requests_active_seconds summary",
			`http_server_requests_active_seconds_count{method="GET"} 1`,
			"tomcat_threads_busy_threads 1",
			"",
		}, "\n")), nil, true,
			"/metrics answers but has none of the in-flight series tandem_demo_inflight_requests; " +
				"candidates it exports: http_server_requests_active_seconds_count, tomcat_threads_busy_threads"},
		{"metrics without any candidate say so", text(http.StatusOK, "process_open_fds 12\n"), nil, true,
			"none of its 1 metrics looks like one"},
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
