package memory_test

import (
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/providers/providertest"
	"github.com/tandemhq/tandem/spec"
)

type harness struct {
	w *memory.World
	n atomic.Int64
}

func (h *harness) Provider(*testing.T) providers.LoadBalancer { return h.w.LoadBalancer() }

func (h *harness) Create(_ *testing.T, servers []providertest.Server) spec.Binding {
	b := spec.Binding{ALB: "mem", ServerGroup: fmt.Sprintf("sg-%d", h.n.Add(1)), Weight: 100}
	var bes []providers.Backend
	for _, s := range servers {
		bes = append(bes, providers.Backend{ID: s.ID, IP: s.IP, Port: s.Port, Weight: s.Weight, Health: providers.HealthHealthy, Sessions: -1})
	}
	h.w.AddBackends(b, bes)
	return b
}

func (h *harness) Weights(t *testing.T, b spec.Binding) map[string]int {
	got, err := h.w.LoadBalancer().Backends(t.Context(), b)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int{}
	for _, be := range got {
		out[be.ID] = be.Weight
	}
	return out
}

func (h *harness) LowWater(_ *testing.T, b spec.Binding) int { return h.w.LowWater(b) }

func (h *harness) SetHealthy(_ *testing.T, b spec.Binding, id string, healthy bool) {
	hl := providers.HealthHealthy
	if !healthy {
		hl = providers.HealthUnhealthy
	}
	h.w.SetBackendHealth(b, id, hl)
}

func (h *harness) Batch() int { return 0 }

func TestMemoryLoadBalancerConformance(t *testing.T) {
	providertest.TestLoadBalancer(t, &harness{w: memory.New()})
}
