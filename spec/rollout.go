package spec

import (
	"fmt"
	"strconv"
	"time"
)

// Rollout moves a release's traffic to the target group in steps instead of
// all at once: either listed weight steps or a linear warm-up ramp (never
// both). Without it, the shift moves each binding from 0 to 100 percent.
// A step's traffic is the target group's share of every binding (its share
// of the binding's total weight), set make-before-break like the shift
// itself: the target is raised, the load balancer reports it healthy, then
// the serving group is lowered. A revert or a failure at any step takes all
// traffic back to the serving group at once.
type Rollout struct {
	Steps []RolloutStep `yaml:"steps" json:"steps,omitempty"`
	Ramp  *Ramp         `yaml:"ramp" json:"ramp,omitempty"`
}

// RolloutStep is one weight step.
type RolloutStep struct {
	// Traffic is the target group's share of each binding in percent,
	// 1..100; steps strictly increase, and a last step of 100 is implied
	// when the list does not end with it.
	Traffic int `yaml:"traffic" json:"traffic"`
	// Pause is how long the rollout stays at this step once every binding
	// carries its share, before it moves on; or manual: once its hold is
	// over, the rollout stays at this step until someone promotes it (on to
	// the next step) or aborts it (all traffic back to the serving group at
	// once), through the same means as the approval gate (ApprovalGate).
	Pause StepPause `yaml:"pause" json:"pause,omitzero"`
	// Hold is how long both groups must have been healthy without a break
	// (every probe passing, no server reported unhealthy by the LB) at this
	// step before it moves on; a failed check restarts it, and
	// verify.failureThreshold failed checks in a row take all traffic back.
	Hold Duration `yaml:"hold" json:"hold,omitempty"`
}

// StepPause is a rollout step's pause: a duration, or the word manual.
type StepPause struct {
	Duration
	Manual bool
}

// PauseManual is the pause of a step that waits for a decision.
const PauseManual = "manual"

func (p *StepPause) decodeScalar(s string) error {
	if s == PauseManual {
		*p = StepPause{Manual: true}
		return nil
	}
	if err := p.Duration.decodeScalar(s); err != nil {
		return fmt.Errorf("must be a duration such as 30s or 5m, or %s (wait for tandem promote|abort), got %q", PauseManual, s)
	}
	p.Manual = false
	return nil
}

func (p StepPause) String() string {
	if p.Manual {
		return PauseManual
	}
	return p.Duration.String()
}

// MarshalText prints manual or the duration.
func (p StepPause) MarshalText() ([]byte, error) { return []byte(p.String()), nil }

// Ramp is a linear warm-up: the target's share rises from From to 100
// percent in Steps equal rises, one every Duration/Steps.
type Ramp struct {
	Duration Duration `yaml:"duration" json:"duration"`
	// Steps bounds the weight changes: one per binding per step (two where
	// the raise and the lower of a step both change a weight, once).
	Steps int `yaml:"steps" json:"steps"`
	// From is the share the ramp starts from (exclusive), 0..99.
	From int `yaml:"from" json:"from,omitempty"`
}

// DefaultRampSteps is the number of rises of a ramp that does not say.
const DefaultRampSteps = 10

// MaxRolloutSteps bounds the steps of a rollout (and so its API calls).
const MaxRolloutSteps = 100

// defaultRollout fills the ramp's step count.
func (s *Service) defaultRollout() {
	if r := s.Rollout; r != nil && r.Ramp != nil {
		setDefault(&r.Ramp.Steps, DefaultRampSteps)
	}
}

// validateRollout checks rollout.steps and rollout.ramp.
func (s *Service) validateRollout(bad func(path, format string, args ...any)) {
	r := s.Rollout
	if r == nil {
		return
	}
	switch {
	case len(r.Steps) > 0 && r.Ramp != nil:
		bad("rollout.ramp", "must not be set together with rollout.steps: choose weight steps or a ramp")
		return
	case len(r.Steps) == 0 && r.Ramp == nil:
		bad("rollout", "must set steps or ramp")
		return
	}
	if len(s.Traffic) == 0 {
		bad("rollout", "needs a traffic binding: shares are load-balancer weights, and a registry alone cannot split traffic")
	}
	if len(r.Steps) > MaxRolloutSteps {
		bad("rollout.steps", "has %d steps; at most %d", len(r.Steps), MaxRolloutSteps)
	}
	prev := 0
	for i, st := range r.Steps {
		p := "rollout.steps[" + strconv.Itoa(i) + "]"
		switch {
		case st.Traffic < 1 || st.Traffic > 100:
			bad(p+".traffic", "must be a percentage 1..100, got %d", st.Traffic)
		case st.Traffic <= prev:
			bad(p+".traffic", "must be more than the step before (%d): steps only move traffic towards the target", prev)
		default:
			prev = st.Traffic
		}
		switch {
		case st.Traffic == 100 && st.Pause.Manual:
			bad(p+".pause", "must not be manual on the 100 percent step: it ends the shift; to wait for a decision before any traffic moves, use gates.approval")
		case st.Traffic == 100 && (st.Pause.Duration > 0 || st.Hold > 0):
			bad(p, "the 100 percent step ends the shift and takes no pause or hold: verify.window watches the target after it")
		}
	}
	if m := r.Ramp; m != nil {
		if m.Duration < Duration(time.Second) {
			bad("rollout.ramp.duration", "must be at least 1s, got %s", m.Duration)
		}
		if m.From < 0 || m.From > 99 {
			bad("rollout.ramp.from", "must be a percentage 0..99, got %d", m.From)
		} else if m.Steps < 1 || m.Steps > 100-m.From {
			bad("rollout.ramp.steps", "must be 1..%d (each step raises the share by at least 1 percent), got %d", 100-m.From, m.Steps)
		}
	}
}

// Plan lists the rollout's steps in order, ending with 100 percent: the
// listed steps (with 100 added when missing), or the ramp's rises.
func (r *Rollout) Plan() []RolloutStep {
	if r == nil {
		return nil
	}
	if m := r.Ramp; m != nil {
		n := max(m.Steps, 1)
		pause := Duration(m.Duration.D() / time.Duration(n))
		out := make([]RolloutStep, n)
		for i := range n {
			out[i] = RolloutStep{Traffic: m.From + (100-m.From)*(i+1)/n, Pause: StepPause{Duration: pause}}
		}
		out[n-1].Pause = StepPause{}
		return out
	}
	out := append([]RolloutStep(nil), r.Steps...)
	if len(out) == 0 || out[len(out)-1].Traffic != 100 {
		out = append(out, RolloutStep{Traffic: 100})
	}
	return out
}
