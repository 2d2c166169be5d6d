package main

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"time"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// stepMark is a rollout step a transition reached (-rollout): when, and
// until when the share stayed (the first weight change of the next step).
type stepMark struct {
	Transition  int // index in tandemRun.transitions
	Step, Steps int
	Share       int // the configured share of the new group, percent
	To          spec.Group
	At, End     time.Time // End zero: the last step
}

// rolloutMarks reads the steps rev reached from its events.
func rolloutMarks(events []reconcile.Event, rev string, to spec.Group, index int) []stepMark {
	var marks []stepMark
	for _, e := range events {
		if e.Revision != rev {
			continue
		}
		switch e.Reason {
		case reconcile.ReasonRolloutStep:
			var m stepMark
			if _, err := fmt.Sscanf(e.Message, "rollout step %d/%d (%d%%) reached", &m.Step, &m.Steps, &m.Share); err != nil {
				continue // the announcement or a skip
			}
			m.Transition, m.To, m.At = index, to, e.Time
			marks = append(marks, m)
		case reconcile.ReasonStepApplied:
			if n := len(marks); n > 0 && e.Phase == reconcile.PhaseShift && marks[n-1].End.IsZero() {
				marks[n-1].End = e.Time.Add(-e.Duration)
			}
		}
	}
	if n := len(marks); n > 0 {
		marks[n-1].End = time.Time{}
	}
	return marks
}

// stepCount is what the load balancer's POSTs did while a step held.
type stepCount struct {
	mark      stepMark
	requests  int            // answered in the step's whole 100 ms buckets
	toGroup   int            // of which by the new group
	byBackend map[string]int // of which by each backend
}

// countSteps counts the answers by group within each step but the last.
func countSteps(r loadgen.Report, started time.Time, marks []stepMark) []stepCount {
	const bucket = 100 * time.Millisecond // loadgen's default bucket
	var out []stepCount
	for _, m := range marks {
		if m.End.IsZero() || !m.End.After(m.At) {
			continue
		}
		c := stepCount{mark: m, byBackend: map[string]int{}}
		for _, p := range r.Timeline {
			from := started.Add(p.At)
			if from.Before(m.At) || from.Add(bucket).After(m.End) {
				continue
			}
			c.requests += p.Requests
			if p.Backend != "" {
				c.byBackend[p.Backend] += p.Requests
			}
			if stage.GroupOf(p.Backend) == m.To {
				c.toGroup += p.Requests
			}
		}
		out = append(out, c)
	}
	return out
}

// tolerance is how far, in percentage points, a measured share may be from
// the configured one: three standard deviations of a binomial sample of n
// requests, plus one point for the rounding of the weights (at a binding
// weight of 100 the weights give the share within about a point).
func tolerance(share, n int) float64 {
	if n == 0 {
		return math.Inf(1)
	}
	p := float64(share) / 100
	return 100*3*math.Sqrt(p*(1-p)/float64(n)) + 1
}

// printSteps prints, per step, the requests each group answered against
// the configured share. Nothing is asserted: the figures are printed.
func printSteps(w io.Writer, r *tandemRun) {
	counts := countSteps(r.report, r.started, r.marks)
	if len(counts) == 0 {
		return
	}
	fmt.Fprintf(w, "\nrollout %s: POSTs through the load balancer while each step held (whole 100 ms buckets)\n", r.rollout)
	fmt.Fprintf(w, "%-3s %-8s %-7s %-9s %7s %9s %8s %8s %9s %-7s %s\n", "#", "kind", "version", "step", "share", "requests", "by new", "measured", "tolerance", "", "by backend")
	for _, c := range counts {
		t := r.transitions[c.mark.Transition]
		got := 100 * float64(c.toGroup) / math.Max(1, float64(c.requests))
		tol := tolerance(c.mark.Share, c.requests)
		verdict := "within"
		if math.Abs(got-float64(c.mark.Share)) > tol {
			verdict = "OUTSIDE"
		}
		backends := make([]string, 0, len(c.byBackend))
		for b, n := range c.byBackend {
			backends = append(backends, fmt.Sprintf("%s %d", b, n))
		}
		sort.Strings(backends)
		fmt.Fprintf(w, "%-3d %-8s %-7s %-9s %6d%% %9d %8d %7.1f%% %8.1fpt %-7s %s\n", c.mark.Transition+1, t.Kind, t.Version,
			fmt.Sprintf("%d/%d", c.mark.Step, c.mark.Steps), c.mark.Share, c.requests, c.toGroup, got, tol, verdict, strings.Join(backends, ", "))
	}
	fmt.Fprintln(w, "tolerance: 3 standard deviations of the step's requests (binomial) + 1 point for the rounding of the weights; printed, not asserted")
}

// gnuplotMarks draws a dashed vertical line, labelled with the share, at
// each step reached, in seconds since the traffic started.
func gnuplotMarks(started time.Time, marks []stepMark) string {
	var b strings.Builder
	for _, m := range marks {
		x := m.At.Sub(started).Seconds()
		fmt.Fprintf(&b, "set arrow from %.2f, graph 0 to %.2f, graph 1 nohead dt 2 lw 1 lc rgb '#555555'\n", x, x)
		fmt.Fprintf(&b, "set label '%d%%' at %.2f, graph 0.97 left offset 0.3,0 font 'sans,8' tc rgb '#555555'\n", m.Share, x)
	}
	return b.String()
}
