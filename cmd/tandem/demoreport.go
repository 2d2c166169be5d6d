package main

import (
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
)

// eventTap keeps the daemon's events for the demo. Record never blocks:
// the reconciler calls it.
type eventTap struct {
	added chan struct{} // capacity 1: something was recorded

	mu     sync.Mutex
	events []reconcile.Event
}

func (t *eventTap) Record(e reconcile.Event) {
	t.mu.Lock()
	t.events = append(t.events, e)
	t.mu.Unlock()
	select {
	case t.added <- struct{}{}:
	default:
	}
}

func (t *eventTap) all() []reconcile.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	return append([]reconcile.Event(nil), t.events...)
}

// demoReport is what users saw and what Tandem did, from before the release
// until after the revert.
type demoReport struct {
	commits         []reportCommit // made so far: the release, then the revert
	traffic         []trafficRow
	rows            []transitionRow
	release, revert time.Duration // from the commit to every service in sync; 0: not reached
	failure         error         // the release or the revert did not complete
	problems        []string      // in the transitions
}

type reportCommit struct{ name, rev string } // name: release or revert

type trafficRow struct {
	load demoLoad
	r    loadgen.Report
}

// transitionRow is one service's transition for one commit.
type transitionRow struct {
	service, commit string // commit: release or revert
	phases          map[reconcile.Phase]time.Duration
	total           time.Duration // from its start to its success
	succeeded       bool
	deploys         int
}

// failureReasons are the events that say a transition did not go as asked.
var failureReasons = map[string]bool{
	reconcile.ReasonTransitionAborted: true, reconcile.ReasonSwappedBack: true, reconcile.ReasonAbortStarted: true,
	reconcile.ReasonSwapBackStarted: true, reconcile.ReasonDrainCeiling: true, reconcile.ReasonStalled: true,
}

// transitions reads every service's transition for the release and the
// revert from the events and the deploy system, and notes what went wrong.
func (r *demoReport) transitions(evs []reconcile.Event, deploys []providers.DeployRequest) {
	for _, c := range r.commits {
		for _, svc := range demoServices {
			row := transitionRow{service: svc.Name, commit: c.name, phases: map[reconcile.Phase]time.Duration{}}
			var started, succeeded time.Time
			for _, e := range evs {
				if e.Service != svc.Name || e.Revision != c.rev {
					continue
				}
				switch {
				case e.Reason == reconcile.ReasonTransitionStarted && started.IsZero():
					started = e.Time
				case e.Reason == reconcile.ReasonPhaseCompleted:
					row.phases[e.Phase] += e.Duration
				case e.Reason == reconcile.ReasonTransitionSucceeded:
					succeeded, row.succeeded = e.Time, true
				case failureReasons[e.Reason]:
					r.problems = append(r.problems, fmt.Sprintf("%s %s: %s: %s", svc.Name, c.name, e.Reason, firstLine(e.Message)))
				}
			}
			if row.succeeded {
				row.total = succeeded.Sub(started)
			} else {
				r.problems = append(r.problems, fmt.Sprintf("%s %s: no successful transition", svc.Name, c.name))
			}
			for _, d := range deploys {
				if d.Service == svc.Name && d.Revision == c.rev {
					row.deploys++
				}
			}
			want := 0
			if c.name == "release" {
				want = 1
			}
			if row.deploys != want {
				r.problems = append(r.problems, fmt.Sprintf("%s %s: %d deploys, want %d", svc.Name, c.name, row.deploys, want))
			}
			r.rows = append(r.rows, row)
		}
	}
}

// verdict is nil when nothing was lost and every transition succeeded.
func (r *demoReport) verdict() error {
	var problems []string
	if r.failure != nil {
		problems = append(problems, r.failure.Error())
	}
	problems = append(problems, r.problems...)
	for _, t := range r.traffic {
		if x := t.r; !x.Clean() || x.Requests == 0 {
			problems = append(problems, fmt.Sprintf("%s: %s", t.load.service, x))
		}
	}
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%d problems: %s", len(problems), strings.Join(problems, "; "))
}

func (r *demoReport) print(w io.Writer) {
	var requests, messages int
	var elapsed time.Duration
	for _, t := range r.traffic {
		requests, messages = requests+t.r.Requests, messages+t.r.Messages
		elapsed = max(elapsed, t.r.Elapsed)
	}
	fmt.Fprintf(w, "\nZero-loss report: what users saw from before the release until after the revert (%s of traffic)\n\n", seconds(elapsed))
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "service\tentry\trequests\tfailed\tmessages\techoed\tlost\tcloses\treconnects\t")
	for _, t := range r.traffic {
		x := t.r
		if t.load.clients == 0 {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t-\t-\t-\t-\t-\t\n", t.load.service, t.load.entry, x.Requests, x.Failed)
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%d\t%d\t%d\t%d\t%s\t%d\t\n", t.load.service, t.load.entry, x.Requests, x.Failed,
			x.Messages, x.Echoed, x.Lost, closes(x.Closes), x.Reconnects)
	}
	tw.Flush()
	fmt.Fprintln(w, "  (messages: WebSocket messages sent, each numbered and checked; closes: by close code, 1001 = the old group's drain signal)")

	fmt.Fprintf(w, "\nTransitions, time per phase:\n\n")
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	head := "service\tcommit\t"
	phases := r.phases()
	for _, p := range phases {
		head += string(p) + "\t"
	}
	fmt.Fprintln(tw, head+"total\tdeploys\tresult\t")
	for _, row := range r.rows {
		line := row.service + "\t" + row.commit + "\t"
		for _, p := range phases {
			line += seconds(row.phases[p]) + "\t"
		}
		result := "succeeded"
		if !row.succeeded {
			result = "FAILED"
		}
		fmt.Fprintf(tw, "%s%s\t%d\t%s\t\n", line, seconds(row.total), row.deploys, result)
	}
	tw.Flush()
	if r.release > 0 {
		fmt.Fprintf(w, "\nRelease: %s from the commit to every service in sync.\n", seconds(r.release))
	}
	if r.revert > 0 {
		fmt.Fprintf(w, "Revert:  %s, with no deploy: the old groups stayed warm at their versions.\n", seconds(r.revert))
	}
	if err := r.verdict(); err != nil {
		fmt.Fprintf(w, "\nResult: FAILED: %v\n", err)
		return
	}
	fmt.Fprintf(w, "\nResult: nothing lost. %d requests, 0 failed; %d WebSocket messages, 0 lost; release and revert succeeded\n"+
		"for all %d services, with %d deploys for the release and none for the revert.\n", requests, messages, len(demoServices), len(demoServices))
}

// usersSaw sums up one service's traffic on a line.
func usersSaw(l demoLoad, r loadgen.Report) string {
	s := fmt.Sprintf("%d requests, %d failed", r.Requests, r.Failed)
	if l.clients > 0 {
		s += fmt.Sprintf("; %d WebSocket messages, %d echoed, %d lost; closes %s, %d reconnects", r.Messages, r.Echoed, r.Lost, closes(r.Closes), r.Reconnects)
	}
	if len(r.Errors) > 0 {
		s += "; first errors: " + strings.Join(r.Errors, "; ")
	}
	return s
}

// closes renders closes by code, e.g. "1001×20".
func closes(m map[int]int) string {
	codes := make([]int, 0, len(m))
	for c := range m {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	parts := make([]string, 0, len(codes))
	for _, c := range codes {
		parts = append(parts, strconv.Itoa(c)+"×"+strconv.Itoa(m[c]))
	}
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ",")
}

// phases are the columns of the phase table: every phase but done that some
// transition went through (the release gates only when one ran).
func (r *demoReport) phases() []reconcile.Phase {
	var out []reconcile.Phase
	for _, p := range reconcile.Phases[:len(reconcile.Phases)-1] {
		for _, row := range r.rows {
			if _, ok := row.phases[p]; ok {
				out = append(out, p)
				break
			}
		}
	}
	return out
}
