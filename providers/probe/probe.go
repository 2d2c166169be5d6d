// Package probe asks a service's own instances over HTTP: health and running
// version (Probe), drain evidence from their Prometheus metrics (Evidence),
// and the drain signal that makes them close WebSockets (SignalDrain).
//
// Every request goes to the instance's management address: health.http.scheme
// and the instance IP, on health.http.port when set (e.g. a separate
// actuator port), else on the instance port. Each request is bounded by
// health.timeout. Connections are not kept alive, so Tandem holds none open
// to the instances it drains. Only addresses that policy.network.probe of
// tandem.yaml allows are reached; link-local and cloud metadata addresses
// never, unless it lists them (spec.Allowlist).
package probe

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandemhq/tandem/internal/egress"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// In-flight and session gauges read as drain evidence, in order of
// preference; the first name present in an instance's metrics is used and
// all of its series are summed.
var (
	// InFlightMetrics: the demo app's own gauge; the OpenTelemetry HTTP
	// server semantic convention (http.server.active_requests); Spring Boot
	// (Micrometer's long-task timer http.server.requests.active). The last
	// two names follow those projects' Prometheus naming rules and were not
	// checked against running apps.
	InFlightMetrics = []string{
		"tandem_demo_inflight_requests",
		"http_server_active_requests",
		"http_server_requests_active_seconds_active_count",
	}
	// SessionMetrics: open WebSockets. An instance without one has none.
	SessionMetrics = []string{
		"tandem_demo_websockets_open",
	}
)

// maxBody bounds what is read of an instance's answer.
const maxBody = 4 << 20

// Prober implements providers.Instances over HTTP.
type Prober struct {
	client *http.Client
	log    *slog.Logger
}

var _ providers.Instances = (*Prober)(nil)

// New returns a Prober that connects only where hosts allows
// (policy.network.probe of tandem.yaml; nil: every address but the refused
// ranges, see spec.Allowlist).
func New(hosts *spec.Allowlist, log *slog.Logger) *Prober {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if hosts == nil {
		hosts = spec.NewAllowlist("policy.network.probe")
	}
	transport := (&egress.Dialer{Allow: hosts}).Transport()
	transport.DisableKeepAlives = true
	return &Prober{
		client: &http.Client{
			Transport: transport,
			// A redirect is an answer of its own: never follow it elsewhere.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		log: log,
	}
}

// Probe GETs health.http.path (2xx is healthy) and, when health.version.http
// is set, the version path: its body is the version, or the "version" field
// when the body is a JSON object. An instance whose version cannot be read
// is reported unhealthy, with the reason in Detail.
func (p *Prober) Probe(ctx context.Context, svc *spec.Service, in spec.Instance) providers.ProbeResult {
	if svc.Health.HTTP == nil {
		return providers.ProbeResult{Detail: "health.http is not set"}
	}
	if _, err := p.get(ctx, svc, in, svc.Health.HTTP.Path); err != nil {
		return providers.ProbeResult{Detail: err.Error()}
	}
	res := providers.ProbeResult{Healthy: true}
	if path := svc.Health.Version.HTTP; path != "" {
		body, err := p.get(ctx, svc, in, path)
		if err == nil {
			res.Version, err = parseVersion(body)
		}
		if err != nil {
			return providers.ProbeResult{Detail: fmt.Sprintf("reading the version: %v", err)}
		}
	}
	return res
}

// Evidence GETs drain.metrics and reads the in-flight and session gauges
// (see InFlightMetrics, SessionMetrics). Metrics without any in-flight gauge
// are a permanent error: the app does not export what drain.metrics promises.
func (p *Prober) Evidence(ctx context.Context, svc *spec.Service, in spec.Instance) (providers.Evidence, error) {
	if svc.Drain.Metrics == "" {
		return providers.Evidence{}, providers.Permanentf("NoDrainMetrics", "evidence of %s: drain.metrics is not set", in)
	}
	body, err := p.get(ctx, svc, in, svc.Drain.Metrics)
	if err != nil {
		return providers.Evidence{}, fmt.Errorf("evidence of %s: %w", in, err)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	if err != nil {
		return providers.Evidence{}, fmt.Errorf("evidence of %s: parsing %s as Prometheus text: %w", in, svc.Drain.Metrics, err)
	}
	inFlight, ok := sum(families, InFlightMetrics)
	if !ok {
		return providers.Evidence{}, providers.Permanentf("NoDrainMetrics", "evidence of %s: %s has none of %s",
			in, svc.Drain.Metrics, strings.Join(InFlightMetrics, ", "))
	}
	sessions, _ := sum(families, SessionMetrics)
	return providers.Evidence{InFlight: inFlight, Sessions: sessions}, nil
}

// SignalDrain POSTs drain.signal.http; any 2xx is success. Without
// drain.signal it does nothing.
func (p *Prober) SignalDrain(ctx context.Context, svc *spec.Service, in spec.Instance) error {
	if svc.Drain.Signal == nil {
		return nil
	}
	if _, err := p.do(ctx, http.MethodPost, svc, in, svc.Drain.Signal.HTTP); err != nil {
		return fmt.Errorf("signalling drain to %s: %w", in, err)
	}
	p.log.Info("drain signalled", "action", "signal-drain", "target", svc.Name, "instance", in.String())
	return nil
}

func (p *Prober) get(ctx context.Context, svc *spec.Service, in spec.Instance, path string) ([]byte, error) {
	return p.do(ctx, http.MethodGet, svc, in, path)
}

// do sends one request to the instance's management address and returns
// the body of a 2xx answer.
func (p *Prober) do(ctx context.Context, method string, svc *spec.Service, in spec.Instance, path string) ([]byte, error) {
	if t := svc.Health.Timeout.D(); t > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, t)
		defer cancel()
	}
	target := baseURL(svc, in) + path
	req, err := http.NewRequestWithContext(ctx, method, target, nil)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	resp, err := p.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is named here already
		}
		return nil, fmt.Errorf("%s %s: %w", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, target, err)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, fmt.Errorf("%s %s: %s", method, target, resp.Status)
	}
	return body, nil
}

func baseURL(svc *spec.Service, in spec.Instance) string {
	scheme, port := "http", in.Port
	if h := svc.Health.HTTP; h != nil {
		if h.Scheme != "" {
			scheme = h.Scheme
		}
		if h.Port != 0 {
			port = h.Port
		}
	}
	return scheme + "://" + net.JoinHostPort(in.IP, strconv.Itoa(port))
}

// parseVersion reads a version body: a JSON object's "version", or the
// trimmed text.
func parseVersion(body []byte) (string, error) {
	text := strings.TrimSpace(string(body))
	if strings.HasPrefix(text, "{") {
		var v struct {
			Version string `json:"version"`
		}
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return "", fmt.Errorf("the answer is not valid JSON: %w", err)
		}
		text = v.Version
	}
	if text == "" {
		return "", errors.New("the answer names no version")
	}
	return text, nil
}

// sum adds up every series of the first metric in names that is present
// (gauge or untyped).
func sum(families map[string]*dto.MetricFamily, names []string) (int, bool) {
	for _, name := range names {
		mf, ok := families[name]
		if !ok {
			continue
		}
		total := 0.0
		for _, m := range mf.GetMetric() {
			switch {
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Untyped != nil:
				total += m.GetUntyped().GetValue()
			}
		}
		return int(total), true
	}
	return 0, false
}
