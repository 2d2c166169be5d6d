package reconcile

import (
	"context"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Metric analysis (gates.analysis): PromQL queries judged by their
// conditions, every interval, before the shift (phase analysis, for
// beforeShift; a failure aborts) and during the watch (a failure swaps
// back). The queries are I/O: Observe runs them when AnalysisDue says a
// measurement is due and hands the answers in Live.Analysis; the planner
// only counts and judges them, and journals the counts in
// Transition.Analysis so that a restart resumes them.

// Event reasons of the analysis.
const (
	ReasonAnalysisMeasurement = "AnalysisMeasurement" // a query's measurement failed or was inconclusive
	ReasonAnalysisPassed      = "AnalysisPassed"      // the analysis before the shift passed
)

// Verdicts of one measurement of a query.
const (
	MeasurementSuccessful   = "successful"
	MeasurementFailed       = "failed"
	MeasurementInconclusive = "inconclusive"
)

// AnalysisProgress is the analysis of one stage (before the shift, or the
// watch) of a transition.
type AnalysisProgress struct {
	Phase        Phase           `json:"phase"` // analysis (before the shift) or watch
	LastAt       time.Time       `json:"lastAt,omitzero"`
	Measurements int             `json:"measurements"`
	Queries      []QueryProgress `json:"queries,omitempty"`
}

// QueryProgress counts the measurements of one query.
type QueryProgress struct {
	Name         string `json:"name"`
	Successful   int    `json:"successful"`
	Failed       int    `json:"failed"`
	Inconclusive int    `json:"inconclusive"`
	Last         string `json:"last,omitempty"`  // verdict of the last measurement
	Value        string `json:"value,omitempty"` // its value, when it had one
	Detail       string `json:"detail,omitempty"`
}

func (a *AnalysisProgress) clone() *AnalysisProgress {
	if a == nil {
		return nil
	}
	c := *a
	c.Queries = append([]QueryProgress(nil), a.Queries...)
	return &c
}

// AnalysisSample is one measurement of every query, taken by Observe.
type AnalysisSample struct {
	At      time.Time        `json:"at"`
	Group   spec.Group       `json:"group"`   // the group measured
	Results []AnalysisResult `json:"results"` // in the order of the gate's queries
}

// AnalysisResult is the answer to one query.
type AnalysisResult struct {
	Name  string                `json:"name"`
	Query string                `json:"query"` // as rendered
	Value providers.MetricValue `json:"value"`
	Err   string                `json:"error,omitempty"`
	// Assumed: not measured; tandem plan's simulation takes it as successful.
	Assumed bool `json:"-"`
}

// analysisStage is the phase in which t measures, or "" when it does not.
func analysisStage(svc *spec.Service, t *Transition) Phase {
	g := svc.Gates.Analysis
	switch {
	case g == nil || t == nil || !gated(t) || t.Failure != "":
		return ""
	case t.Phase == PhaseAnalysis && g.BeforeShift > 0, t.Phase == PhaseWatch:
		return t.Phase
	}
	return ""
}

// AnalysisDue returns what the queries of svc's analysis gate are about
// when a measurement is due at now, else nil: the target group, from the
// first pass of a stage, then every interval; before the shift only until
// beforeShift has passed.
func AnalysisDue(svc *spec.Service, st State, now time.Time) *spec.AnalysisVars {
	t := st.Transition
	stage := analysisStage(svc, t)
	if stage == "" {
		return nil
	}
	g := svc.Gates.Analysis
	if a := t.Analysis; a != nil && a.Phase == stage && a.Measurements > 0 {
		if now.Before(a.LastAt.Add(g.Interval.D())) {
			return nil
		}
		if stage == PhaseAnalysis && now.Sub(t.PhaseSince) >= g.BeforeShift.D() {
			return nil
		}
	}
	return &spec.AnalysisVars{Service: svc.Name, Group: string(t.To), Version: t.Version,
		Instances: spec.InstancesRegex(svc.Groups.Get(t.To))}
}

// measure runs every query of svc's analysis gate about vars, in parallel.
// It never fails: an answer that could not be had is an inconclusive
// result, as is a missing server.
func measure(ctx context.Context, ps *providers.Set, svc *spec.Service, vars spec.AnalysisVars) *AnalysisSample {
	g := svc.Gates.Analysis
	now := time.Now
	if ps.Clock != nil {
		now = ps.Clock.Now
	}
	s := &AnalysisSample{At: now(), Group: spec.Group(vars.Group), Results: make([]AnalysisResult, len(g.Queries))}
	q := ps.Metrics[g.Prometheus]
	var wg sync.WaitGroup
	for i, aq := range g.Queries {
		r := &s.Results[i]
		r.Name = aq.Name
		text, err := aq.Render(vars)
		if err != nil {
			r.Err = fmt.Sprintf("rendering the query: %v", err)
			continue
		}
		r.Query = text
		if q == nil {
			r.Err = fmt.Sprintf("no prometheus provider named %q is configured", g.Prometheus)
			continue
		}
		wg.Go(func() {
			v, err := q.Query(ctx, text)
			r.Value = v
			if err != nil {
				r.Err = err.Error()
			}
		})
	}
	wg.Wait()
	return s
}

// judge gives the verdict of one answer to q, and what it was.
func judge(q spec.AnalysisQuery, r AnalysisResult) (verdict, value, detail string) {
	v := r.Value.Value
	switch {
	case r.Assumed:
		return MeasurementSuccessful, "", "assumed"
	case r.Err != "":
		return MeasurementInconclusive, "", r.Err
	case r.Value.Series == 0:
		return MeasurementInconclusive, "", "no data: the query selects no series"
	case r.Value.Series > 1:
		return MeasurementInconclusive, "", fmt.Sprintf("%d series, want one: aggregate them (sum, max, avg)", r.Value.Series)
	case math.IsNaN(v):
		return MeasurementInconclusive, "NaN", "the value is NaN (e.g. 0/0: no requests in the range)"
	}
	value = strconv.FormatFloat(v, 'g', 6, 64)
	succ, _ := spec.ParseCondition(q.SuccessCondition) // validated when loaded
	fail, _ := spec.ParseCondition(q.FailureCondition)
	hasSucc, hasFail := q.SuccessCondition != "", q.FailureCondition != ""
	switch {
	case hasFail && fail.Met(v):
		return MeasurementFailed, value, fmt.Sprintf("failureCondition %s met", fail)
	case hasSucc && succ.Met(v):
		return MeasurementSuccessful, value, ""
	case hasSucc && !hasFail:
		return MeasurementFailed, value, fmt.Sprintf("successCondition %s not met", succ)
	case hasFail && !hasSucc:
		return MeasurementSuccessful, value, ""
	}
	return MeasurementInconclusive, value, fmt.Sprintf("neither successCondition %s nor failureCondition %s met", succ, fail)
}

// analyse folds this pass's measurement (if any) into t.Analysis and
// reports a reason to undo t once a query has exceeded a limit.
func (p *planner) analyse(t *Transition) string {
	g := p.svc.Gates.Analysis
	stage := analysisStage(p.svc, t)
	if t.Analysis == nil || t.Analysis.Phase != stage {
		t.Analysis = &AnalysisProgress{Phase: stage}
	}
	a := t.Analysis
	s := p.v.live.Analysis
	if s == nil || s.Group != t.To || len(s.Results) != len(g.Queries) || (a.Measurements > 0 && !s.At.After(a.LastAt)) {
		return ""
	}
	if len(a.Queries) != len(g.Queries) {
		a.Queries = make([]QueryProgress, len(g.Queries))
		for i, q := range g.Queries {
			a.Queries[i].Name = q.Name
		}
	}
	a.Measurements++
	a.LastAt = s.At
	var why []string
	for i, q := range g.Queries {
		qp := &a.Queries[i]
		verdict, value, detail := judge(q, s.Results[i])
		qp.Last, qp.Value, qp.Detail = verdict, value, detail
		switch verdict {
		case MeasurementSuccessful:
			qp.Successful++
			continue
		case MeasurementFailed:
			qp.Failed++
			if qp.Failed > g.FailureLimit {
				why = append(why, fmt.Sprintf("analysis query %s failed %d times (failureLimit %d): value %s, %s",
					q.Name, qp.Failed, g.FailureLimit, value, detail))
			}
		case MeasurementInconclusive:
			qp.Inconclusive++
			if qp.Inconclusive > g.InconclusiveLimit {
				why = append(why, fmt.Sprintf("analysis query %s was inconclusive %d times (inconclusiveLimit %d): %s",
					q.Name, qp.Inconclusive, g.InconclusiveLimit, detail))
			}
		}
		p.event(EventWarning, ReasonAnalysisMeasurement, "analysis of group %s at %s: query %s %s (%d failed, %d inconclusive so far): %s",
			t.To, t.Version, q.Name, verdict, qp.Failed, qp.Inconclusive, orDash(detail))
	}
	return strings.Join(why, "; ")
}

// nextMeasurement is the time until the next measurement is due.
func (p *planner) nextMeasurement(t *Transition) time.Duration {
	a := t.Analysis
	if a == nil || a.Measurements == 0 {
		return PollInterval
	}
	return max(a.LastAt.Add(p.svc.Gates.Analysis.Interval.D()).Sub(p.in.Now), 0)
}

// analysis is the phase before the shift: the target group is analysed
// for beforeShift; a failure aborts the release before any traffic moved.
func (p *planner) analysis(t *Transition) outcome {
	g := p.svc.Gates.Analysis
	if analysisStage(p.svc, t) == "" {
		return pass
	}
	if why := p.analyse(t); why != "" {
		return outcome{reverse: why}
	}
	a := t.Analysis
	left := g.BeforeShift.D() - p.in.Now.Sub(t.PhaseSince)
	if left <= 0 && a.Measurements > 0 {
		p.event(EventNormal, ReasonAnalysisPassed, "analysis of group %s at %s passed: %d measurements over %s: %s",
			t.To, t.Version, a.Measurements, g.BeforeShift, a.Summary())
		return outcome{done: true}
	}
	wait := p.nextMeasurement(t)
	if left > 0 {
		wait = min(wait, left)
	}
	p.wait("Analysing", wait, fmt.Sprintf("gates.analysis.beforeShift %s", g.BeforeShift),
		"analysing group %s at %s before the shift: %d measurements, %s left: %s",
		t.To, t.Version, a.Measurements, max(left, 0).Round(time.Millisecond), a.Summary())
	return outcome{}
}

// watchAnalysis runs the analysis during the watch. failing: the plan is
// made (a swap-back, or a wait for the watch's first measurement).
func (p *planner) watchAnalysis(t *Transition) (outcome, bool) {
	if analysisStage(p.svc, t) != PhaseWatch {
		return outcome{}, false
	}
	if why := p.analyse(t); why != "" {
		return outcome{reverse: why}, true
	}
	if t.Analysis.Measurements == 0 && p.in.Now.Sub(t.PhaseSince) >= p.svc.Verify.Window.D() {
		p.wait("Analysing", PollInterval, "", "watching group %s at %s: verify.window is over, waiting for the analysis' first measurement", t.To, t.Version)
		return outcome{}, true
	}
	return outcome{}, false
}

// analysisWake brings the watch's wait forward to the next measurement.
func (p *planner) analysisWake(t *Transition) {
	if w := p.plan.Wait; w != nil && analysisStage(p.svc, t) == PhaseWatch {
		w.For = min(w.For, p.nextMeasurement(t))
	}
}

// Summary is one line per query: verdict counts and the last value.
func (a *AnalysisProgress) Summary() string {
	if a == nil || len(a.Queries) == 0 {
		return "no measurement yet"
	}
	parts := make([]string, len(a.Queries))
	for i, q := range a.Queries {
		parts[i] = fmt.Sprintf("%s %d ok/%d failed/%d inconclusive, last %s", q.Name, q.Successful, q.Failed, q.Inconclusive, orDash(q.Value))
		if q.Last != "" && q.Last != MeasurementSuccessful {
			parts[i] += fmt.Sprintf(" (%s: %s)", q.Last, q.Detail)
		}
	}
	return strings.Join(parts, "; ")
}

// assumeAnalysed is a successful measurement when one is due, for the
// preview's simulation (nil when none is due).
func assumeAnalysed(svc *spec.Service, st State, now time.Time) *AnalysisSample {
	vars := AnalysisDue(svc, st, now)
	if vars == nil {
		return nil
	}
	g := svc.Gates.Analysis
	s := &AnalysisSample{At: now, Group: spec.Group(vars.Group)}
	for _, q := range g.Queries {
		text, _ := q.Render(*vars)
		s.Results = append(s.Results, AnalysisResult{Name: q.Name, Query: text, Assumed: true})
	}
	return s
}

// analysisNote says what the analysis does, for tandem plan.
func analysisNote(g *spec.AnalysisGate, onFailure string) string {
	var qs []string
	for _, q := range g.Queries {
		var conds []string
		if q.SuccessCondition != "" {
			conds = append(conds, "success if "+q.SuccessCondition)
		}
		if q.FailureCondition != "" {
			conds = append(conds, "failure if "+q.FailureCondition)
		}
		qs = append(qs, fmt.Sprintf("%s (%s)", q.Name, strings.Join(conds, ", ")))
	}
	return fmt.Sprintf("query Prometheus %s every %s: %s; more than failureLimit %d failed or inconclusiveLimit %d inconclusive measurements of a query %s",
		g.Prometheus, g.Interval, strings.Join(qs, "; "), g.FailureLimit, g.InconclusiveLimit, onFailure)
}
