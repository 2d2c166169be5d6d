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
	"slices"
	"strconv"
	"strings"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tandemhq/tandem/internal/egress"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
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
	return &Prober{client: egress.InstanceClient(hosts), log: log}
}

// Probe GETs health.http.path (2xx is healthy; with health.http.jsonStatus
// the answer must also be a JSON object whose "status" is that value) and,
// when health.version.http is set, the version path: its body is the
// version, or the field health.version.json (default "version") when the
// body is a JSON object. An instance whose version cannot be read is
// reported unhealthy, with the reason in Detail.
func (p *Prober) Probe(ctx context.Context, svc *spec.Service, in spec.Instance) providers.ProbeResult {
	h := svc.Health.HTTP
	if h == nil {
		return providers.ProbeResult{Detail: "health.http is not set"}
	}
	body, err := p.get(ctx, svc, in, h.Path)
	if err != nil {
		return providers.ProbeResult{Detail: err.Error()}
	}
	if h.JSONStatus != "" {
		if err := checkStatus(body, h.JSONStatus); err != nil {
			return providers.ProbeResult{Detail: fmt.Sprintf("GET %s%s: %v", baseURL(svc, in), h.Path, err)}
		}
	}
	res := providers.ProbeResult{Healthy: true}
	if path := svc.Health.Version.HTTP; path != "" {
		body, err := p.get(ctx, svc, in, path)
		if err == nil {
			res.Version, err = parseVersion(body, svc.Health.Version.JSON)
		}
		if err != nil {
			return providers.ProbeResult{Detail: fmt.Sprintf("reading the version: %v", err)}
		}
	}
	return res
}

// Evidence GETs drain.metrics and adds up the series drain.evidence selects
// (spec.DrainEvidence.Series), less Tandem's own request where the scrape
// selector counts it. Metrics in which no in-flight series is present are
// a permanent error that names what was looked for and the series the app
// does export that look like candidates.
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
	inFlightSel, sessionSel, scrapeSel := svc.Drain.Evidence.Series()
	inFlight, ok := sum(families, inFlightSel)
	if !ok {
		return providers.Evidence{}, providers.Permanentf("NoDrainMetrics",
			"evidence of %s: %s answers but has none of the in-flight series %s; %s",
			in, svc.Drain.Metrics, strings.Join(inFlightSel, ", "), candidates(families))
	}
	// Tandem's own request is counted only where it reaches the app's own
	// server: Spring Boot does not observe requests to a separate
	// management port (health.http.port), so there nothing is taken off.
	if scrapeSel != "" && managementPort(svc, in) == in.Port {
		if self, _ := sum(families, []string{scrapeSel}); self >= 1 {
			inFlight--
		}
	}
	sessions, _ := sum(families, sessionSel)
	return providers.Evidence{InFlight: max(inFlight, 0), Sessions: sessions}, nil
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
	scheme := "http"
	if h := svc.Health.HTTP; h != nil && h.Scheme != "" {
		scheme = h.Scheme
	}
	return scheme + "://" + net.JoinHostPort(in.IP, strconv.Itoa(managementPort(svc, in)))
}

// managementPort is where Tandem's requests to an instance go:
// health.http.port, else the instance port.
func managementPort(svc *spec.Service, in spec.Instance) int {
	if h := svc.Health.HTTP; h != nil && h.Port != 0 {
		return h.Port
	}
	return in.Port
}

// parseVersion reads a version body: the field at the dotted path field
// (default "version") of a JSON object, or the trimmed text.
func parseVersion(body []byte, field string) (string, error) {
	text := strings.TrimSpace(string(body))
	if field == "" {
		field = "version"
	}
	if strings.HasPrefix(text, "{") {
		var v any
		if err := json.Unmarshal([]byte(text), &v); err != nil {
			return "", fmt.Errorf("the answer is not valid JSON: %w", err)
		}
		for _, key := range strings.Split(field, ".") {
			obj, _ := v.(map[string]any)
			v = obj[key]
		}
		s, ok := v.(string)
		if !ok {
			return "", fmt.Errorf("the answer has no text at %s", field)
		}
		text = s
	}
	if text == "" {
		return "", errors.New("the answer names no version")
	}
	return text, nil
}

// checkStatus requires body to be a JSON object whose "status" is want.
func checkStatus(body []byte, want string) error {
	var v struct {
		Status *string `json:"status"`
	}
	if err := json.Unmarshal(body, &v); err != nil {
		return fmt.Errorf("the answer is not a JSON object with a status: %w", err)
	}
	if v.Status == nil {
		return fmt.Errorf("the answer has no status (health.http.jsonStatus wants %q)", want)
	}
	if *v.Status != want {
		return fmt.Errorf("status is %q, not %q", *v.Status, want)
	}
	return nil
}

// sum adds up every series that one of the selectors picks, each once, and
// reports whether any selected metric is present. A selector names a series
// as it appears in the exposition text: a gauge, counter or untyped metric
// by its name, a summary's or histogram's count by name_count (Micrometer
// exports a long-task timer as a summary).
func sum(families map[string]*dto.MetricFamily, selectors []string) (int, bool) {
	type seriesKey struct {
		mf *dto.MetricFamily
		i  int
	}
	seen := map[seriesKey]bool{}
	total, present := 0.0, false
	for _, text := range selectors {
		sel, err := spec.ParseSelector(text)
		if err != nil {
			continue // validated with the spec
		}
		mf, count := families[sel.Name], false
		if mf == nil {
			if base, ok := strings.CutSuffix(sel.Name, "_count"); ok {
				mf, count = families[base], true
			}
		}
		if mf == nil {
			continue
		}
		present = true
		for i, m := range mf.GetMetric() {
			if seen[seriesKey{mf, i}] || !sel.Matches(labels(m)) {
				continue
			}
			seen[seriesKey{mf, i}] = true
			switch {
			case count && m.Summary != nil:
				total += float64(m.GetSummary().GetSampleCount())
			case count && m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			case count:
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Untyped != nil:
				total += m.GetUntyped().GetValue()
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			}
		}
	}
	return int(total), present
}

func labels(m *dto.Metric) map[string]string {
	out := make(map[string]string, len(m.GetLabel()))
	for _, l := range m.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

// candidateWords mark the exported metrics that may count work in flight.
var candidateWords = []string{"active", "inflight", "in_flight", "session", "connection", "busy", "concurrent"}

// candidates says which exported metrics look like evidence, for the
// message of an instance that exports none of the configured series.
func candidates(families map[string]*dto.MetricFamily) string {
	var names []string
	for name, mf := range families {
		lower := strings.ToLower(name)
		for _, w := range candidateWords {
			if strings.Contains(lower, w) {
				if mf.GetType() == dto.MetricType_SUMMARY || mf.GetType() == dto.MetricType_HISTOGRAM {
					name += "_count"
				}
				names = append(names, name)
				break
			}
		}
	}
	if len(names) == 0 {
		return fmt.Sprintf("none of its %d metrics looks like one (names with %s)", len(families), strings.Join(candidateWords, ", "))
	}
	slices.Sort(names)
	return "candidates it exports: " + strings.Join(names, ", ")
}
