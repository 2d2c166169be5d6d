package check_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/check"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

type answers map[string]providers.MetricValue

func (a answers) Query(_ context.Context, q string) (providers.MetricValue, error) {
	for k, v := range a {
		if strings.Contains(q, k) {
			return v, nil
		}
	}
	return providers.MetricValue{}, errors.New(`prometheus main: bad_data: 1:5: parse error: unclosed left parenthesis`)
}

func TestCheckRunsEachAnalysisQueryOnceAgainstTheServingGroup(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte("git: {url: \"file:///srv/fleet.git\"}\nproviders:\n  haproxy: [{name: edge, socket: /run/h.sock}]\n  prometheus: [{name: main, url: \"http://127.0.0.1:9090\"}]\n"))
	require.NoError(t, err)
	svcFile := `service: web
active: B
version: "2.0.0"
groups:
  A: {instances: [{ip: 10.0.1.1, port: 80, id: a1}]}
  B: {instances: [{ip: 10.0.2.1, port: 80, id: b1}]}
traffic: [{haproxy: edge, backend: web}]
deploy: {exec: ["./deploy.sh"]}
health: {http: {path: /healthz}, version: {http: /version}}
gates:
  analysis:
    queries:
      - {name: good, query: 'sum(ok{instance=~"{{.Instances}}",version="{{.Version}}"})', successCondition: result == 1}
      - {name: split, query: 'split{instance=~"{{.Instances}}"}', successCondition: result == 1}
      - {name: empty, query: 'empty{instance=~"{{.Instances}}"}', successCondition: result == 1}
      - {name: broken, query: 'sum(x', successCondition: result == 1}
`
	cfg.Policy.Hooks.Commands = []string{"./deploy.sh"}
	set, err := spec.Load(fstest.MapFS{"services/web.yaml": {Data: []byte(svcFile)}}, "services", cfg)
	require.NoError(t, err)
	var asked []string
	q := answers{
		"ok":    {Value: 1, Series: 1},
		"split": {Series: 2},
		"empty": {},
	}
	rec := querierFunc(func(ctx context.Context, text string) (providers.MetricValue, error) {
		asked = append(asked, text)
		return q.Query(ctx, text)
	})
	rep, err := check.Run(context.Background(), check.Input{ConfigFile: "tandem.yaml", Config: cfg, Services: set,
		Metrics: map[string]providers.MetricsQuerier{"main": rec}, Concurrency: 1})
	require.NoError(t, err)
	var got []string
	for _, f := range rep.Findings {
		if strings.HasPrefix(f.Where, "gates.analysis") {
			got = append(got, f.String())
		}
	}
	require.Equal(t, []string{
		"error: services/web.yaml:14: gates.analysis.queries[1] split: gives 2 series about group B; a measurement needs one\n  fix: aggregate the query (sum, max, avg): several series are an inconclusive measurement",
		"warning: services/web.yaml:15: gates.analysis.queries[2] empty: gives no data about group B (at 2.0.0), which serves now\n  fix: check the metric names and labels (instance=~\"{{.Instances}}\" must match Prometheus' scrape addresses); no data is an inconclusive measurement",
		"error: services/web.yaml:16: gates.analysis.queries[3] broken: prometheus main: bad_data: 1:5: parse error: unclosed left parenthesis\n  fix: correct the PromQL (run it in Prometheus' expression browser), or the address and token of providers.prometheus main",
	}, got)
	require.Equal(t, `sum(ok{instance=~"10\\.0\\.2\\.1:80",version="2.0.0"})`, asked[0], "about the serving group B at its version")
}

type querierFunc func(ctx context.Context, q string) (providers.MetricValue, error)

func (f querierFunc) Query(ctx context.Context, q string) (providers.MetricValue, error) {
	return f(ctx, q)
}
