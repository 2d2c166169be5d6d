package spec

import (
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Presets of health.preset and drain.evidence.preset: what popular stacks
// answer and export, each checked against a running app (see
// docs/app-presets.md).
const (
	PresetDemo       = "demo"        // Tandem's demo app (internal/demoapp)
	PresetSpringBoot = "spring-boot" // Spring Boot 3.x Actuator with Micrometer's Prometheus registry
	PresetTomcat     = "tomcat"      // Tomcat connector gauges through Spring Boot's Micrometer
)

// There is no OpenTelemetry preset: the Go SDK's HTTP instrumentation
// (otelhttp v0.72.0) records no http.server.active_requests (see the probe
// test TestEvidenceOfAnOtelhttpAppSaysItHasNoInFlightSeries), and Undertow
// was not tried; such apps name their own series in drain.evidence.inFlight.

// EvidencePreset is where an app stack exports its drain evidence.
type EvidencePreset struct {
	Metrics  string   // default drain.metrics path
	InFlight []string // series selectors of requests in flight
	Sessions []string // series selectors of open long-lived sessions
	// Scrape selects the series the metrics request itself is counted in
	// while it is answered ("" when it is not counted anywhere).
	Scrape string
}

// EvidencePresets are the presets of drain.evidence.preset.
var EvidencePresets = map[string]EvidencePreset{
	// internal/demoapp: its own gauges; GET /metrics is not counted.
	PresetDemo: {
		Metrics:  "/metrics",
		InFlight: []string{"tandem_demo_inflight_requests"},
		Sessions: []string{"tandem_demo_websockets_open"},
	},
	// Spring MVC's observation of every request starts a long-task timer
	// http.server.requests.active, exported by Micrometer 1.15 (Boot 3.5)
	// as the summary http_server_requests_active_seconds: its _count is the
	// number of requests in flight. Its labels are fixed when the request
	// starts (uri="UNKNOWN"), so the scrape itself is one GET in it (not
	// when it goes to a separate management port, health.http.port, whose
	// requests Spring does not observe: then nothing is taken off). Spring
	// exports no gauge of raw WebSocket sessions (tomcat_sessions_* are HTTP
	// sessions): WebSockets are left to the load balancer's session count
	// and drain.signal.
	// https://docs.spring.io/spring-boot/reference/actuator/metrics.html#actuator.metrics.supported.spring-mvc
	PresetSpringBoot: {
		Metrics:  "/actuator/prometheus",
		InFlight: []string{"http_server_requests_active_seconds_count"},
		Scrape:   `http_server_requests_active_seconds_count{method="GET"}`,
	},
	// Tomcat's busy request threads; Spring Boot exports the tomcat_threads_*
	// gauges only with server.tomcat.mbeanregistry.enabled=true. An idle
	// WebSocket holds no thread, and tomcat_connections_current_connections
	// also counts idle keep-alive connections, so neither counts sessions.
	// https://docs.spring.io/spring-boot/reference/actuator/metrics.html#actuator.metrics.supported.tomcat
	PresetTomcat: {
		Metrics:  "/actuator/prometheus",
		InFlight: []string{"tomcat_threads_busy_threads"},
		Scrape:   "tomcat_threads_busy_threads",
	},
}

// HealthPresetSpringBoot is what health.preset spring-boot fills in: the
// Actuator health endpoint must answer {"status":"UP"} (it answers 503 with
// "DOWN" or "OUT_OF_SERVICE"), and unless health.version says otherwise the
// version is build.version of /actuator/info (spring-boot-maven-plugin's
// build-info goal).
// https://docs.spring.io/spring-boot/reference/actuator/endpoints.html#actuator.endpoints.health
// https://docs.spring.io/spring-boot/reference/actuator/endpoints.html#actuator.endpoints.info.build-information
var HealthPresetSpringBoot = struct {
	Path, JSONStatus, VersionHTTP, VersionJSON string
}{"/actuator/health", "UP", "/actuator/info", "build.version"}

// presetNames lists the names of a preset table for messages.
func presetNames[T any](m map[string]T) string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

// defaultPresets fills in what health.preset and drain.evidence.preset
// imply, leaving every field the spec sets alone.
func (s *Service) defaultPresets() {
	if s.Health.Preset == PresetSpringBoot {
		p := HealthPresetSpringBoot
		if s.Health.HTTP == nil {
			s.Health.HTTP = &HTTPProbe{}
		}
		setDefault(&s.Health.HTTP.Path, p.Path)
		setDefault(&s.Health.HTTP.JSONStatus, p.JSONStatus)
		if v := &s.Health.Version; v.NacosMetadata == "" && v.HTTP == "" {
			v.HTTP = p.VersionHTTP
			setDefault(&v.JSON, p.VersionJSON)
		}
	}
	if e := s.Drain.Evidence; e != nil {
		if p, ok := EvidencePresets[e.Preset]; ok {
			setDefault(&s.Drain.Metrics, p.Metrics)
			setDefault(&e.Scrape, p.Scrape)
		}
	}
}

// Series returns the selectors of drain evidence: the preset's followed by
// the spec's own, and the scrape selector ("" for none).
func (e *DrainEvidence) Series() (inFlight, sessions []string, scrape string) {
	if e == nil {
		return nil, nil, ""
	}
	p := EvidencePresets[e.Preset]
	return slices.Concat(p.InFlight, e.InFlight), slices.Concat(p.Sessions, e.Sessions), e.Scrape
}

// validatePresets checks the preset and evidence fields.
func (s *Service) validatePresets(bad func(path, format string, args ...any)) {
	if p := s.Health.Preset; p != "" && p != PresetSpringBoot {
		bad("health.preset", "must be %s, got %q", PresetSpringBoot, p)
	}
	if h := s.Health.HTTP; h != nil && h.JSONStatus != "" && strings.TrimSpace(h.JSONStatus) != h.JSONStatus {
		bad("health.http.jsonStatus", "must not start or end with spaces, got %q", h.JSONStatus)
	}
	if v := s.Health.Version; v.JSON != "" {
		switch {
		case v.HTTP == "":
			bad("health.version.json", "needs health.version.http: it names a field of that answer")
		case slices.Contains(strings.Split(v.JSON, "."), ""):
			bad("health.version.json", "must be field names joined by dots, such as build.version, got %q", v.JSON)
		}
	}
	e := s.Drain.Evidence
	if e == nil {
		if s.Drain.Metrics != "" {
			bad("drain.metrics", "needs drain.evidence: which series count as work in flight (preset %s, or inFlight)",
				presetNames(EvidencePresets))
		}
		return
	}
	if _, ok := EvidencePresets[e.Preset]; e.Preset != "" && !ok {
		bad("drain.evidence.preset", "must be one of %s, got %q", presetNames(EvidencePresets), e.Preset)
	}
	if e.Preset == "" && len(e.InFlight) == 0 {
		bad("drain.evidence", "must set preset or inFlight: Tandem must know which series count requests in flight")
	}
	if e.Preset == "" && s.Drain.Metrics == "" {
		bad("drain.metrics", "is required with drain.evidence without a preset: the path of the app's Prometheus text")
	}
	check := func(path string, sels []string) {
		for i, sel := range sels {
			if _, err := ParseSelector(sel); err != nil {
				bad(fmt.Sprintf("%s[%d]", path, i), "%v", err)
			}
		}
	}
	check("drain.evidence.inFlight", e.InFlight)
	check("drain.evidence.sessions", e.Sessions)
	if e.Scrape != "" {
		if _, err := ParseSelector(e.Scrape); err != nil {
			bad("drain.evidence.scrape", "%v", err)
		}
	}
}

// Selector picks Prometheus series: a metric name as it appears in the
// exposition text (a summary's or histogram's count is name_count) and
// label matchers, written as in PromQL: name{label="value",other!="value"}.
type Selector struct {
	Name     string
	Matchers []Matcher
}

// Matcher is one label matcher of a Selector.
type Matcher struct {
	Label, Value string
	Not          bool // != rather than =
}

// Matches reports whether a series with these labels is selected (the
// name is compared by the caller).
func (s Selector) Matches(labels map[string]string) bool {
	for _, m := range s.Matchers {
		if (labels[m.Label] == m.Value) == m.Not {
			return false
		}
	}
	return true
}

func (s Selector) String() string {
	if len(s.Matchers) == 0 {
		return s.Name
	}
	parts := make([]string, len(s.Matchers))
	for i, m := range s.Matchers {
		op := "="
		if m.Not {
			op = "!="
		}
		parts[i] = fmt.Sprintf("%s%s%q", m.Label, op, m.Value)
	}
	return s.Name + "{" + strings.Join(parts, ",") + "}"
}

// ParseSelector parses name or name{label="v",label!="v"}.
func ParseSelector(text string) (Selector, error) {
	name, rest, hasLabels := strings.Cut(strings.TrimSpace(text), "{")
	name = strings.TrimSpace(name)
	if !metricNameOK(name) {
		return Selector{}, fmt.Errorf("a series is a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*) with optional {label=\"value\"} matchers, got %q", text)
	}
	sel := Selector{Name: name}
	if !hasLabels {
		return sel, nil
	}
	body, ok := strings.CutSuffix(strings.TrimSpace(rest), "}")
	if !ok {
		return Selector{}, fmt.Errorf("%q: the label matchers must end with }", text)
	}
	for body = strings.TrimSpace(body); body != ""; {
		i := strings.IndexAny(body, "=!")
		if i <= 0 {
			return Selector{}, fmt.Errorf("%q: expected label=\"value\" or label!=\"value\"", text)
		}
		m := Matcher{Label: strings.TrimSpace(body[:i])}
		body = body[i:]
		if strings.HasPrefix(body, "!=") {
			m.Not, body = true, body[2:]
		} else if strings.HasPrefix(body, "=") && !strings.HasPrefix(body, "=~") {
			body = body[1:]
		} else {
			return Selector{}, fmt.Errorf("%q: only = and != matchers are supported", text)
		}
		if !labelNameOK(m.Label) {
			return Selector{}, fmt.Errorf("%q: %q is not a label name", text, m.Label)
		}
		body = strings.TrimSpace(body)
		if !strings.HasPrefix(body, `"`) {
			return Selector{}, fmt.Errorf("%q: the value of %s must be in double quotes", text, m.Label)
		}
		end := strings.Index(body[1:], `"`)
		if end < 0 {
			return Selector{}, fmt.Errorf("%q: the value of %s has no closing quote", text, m.Label)
		}
		m.Value, body = body[1:end+1], strings.TrimSpace(body[end+2:])
		sel.Matchers = append(sel.Matchers, m)
		if body, ok = strings.CutPrefix(body, ","); !ok && body != "" {
			return Selector{}, fmt.Errorf("%q: expected , between matchers", text)
		}
		body = strings.TrimSpace(body)
	}
	return sel, nil
}

func metricNameOK(s string) bool {
	for i, r := range s {
		if !(r == '_' || r == ':' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

func labelNameOK(s string) bool { return s != "" && !strings.Contains(s, ":") && metricNameOK(s) }
