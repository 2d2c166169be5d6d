package check

import (
	"context"
	"fmt"
	"math"

	"github.com/tandemhq/tandem/spec"
)

// analysis runs each query of svc's analysis gate once about the group
// that serves now, so that a PromQL error, an unreachable Prometheus or a
// query that gives several series shows before a release depends on it.
// No data is a warning: the query may select what only a new version
// exports.
func (c *checker) analysis(ctx context.Context, svc *spec.Service) {
	g := svc.Gates.Analysis
	q := c.in.Metrics[g.Prometheus]
	vars := spec.AnalysisVars{Service: svc.Name, Group: string(svc.Active), Version: svc.Version,
		Instances: spec.InstancesRegex(svc.Groups.Get(svc.Active))}
	for i, aq := range g.Queries {
		path := fmt.Sprintf("gates.analysis.queries[%d]", i)
		at := Finding{File: svc.Source.File, Line: svc.Line(path), Service: svc.Name, Where: path + " " + aq.Name}
		if q == nil {
			at.Severity, at.Problem, at.Fix = Error, fmt.Sprintf("no prometheus provider %q is configured", g.Prometheus), "add it to providers.prometheus in "+c.in.ConfigFile
			c.add(at)
			return
		}
		text, err := aq.Render(vars)
		if err != nil {
			at.Severity, at.Problem, at.Fix = Error, err.Error(), "correct the query's template"
			c.add(at)
			continue
		}
		v, err := q.Query(ctx, text)
		switch {
		case err != nil:
			at.Severity, at.Problem = Error, err.Error()
			at.Fix = "correct the PromQL (run it in Prometheus' expression browser), or the address and token of providers.prometheus " + g.Prometheus
		case v.Series > 1:
			at.Severity, at.Problem = Error, fmt.Sprintf("gives %d series about group %s; a measurement needs one", v.Series, svc.Active)
			at.Fix = "aggregate the query (sum, max, avg): several series are an inconclusive measurement"
		case v.Series == 0:
			at.Severity, at.Problem = Warning, fmt.Sprintf("gives no data about group %s (at %s), which serves now", svc.Active, svc.Version)
			at.Fix = "check the metric names and labels (instance=~\"{{.Instances}}\" must match Prometheus' scrape addresses); no data is an inconclusive measurement"
		case math.IsNaN(v.Value):
			at.Severity, at.Problem = Warning, fmt.Sprintf("gives NaN about group %s (e.g. 0/0: no requests in the range)", svc.Active)
			at.Fix = "a NaN is an inconclusive measurement; for ratios, see that the group has traffic when it is measured"
		default:
			continue
		}
		c.add(at)
	}
}
