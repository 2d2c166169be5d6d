package reconcile

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// The smoke phase runs gates.smoke (README "Smoke tests") against the
// target group once it is verified and before it gets any traffic. The
// checks are I/O, so the planner plans them as one step (ActionSmoke); the
// executor runs them through providers.SmokeTester and journals the results
// in Transition.Smoke; the next pass judges them. A failed check aborts the
// release: the target group was never enabled or weighted, so the source
// never stopped serving.
//
// A restart while the checks run (results not journaled) runs them all
// again: smoke checks must be safe to repeat. Results that were journaled
// are never run again; the next pass judges them.

// SmokeProgress is one run of gates.smoke.
type SmokeProgress struct {
	Group   spec.Group `json:"group"`
	Version string     `json:"version"`
	// Runs counts the runs started: more than one when the daemon stopped
	// during a run, or the runner failed and was retried.
	Runs    int       `json:"runs"`
	Started time.Time `json:"started"`
	// Done is set with the results of a run that completed.
	Done    bool                    `json:"done,omitempty"`
	Results []providers.SmokeResult `json:"results,omitempty"`
}

// Failed returns the results that did not pass.
func (s *SmokeProgress) Failed() []providers.SmokeResult {
	if s == nil {
		return nil
	}
	var out []providers.SmokeResult
	for _, r := range s.Results {
		if !r.Passed {
			out = append(out, r)
		}
	}
	return out
}

func (s *SmokeProgress) clone() *SmokeProgress {
	if s == nil {
		return nil
	}
	c := *s
	c.Results = slices.Clone(s.Results)
	return &c
}

// smoke plans the smoke phase of t.
func (p *planner) smoke(t *Transition) outcome {
	g := p.svc.Gates.Smoke
	if !gated(t) || g == nil {
		return pass
	}
	if s := p.ensureIdle(t.To, false); s != nil {
		return outcome{step: s} // smoke checks only reach a group with no users' traffic
	}
	sp := t.Smoke
	if sp == nil || !sp.Done {
		if sp == nil {
			sp = &SmokeProgress{Group: t.To, Version: t.Version}
			t.Smoke = sp
		}
		sp.Runs++
		sp.Started = p.in.Now
		insts := p.svc.Groups.Get(t.To)
		bound := smokeBound(g, len(insts))
		return outcome{step: &Step{Action: ActionSmoke, Group: t.To, Version: t.Version, Instances: insts, Timeout: bound,
			Describe: fmt.Sprintf("smoke-test group %s at %s (%s): %s, at most %s", t.To, t.Version, instList(insts), smokeChecks(g), bound)}}
	}
	p.plan.Next.LastSmoke = sp.clone()
	if failed := sp.Failed(); len(failed) > 0 {
		return outcome{reverse: smokeFailure(failed, len(sp.Results))}
	}
	return outcome{done: true}
}

// smokeBound is how long a run may take: the checks of an instance run one
// after the other, providers.SmokeParallel instances at a time, then the
// exec hook.
func smokeBound(g *spec.SmokeGate, instances int) time.Duration {
	var perInstance time.Duration
	for _, c := range g.HTTP {
		perInstance += c.Timeout.D()
	}
	rounds := (instances + providers.SmokeParallel - 1) / providers.SmokeParallel
	bound := time.Duration(rounds) * perInstance
	if g.Exec != nil {
		bound += g.Exec.Timeout.D()
	}
	return bound + 5*time.Second // the runner's own bookkeeping
}

// smokeChecks lists the checks of g for a step's description and the plan.
func smokeChecks(g *spec.SmokeGate) string {
	var parts []string
	for _, c := range g.HTTP {
		s := c.Name
		if want := c.Method + " " + c.Path; s != want {
			s += " (" + want + ")"
		}
		parts = append(parts, s+" -> "+c.Expect.Describe())
	}
	if g.Exec != nil {
		parts = append(parts, "exec "+strings.Join(g.Exec.Command, " ")+" -> exit 0")
	}
	return strings.Join(parts, "; ")
}

// smokeFailure is the reason of an abort by smoke tests: the first failed
// check with the instance and the answer, and how many others failed.
func smokeFailure(failed []providers.SmokeResult, total int) string {
	f := failed[0]
	on := ""
	if f.Instance != "" {
		on = " on " + f.Instance
	}
	msg := fmt.Sprintf("smoke check %q failed%s: %s", f.Check, on, f.Error)
	if f.Body != "" {
		msg += fmt.Sprintf("; answer: %q", f.Body)
	}
	if len(failed) > 1 {
		msg += fmt.Sprintf(" (%d of %d checks failed)", len(failed), total)
	}
	return msg
}

// smokeSummary is the outcome of a run for the step's event.
func smokeSummary(results []providers.SmokeResult) string {
	failed := 0
	for _, r := range results {
		if !r.Passed {
			failed++
		}
	}
	if failed == 0 {
		return fmt.Sprintf("all %d smoke checks passed", len(results))
	}
	return fmt.Sprintf("%d of %d smoke checks failed: %s", failed, len(results), smokeFailure((&SmokeProgress{Results: results}).Failed(), len(results)))
}

// shownSmoke is the run of gates.smoke a status shows: the transition's,
// else the last one judged.
func shownSmoke(st State) *SmokeProgress {
	if t := st.Transition; t != nil && t.Smoke != nil {
		return t.Smoke
	}
	return st.LastSmoke
}

// smokeNote says what the smoke phase checks, for tandem plan.
func smokeNote(svc *spec.Service) string {
	g := svc.Gates.Smoke
	var what []string
	if n := len(g.HTTP); n > 0 {
		what = append(what, fmt.Sprintf("%d HTTP checks on each of the %d target instances", n, len(svc.Groups.Get(svc.Active))))
	}
	if g.Exec != nil {
		what = append(what, fmt.Sprintf("exec once within gates.smoke.exec.timeout %s", g.Exec.Timeout))
	}
	return strings.Join(what, ", then ") + "; the group has no traffic yet; a failed check aborts the release and the serving group keeps serving"
}
