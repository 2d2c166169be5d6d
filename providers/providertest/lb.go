// Package providertest holds conformance suites that every provider of a
// kind must pass, whatever system stands behind it: a real one, an
// emulator or memory.
package providertest

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Server is one backend server a harness puts in a new server group.
type Server struct {
	ID     string
	IP     string
	Port   int // ignored where the group has no ports (SLB default server group)
	Weight int
}

// Fleet returns n servers of group A at weight 100 and n of group B at
// weight 0 (ids i-aNNN and i-bNNN, interleaved), and the changes that move
// all weight to B and back to A.
func Fleet(n int) (servers []Server, toB, toA []providers.WeightChange) {
	for i := range n {
		a, b := fmt.Sprintf("i-a%03d", i), fmt.Sprintf("i-b%03d", i)
		servers = append(servers,
			Server{ID: a, IP: "10.0.1.1", Port: 8000 + i, Weight: 100},
			Server{ID: b, IP: "10.0.2.1", Port: 8000 + i, Weight: 0})
		toB = append(toB, providers.WeightChange{ID: a, Weight: 0}, providers.WeightChange{ID: b, Weight: 100})
		toA = append(toA, providers.WeightChange{ID: a, Weight: 100}, providers.WeightChange{ID: b, Weight: 0})
	}
	return servers, toB, toA
}

// LBHarness gives the load-balancer suite a provider and the means to set
// up and inspect the system behind it without going through the provider.
type LBHarness interface {
	// Provider returns the load balancer under test.
	Provider(t *testing.T) providers.LoadBalancer
	// Create makes a new server group holding servers, with health checks
	// on where the system has them, and returns its binding.
	Create(t *testing.T, servers []Server) spec.Binding
	// Weights reads the true weight of every server of b, by server id.
	Weights(t *testing.T, b spec.Binding) map[string]int
	// LowWater returns the lowest total weight b's servers have had at any
	// moment since Create: 0 means that, at some moment, no server could
	// receive a new request.
	LowWater(t *testing.T, b spec.Binding) int
	// SetHealthy makes the system's health check see a server as healthy
	// or not.
	SetHealthy(t *testing.T, b spec.Binding, id string, healthy bool)
	// Batch is the most servers one write may change; 0 means no limit.
	Batch() int
}

// FaultInjector is implemented by harnesses whose system can be made to
// fail transiently (throttling, busy, 5xx) for a share of calls.
type FaultInjector interface {
	// Faults makes about rate of the calls fail transiently until the test ends.
	Faults(t *testing.T, rate float64)
}

// WeightLimit is implemented by harnesses whose LB takes weights above 100
// (HAProxy: 256).
type WeightLimit interface {
	MaxWeight() int
}

// TestLoadBalancer runs the load-balancer conformance suite against h.
func TestLoadBalancer(t *testing.T, h LBHarness) {
	ctx := func(t *testing.T) context.Context {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		t.Cleanup(cancel)
		return ctx
	}
	groups := func(n, weightA, weightB int, prefix string) (a, b []Server, all []Server) {
		for i := range n {
			a = append(a, Server{ID: fmt.Sprintf("i-%sa%03d", prefix, i), IP: fmt.Sprintf("10.1.%d.%d", i/250, i%250+1), Port: 8080, Weight: weightA})
			b = append(b, Server{ID: fmt.Sprintf("i-%sb%03d", prefix, i), IP: fmt.Sprintf("10.2.%d.%d", i/250, i%250+1), Port: 8080, Weight: weightB})
		}
		return a, b, append(append([]Server{}, a...), b...)
	}
	swap := func(a, b []Server, weightA, weightB int) []providers.WeightChange {
		var out []providers.WeightChange
		for _, s := range a {
			out = append(out, providers.WeightChange{ID: s.ID, IP: s.IP, Port: s.Port, Weight: weightA})
		}
		for _, s := range b {
			out = append(out, providers.WeightChange{ID: s.ID, IP: s.IP, Port: s.Port, Weight: weightB})
		}
		return out
	}
	requireWeights := func(t *testing.T, b spec.Binding, servers []Server, weight int) {
		t.Helper()
		got := h.Weights(t, b)
		for _, s := range servers {
			require.Equal(t, weight, got[s.ID], "true weight of %s", s.ID)
		}
	}
	requireRefused := func(t *testing.T, b spec.Binding, changes []providers.WeightChange, reason string) {
		t.Helper()
		before := h.Weights(t, b)
		err := h.Provider(t).SetWeights(ctx(t), b, changes)
		require.Error(t, err)
		var perm *providers.PermanentError
		require.ErrorAs(t, err, &perm, "a change retrying cannot fix is permanent: %v", err)
		require.Equal(t, reason, perm.Reason)
		require.Equal(t, before, h.Weights(t, b), "a refused change changes nothing")
	}

	t.Run("Backends lists every server with its weight, address and no session count", func(t *testing.T) {
		_, _, all := groups(3, 100, 0, "ls")
		b := h.Create(t, all)
		got, err := h.Provider(t).Backends(ctx(t), b)
		require.NoError(t, err)
		require.Len(t, got, len(all))
		byID := map[string]providers.Backend{}
		for _, be := range got {
			byID[be.ID] = be
		}
		for _, s := range all {
			be, ok := byID[s.ID]
			require.True(t, ok, "server %s listed", s.ID)
			require.Equal(t, s.Weight, be.Weight)
			require.Equal(t, s.IP, be.IP)
			require.Contains(t, []int{s.Port, 0}, be.Port, "the server's port, or 0 where the group has no ports")
		}
	})

	t.Run("a swap that fits one write moves all weight from A to B", func(t *testing.T) {
		a, bs, all := groups(2, 100, 0, "sw")
		b := h.Create(t, all)
		require.NoError(t, h.Provider(t).SetWeights(ctx(t), b, swap(a, bs, 0, 100)))
		requireWeights(t, b, a, 0)
		requireWeights(t, b, bs, 100)
		require.Positive(t, h.LowWater(t, b), "some server kept weight at every moment")
	})

	t.Run("a swap beyond one batch raises B before lowering A and never leaves the group at 0", func(t *testing.T) {
		n := 60
		if h.Batch() > 0 {
			n = h.Batch() + h.Batch()/2 + 1 // A and B together need at least three writes
		}
		a, bs, all := groups(n, 100, 0, "big")
		b := h.Create(t, all)
		got, err := h.Provider(t).Backends(ctx(t), b)
		require.NoError(t, err)
		require.Len(t, got, len(all), "every page is read")
		require.NoError(t, h.Provider(t).SetWeights(ctx(t), b, swap(a, bs, 0, 100)))
		requireWeights(t, b, a, 0)
		requireWeights(t, b, bs, 100)
		require.Positive(t, h.LowWater(t, b))
	})

	t.Run("concurrent swaps on different bindings all take effect", func(t *testing.T) {
		type job struct {
			b     spec.Binding
			a, bs []Server
		}
		var jobs []job
		for i := range 4 {
			a, bs, all := groups(2, 100, 0, fmt.Sprintf("cc%d", i))
			jobs = append(jobs, job{h.Create(t, all), a, bs})
		}
		errs := make(chan error, len(jobs))
		for _, j := range jobs {
			go func() { errs <- h.Provider(t).SetWeights(ctx(t), j.b, swap(j.a, j.bs, 0, 100)) }()
		}
		for range jobs {
			require.NoError(t, <-errs)
		}
		for _, j := range jobs {
			requireWeights(t, j.b, j.a, 0)
			requireWeights(t, j.b, j.bs, 100)
		}
	})

	t.Run("servers not named keep their weight", func(t *testing.T) {
		a, bs, all := groups(2, 100, 0, "keep")
		b := h.Create(t, all)
		require.NoError(t, h.Provider(t).SetWeights(ctx(t), b, []providers.WeightChange{{ID: bs[0].ID, Weight: 50}}))
		got := h.Weights(t, b)
		require.Equal(t, 50, got[bs[0].ID])
		require.Equal(t, 0, got[bs[1].ID])
		require.Equal(t, 100, got[a[0].ID])
		require.Equal(t, 100, got[a[1].ID])
	})

	t.Run("setting weights that are already in place changes nothing and succeeds", func(t *testing.T) {
		a, bs, all := groups(2, 100, 0, "idem")
		b := h.Create(t, all)
		changes := swap(a, bs, 100, 0)
		require.NoError(t, h.Provider(t).SetWeights(ctx(t), b, changes))
		require.NoError(t, h.Provider(t).SetWeights(ctx(t), b, changes))
		requireWeights(t, b, a, 100)
		requireWeights(t, b, bs, 0)
	})

	t.Run("an unknown server is refused as NotFound and changes nothing", func(t *testing.T) {
		a, _, all := groups(2, 100, 0, "unk")
		b := h.Create(t, all)
		requireRefused(t, b, []providers.WeightChange{{ID: a[0].ID, Weight: 50}, {ID: "i-nosuchserver", Weight: 100}}, "NotFound")
	})

	t.Run("a weight outside the LB's range is refused as InvalidParameter and changes nothing", func(t *testing.T) {
		a, _, all := groups(2, 100, 0, "rng")
		b := h.Create(t, all)
		maxWeight := 100
		if m, ok := h.(WeightLimit); ok {
			maxWeight = m.MaxWeight()
		}
		requireRefused(t, b, []providers.WeightChange{{ID: a[0].ID, Weight: maxWeight + 1}}, "InvalidParameter")
		requireRefused(t, b, []providers.WeightChange{{ID: a[0].ID, Weight: -1}}, "InvalidParameter")
	})

	t.Run("a change that would leave every server at weight 0 is refused and changes nothing", func(t *testing.T) {
		a, bs, all := groups(2, 100, 0, "zero")
		b := h.Create(t, all)
		requireRefused(t, b, swap(a, bs, 0, 0), "WouldZeroAll")
	})

	t.Run("health reports a failing server unhealthy and a passing one healthy", func(t *testing.T) {
		a, _, all := groups(2, 100, 0, "hc")
		b := h.Create(t, all)
		h.SetHealthy(t, b, a[1].ID, false)
		got, err := h.Provider(t).Backends(ctx(t), b)
		require.NoError(t, err)
		health := map[string]providers.Health{}
		for _, be := range got {
			health[be.ID] = be.Health
		}
		require.Equal(t, providers.HealthHealthy, health[a[0].ID])
		require.Equal(t, providers.HealthUnhealthy, health[a[1].ID])
	})

	if f, ok := h.(FaultInjector); ok {
		t.Run("swaps converge under 20% transient failures", func(t *testing.T) {
			a, bs, all := groups(h.Batch()+1, 100, 0, "flt")
			b := h.Create(t, all)
			f.Faults(t, 0.2)
			for i := range 3 {
				wa, wb := 0, 100
				if i%2 == 1 {
					wa, wb = 100, 0
				}
				require.NoError(t, h.Provider(t).SetWeights(ctx(t), b, swap(a, bs, wa, wb)))
				requireWeights(t, b, a, wa)
				requireWeights(t, b, bs, wb)
				_, err := h.Provider(t).Backends(ctx(t), b)
				require.NoError(t, err)
			}
			require.Positive(t, h.LowWater(t, b))
		})
	}
}
