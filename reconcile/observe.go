package reconcile

import (
	"context"
	"fmt"
	"sync"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Needs says which instance-level reads a pass requires beyond the load
// balancers and the registry, which are always read.
type Needs struct {
	Probe    map[spec.Group]bool
	Evidence map[spec.Group]bool
	// SlowStart: read the slow-start duration of bindings whose LB has one
	// (providers.SlowStarter), which the shift waits out.
	SlowStart bool
	// Analysis: run the analysis gate's queries about this group
	// (AnalysisDue); nil: no measurement is due.
	Analysis *spec.AnalysisVars
}

// NeedsFor decides what to probe: the target of a transition (and its source
// in the phases where the source may become the target again), both groups
// when idle and not known to be in sync, and nothing in a quiet steady
// state, so that an idle pass over many services costs only list calls.
func NeedsFor(svc *spec.Service, st State) Needs {
	n := Needs{Probe: map[spec.Group]bool{}, Evidence: map[spec.Group]bool{}}
	if t := st.Transition; t != nil {
		n.Probe[t.To] = true
		// While a rollout holds a step both groups carry traffic, and both
		// must stay healthy (rollout.go).
		if t.Phase == PhaseShift && t.Rollout != nil {
			n.Probe[t.From] = true
		}
		if t.Phase == PhaseDrain && svc.Drain.Metrics != "" {
			n.Evidence[t.From] = true
		}
		n.SlowStart = t.Phase.index() >= PhaseShift.index()
		return n
	}
	if a := st.Applied; a != nil && a.Active == svc.Active && a.Version == svc.Version {
		return n
	}
	n.Probe[spec.GroupA], n.Probe[spec.GroupB] = true, true
	return n
}

// Observe reads the live state of one service. Every LB and registry read
// must succeed; probes and evidence reads never fail the observation (a
// failed probe is an unhealthy instance, unread evidence is unknown).
func Observe(ctx context.Context, ps *providers.Set, svc *spec.Service, needs Needs) (*Live, error) {
	live := &Live{Probes: map[string]providers.ProbeResult{}, Evidence: map[string]*providers.Evidence{}}
	for _, b := range svc.Traffic {
		lb, ok := ps.LoadBalancers[providers.LBKey(b.Kind(), b.Provider())]
		if !ok {
			return nil, Stalled("ProviderMissing", "%s: no %s provider named %q is configured", b.Key(), b.Kind(), b.Provider())
		}
		backends, err := lb.Backends(ctx, b)
		if err != nil {
			return nil, fmt.Errorf("observing %s: %w", b.Key(), err)
		}
		bl := BindingLive{Binding: b, Backends: backends}
		if ss, ok := lb.(providers.SlowStarter); ok && needs.SlowStart {
			if bl.SlowStart, err = ss.SlowStart(ctx, b); err != nil {
				return nil, fmt.Errorf("observing %s: %w", b.Key(), err)
			}
		}
		live.Bindings = append(live.Bindings, bl)
	}
	if svc.Registry != nil && svc.Registry.Nacos != nil {
		ref := *svc.Registry.Nacos
		reg, ok := ps.Registries[ref.Provider]
		if !ok {
			return nil, Stalled("ProviderMissing", "%s: no nacos provider named %q is configured", ref, ref.Provider)
		}
		var expect []providers.Addr
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range svc.Groups.Get(g) {
				expect = append(expect, providers.Addr{IP: in.IP, Port: in.Port})
			}
		}
		rv, err := providers.ReadRegistry(ctx, reg, ref, expect)
		if err != nil {
			return nil, fmt.Errorf("observing %s: %w", ref, err)
		}
		live.Registry = &rv
	}
	var (
		wg sync.WaitGroup
		mu sync.Mutex
	)
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(g) {
			if needs.Probe[g] {
				wg.Go(func() {
					r := ps.Instances.Probe(ctx, svc, in)
					mu.Lock()
					live.Probes[in.Addr()] = r
					mu.Unlock()
				})
			}
			if needs.Evidence[g] {
				wg.Go(func() {
					e, err := ps.Instances.Evidence(ctx, svc, in)
					mu.Lock()
					if err == nil {
						live.Evidence[in.Addr()] = &e
					} else {
						live.Evidence[in.Addr()] = nil
						if live.EvidenceErrors == nil {
							live.EvidenceErrors = map[string]string{}
						}
						live.EvidenceErrors[in.Addr()] = err.Error()
					}
					mu.Unlock()
				})
			}
		}
	}
	if needs.Analysis != nil && svc.Gates.Analysis != nil {
		wg.Go(func() { live.Analysis = measure(ctx, ps, svc, *needs.Analysis) })
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("observing %s: %w", svc.Name, err)
	}
	return live, nil
}
