package spec_test

import (
	"math"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

func TestAnalysisConditionsCompareTheResultWithANumber(t *testing.T) {
	for _, c := range []struct {
		text string
		v    float64
		met  bool
	}{
		{"result < 0.05", 0.01, true}, {"result < 0.05", 0.05, false},
		{"result<=0.05", 0.05, true}, {" result >  1e3 ", 1001, true},
		{"result >= -1", -1, true}, {"result == 1", 1, true}, {"result != 1", 1, false},
		{"result > 0.5", math.Inf(1), true},
	} {
		cond, err := spec.ParseCondition(c.text)
		require.NoError(t, err, c.text)
		require.Equal(t, c.met, cond.Met(c.v), "%s with %v", c.text, c.v)
	}
	for _, bad := range []string{"", "result", "result ~ 1", "value < 1", "result < x", "result < NaN", "result < Inf", "result < 1 && result > 0", "1 > result"} {
		_, err := spec.ParseCondition(bad)
		require.Error(t, err, bad)
	}
}

func TestAnalysisQueriesRenderTheGroupAsAnEscapedRegex(t *testing.T) {
	q := spec.AnalysisQuery{Name: "errors", Query: `sum(rate(x{instance=~"{{.Instances}}",svc="{{.Service}}",group="{{.Group}}",v="{{.Version}}"}[1m]))`}
	insts := []spec.Instance{{IP: "10.0.1.1", Port: 8080}, {IP: "10.0.1.2", Port: 8080}}
	out, err := q.Render(spec.AnalysisVars{Service: "user", Group: "B", Version: "2.0.0", Instances: spec.InstancesRegex(insts)})
	require.NoError(t, err)
	// PromQL reads "10\\.0" in a double-quoted string as the regex 10\.0.
	require.Equal(t, `sum(rate(x{instance=~"10\\.0\\.1\\.1:8080|10\\.0\\.1\\.2:8080",svc="user",group="B",v="2.0.0"}[1m]))`, out)
}

func TestAnalysisGateDefaultsAndResolvesItsPrometheus(t *testing.T) {
	gate := "gates:\n  analysis:\n    queries: [{name: up, query: 'min(up{instance=~\"{{.Instances}}\"})', successCondition: result == 1}]\n"
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(withPrometheus("  prometheus: [{name: main, url: \"http://127.0.0.1:9090\"}]\n")))
	require.NoError(t, err)
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService + gate)}}, "services", cfg)
	require.NoError(t, err)
	svc, _ := set.Get("user-service")
	a := svc.Gates.Analysis
	require.Equal(t, "main", a.Prometheus, "the only server configured is the one queried")
	require.Equal(t, 30*time.Second, a.Interval.D())
	require.Zero(t, a.BeforeShift)
	require.Equal(t, 5*time.Second, cfg.Providers.Prometheus[0].Timeout.D())

	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService + gate)}}, "services", mustConfig(t, validConfig))
	require.EqualError(t, err, `services/user.yaml:16: gates.analysis.prometheus: needs a Prometheus server, and tandem.yaml configures none (providers.prometheus)`)
	two := withPrometheus("  prometheus: [{name: main, url: \"http://127.0.0.1:9090\"}, {name: other, url: \"http://127.0.0.1:9091\"}]\n")
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService + gate)}}, "services", mustConfig(t, two))
	require.EqualError(t, err, `services/user.yaml:16: gates.analysis.prometheus: is required: tandem.yaml configures 2 Prometheus servers (providers.prometheus)`)
	named := strings.Replace(gate, "analysis:\n", "analysis:\n    prometheus: staging\n", 1)
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService + named)}}, "services", mustConfig(t, two))
	require.EqualError(t, err, `services/user.yaml:16: gates.analysis.prometheus: no prometheus provider named "staging" in tandem.yaml`)
}

func TestPrometheusServersAreValidatedWithTheirLocation(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(withPrometheus(`  prometheus:
    - {name: a, url: "prometheus:9090"}
    - {name: b, url: "http://admin:s3cret@prometheus:9090", tokenEnv: "not a var"}
    - {url: "http://prometheus:9090"}
`)))
	require.Error(t, err)
	msg := err.Error()
	require.Contains(t, msg, `tandem.yaml:7: providers.prometheus[0].url: must be an http:// or https:// URL, got "prometheus:9090"`)
	require.Contains(t, msg, `tandem.yaml:8: providers.prometheus[1].url: must not carry credentials (user:password@prometheus:9090)`)
	require.Contains(t, msg, `tandem.yaml:8: providers.prometheus[1].tokenEnv: must name an environment variable`)
	require.Contains(t, msg, `tandem.yaml:9: providers.prometheus[2].name: is required`)
	require.NotContains(t, msg, "s3cret")
}

func mustConfig(t *testing.T, text string) *spec.Config {
	t.Helper()
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(text))
	require.NoError(t, err)
	return cfg
}

// withPrometheus adds providers lines to validConfig.
func withPrometheus(lines string) string {
	return strings.Replace(validConfig, "policy:", lines+"policy:", 1)
}
