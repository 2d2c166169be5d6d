package spec

import (
	"fmt"
	"math"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"text/template"
	"time"
)

// AnalysisGate judges a release by its metrics: PromQL queries against a
// Prometheus server, evaluated every Interval for BeforeShift before any
// traffic moves (a failure aborts: the source never stopped serving) and
// during the watch after the shift, for verify.window (a failure swaps
// back). In the spirit of Argo Rollouts' AnalysisTemplate
// (https://argo-rollouts.readthedocs.io/en/stable/features/analysis/):
// per query, a measurement is successful, failed or inconclusive, and the
// analysis fails once a query's failures exceed FailureLimit or its
// inconclusive measurements exceed InconclusiveLimit.
type AnalysisGate struct {
	// Prometheus names the server in tandem.yaml's providers.prometheus;
	// "" is the only one configured there.
	Prometheus string `yaml:"prometheus" json:"prometheus,omitempty"`
	// Interval is the time between two measurements.
	Interval Duration `yaml:"interval" json:"interval"`
	// BeforeShift is how long to analyse the target group before the first
	// traffic moves to it; 0: no analysis before the shift.
	BeforeShift Duration `yaml:"beforeShift" json:"beforeShift,omitempty"`
	// FailureLimit is how many failed measurements a query may have in one
	// analysis; one more fails it (0: the first failure fails it).
	FailureLimit int `yaml:"failureLimit" json:"failureLimit"`
	// InconclusiveLimit is the same for inconclusive measurements (no data,
	// an error, NaN, several series, or neither condition met).
	InconclusiveLimit int             `yaml:"inconclusiveLimit" json:"inconclusiveLimit"`
	Queries           []AnalysisQuery `yaml:"queries" json:"queries"`
}

// AnalysisQuery is one PromQL query and the conditions that judge its
// value. The query is a Go text/template over AnalysisVars; it must give
// one number (a scalar, or a vector of exactly one series).
type AnalysisQuery struct {
	Name  string `yaml:"name" json:"name"`
	Query string `yaml:"query" json:"query"`
	// SuccessCondition and FailureCondition compare the value: "result OP
	// NUMBER" with OP one of < <= > >= == !=. With only a success
	// condition, a value that does not meet it is a failure; with only a
	// failure condition, a value that does not meet it is a success; with
	// both, a value that meets neither is inconclusive.
	SuccessCondition string `yaml:"successCondition" json:"successCondition,omitempty"`
	FailureCondition string `yaml:"failureCondition" json:"failureCondition,omitempty"`
}

// Defaults of the analysis gate.
const (
	DefaultAnalysisInterval = 30 * time.Second
	minAnalysisInterval     = 100 * time.Millisecond
)

// AnalysisVars are what a query template may use.
type AnalysisVars struct {
	Service string // the service's name
	Group   string // the group analysed: A or B
	Version string // the version it runs
	// Instances are the group's instances as a regular expression for a
	// label matcher inside double quotes, ip:port alternatives with the
	// dots escaped: instance=~"{{.Instances}}" selects exactly them.
	Instances string
}

// InstancesRegex renders instances for AnalysisVars.Instances: each
// ip:port regexp-quoted, joined by |, with every backslash doubled because
// the text lands inside a PromQL double-quoted string, whose escapes are
// Go's (https://prometheus.io/docs/prometheus/latest/querying/basics/#string-literals).
func InstancesRegex(insts []Instance) string {
	parts := make([]string, len(insts))
	for i, in := range insts {
		parts[i] = strings.ReplaceAll(regexp.QuoteMeta(in.Addr()), `\`, `\\`)
	}
	return strings.Join(parts, "|")
}

// Render fills in the query's template.
func (q AnalysisQuery) Render(v AnalysisVars) (string, error) {
	tmpl, err := template.New(q.Name).Option("missingkey=error").Parse(q.Query)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	if err := tmpl.Execute(&b, v); err != nil {
		return "", err
	}
	return b.String(), nil
}

// Condition is a parsed success or failure condition: result Op Value.
type Condition struct {
	Op    string
	Value float64
}

var conditionOps = []string{"<=", ">=", "==", "!=", "<", ">"} // two-character operators first

// ParseCondition parses "result OP NUMBER". It is deliberately no general
// evaluator: one comparison of the query's value with a finite number.
func ParseCondition(s string) (Condition, error) {
	rest, ok := strings.CutPrefix(strings.TrimSpace(s), "result")
	if !ok {
		return Condition{}, fmt.Errorf("must be \"result OP NUMBER\" with OP one of < <= > >= == !=, e.g. \"result < 0.05\", got %q", s)
	}
	rest = strings.TrimSpace(rest)
	for _, op := range conditionOps {
		num, ok := strings.CutPrefix(rest, op)
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(num), 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			return Condition{}, fmt.Errorf("must compare result with a finite number, e.g. \"result %s 0.05\", got %q", op, s)
		}
		return Condition{Op: op, Value: v}, nil
	}
	return Condition{}, fmt.Errorf("must be \"result OP NUMBER\" with OP one of < <= > >= == !=, e.g. \"result < 0.05\", got %q", s)
}

// Met reports whether v meets the condition.
func (c Condition) Met(v float64) bool {
	switch c.Op {
	case "<":
		return v < c.Value
	case "<=":
		return v <= c.Value
	case ">":
		return v > c.Value
	case ">=":
		return v >= c.Value
	case "==":
		return v == c.Value
	case "!=":
		return v != c.Value
	}
	return false
}

func (c Condition) String() string {
	return "result " + c.Op + " " + strconv.FormatFloat(c.Value, 'g', -1, 64)
}

func (g *AnalysisGate) defaults() {
	if g == nil {
		return
	}
	setDefault(&g.Interval, Duration(DefaultAnalysisInterval))
}

var queryNameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9_.-]{0,62})$`)

func (g *AnalysisGate) validate(bad func(path, format string, args ...any)) {
	if g == nil {
		return
	}
	const base = "gates.analysis"
	if g.Interval.D() < minAnalysisInterval {
		bad(base+".interval", "must be at least %s, got %s", minAnalysisInterval, g.Interval)
	}
	if g.BeforeShift != 0 && g.BeforeShift.D() < g.Interval.D() {
		bad(base+".beforeShift", "must be 0 (no analysis before the shift) or at least interval %s, got %s", g.Interval, g.BeforeShift)
	}
	if g.FailureLimit < 0 {
		bad(base+".failureLimit", "must be 0 or more, got %d", g.FailureLimit)
	}
	if g.InconclusiveLimit < 0 {
		bad(base+".inconclusiveLimit", "must be 0 or more, got %d", g.InconclusiveLimit)
	}
	if len(g.Queries) == 0 {
		bad(base+".queries", "needs at least one query")
	}
	seen := map[string]int{}
	sample := AnalysisVars{Service: "svc", Group: "A", Version: "1.0.0", Instances: `127\\.0\\.0\\.1:8080`}
	for i, q := range g.Queries {
		p := fmt.Sprintf("%s.queries[%d]", base, i)
		switch prev, dup := seen[q.Name]; {
		case q.Name == "":
			bad(p+".name", "is required")
		case !queryNameRE.MatchString(q.Name):
			bad(p+".name", "must be letters, digits and _ . -, at most 63 characters, got %q", q.Name)
		case dup:
			bad(p+".name", "%q is already used by queries[%d]", q.Name, prev)
		default:
			seen[q.Name] = i
		}
		if strings.TrimSpace(q.Query) == "" {
			bad(p+".query", "is required (PromQL, e.g. sum(rate(http_requests_total{instance=~\"{{.Instances}}\",code=~\"5..\"}[1m])))")
		} else if out, err := q.Render(sample); err != nil {
			bad(p+".query", "is not a valid template (fields: .Service .Group .Version .Instances): %v", err)
		} else if strings.TrimSpace(out) == "" {
			bad(p+".query", "renders to nothing")
		}
		if q.SuccessCondition == "" && q.FailureCondition == "" {
			bad(p, "needs successCondition, failureCondition or both, e.g. successCondition: \"result < 0.05\"")
		}
		for _, c := range []struct{ field, text string }{{"successCondition", q.SuccessCondition}, {"failureCondition", q.FailureCondition}} {
			if c.text == "" {
				continue
			}
			if _, err := ParseCondition(c.text); err != nil {
				bad(p+"."+c.field, "%v", err)
			}
		}
	}
}

// PrometheusProvider is one Prometheus server that analysis gates query
// through its HTTP API (/api/v1/query).
type PrometheusProvider struct {
	Name string `yaml:"name" json:"name"`
	URL  string `yaml:"url" json:"url"` // http(s)://host:port[/prefix]
	// TokenEnv names a bearer token sent with every query ("" none).
	TokenEnv string   `yaml:"tokenEnv" json:"tokenEnv,omitempty"`
	Timeout  Duration `yaml:"timeout" json:"timeout"` // of one query
	// CAFile verifies an https server (default: the system's roots).
	CAFile string `yaml:"caFile" json:"caFile,omitempty"`
}

// Default fills the optional fields of a Prometheus server.
func (p *PrometheusProvider) Default() { setDefault(&p.Timeout, Duration(DefaultProviderTimeout)) }

// Validate checks a Prometheus server whose path is base.
func (p PrometheusProvider) Validate(base string, bad func(path, format string, args ...any)) {
	u, err := url.Parse(p.URL)
	switch {
	case p.URL == "":
		bad(base+".url", "is required, e.g. http://prometheus.monitoring:9090")
	case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
		bad(base+".url", "must be an http:// or https:// URL, got %q", p.URL)
	case u.User != nil:
		checkNoURLCredentials(bad, base+".url", p.URL)
	}
	if p.CAFile != "" {
		if _, field, err := (TLSFiles{CAFile: p.CAFile}).load(); err != nil {
			bad(base+"."+field, "%v", err)
		}
	}
	checkEnv(bad, base+".tokenEnv", p.TokenEnv)
}

// prometheusFor finds the server an analysis gate names, or says why none.
func (c *Config) prometheusFor(name string) (PrometheusProvider, error) {
	ps := c.Providers.Prometheus
	if name == "" {
		switch len(ps) {
		case 1:
			return ps[0], nil
		case 0:
			return PrometheusProvider{}, fmt.Errorf("needs a Prometheus server, and %s configures none (providers.prometheus)", c.fileName())
		}
		return PrometheusProvider{}, fmt.Errorf("is required: %s configures %d Prometheus servers (providers.prometheus)", c.fileName(), len(ps))
	}
	for _, p := range ps {
		if p.Name == name {
			return p, nil
		}
	}
	return PrometheusProvider{}, fmt.Errorf("no prometheus provider named %q in %s", name, c.fileName())
}
