package main

import (
	"context"

	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// simulatedVersion is what the simulated fleet runs before the plan.
const simulatedVersion = "current"

// simulatePlans previews every service against an in-memory copy of its
// fleet in which the group that is not desired serves simulatedVersion.
func simulatePlans(set *spec.Set) []reconcile.Preview {
	world := memory.New()
	for _, svc := range set.Services {
		world.AddService(svc, svc.Active.Other(), simulatedVersion, simulatedVersion)
	}
	ps := world.Set()
	all := reconcile.Needs{Probe: map[spec.Group]bool{spec.GroupA: true, spec.GroupB: true}}
	var out []reconcile.Preview
	for _, svc := range set.Services {
		live, err := reconcile.Observe(context.Background(), ps, svc, all)
		if err != nil {
			out = append(out, reconcile.Preview{Service: svc.Name, Source: svc.Source, Stalled: err.Error()})
			continue
		}
		pv := reconcile.PreviewTransition(reconcile.Input{Service: svc, Live: live, Now: world.Clock().Now(),
			State: reconcile.State{Service: svc.Name}})
		pv.Assumes = append([]string{"simulated live state: group " + string(svc.Active.Other()) + " serves version " + simulatedVersion}, pv.Assumes...)
		out = append(out, pv)
	}
	return out
}
