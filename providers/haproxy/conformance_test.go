package haproxy_test

import (
	"context"
	"encoding/csv"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/providertest"
	"github.com/tandemhq/tandem/spec"
)

// poolSize is how many empty backends the harness declares; every Create
// fills one with dynamic servers (`add server`, HAProxy 2.4+).
const poolSize = 16

// harness runs the shared LB conformance suite against a real HAProxy. The
// servers of a binding get made-up addresses (10.x:8080, never contacted)
// and health checks on their own loopback port (`check addr 127.0.0.1 port
// P`), answered 200 or 503 as SetHealthy says. The provider talks to
// HAProxy through an interposed socket that replays every command on a
// model of the backends' effective weights (user weight, 0 while drained),
// from which LowWater is read.
type harness struct {
	h      *haproxytest.HAProxy
	socket string // the interposed socket the provider uses
	next   atomic.Int32
	checks *http.Server

	mu      sync.Mutex
	healthy map[int]bool                       // health-check port -> answer 200
	weights map[string]map[string]*modelServer // backend -> server -> model
	low     map[string]int                     // backend -> lowest total weight seen
	ports   map[string]map[string]int          // backend -> server -> health-check port
}

type modelServer struct {
	weight  int
	drained bool
}

func newHarness(t *testing.T) *harness {
	backends := make([]haproxytest.Backend, poolSize)
	for i := range backends {
		backends[i].Name = fmt.Sprintf("pool%d", i)
	}
	h := &harness{
		h:       haproxytest.Start(t, haproxytest.Config{Backends: backends}),
		healthy: map[int]bool{},
		weights: map[string]map[string]*modelServer{},
		low:     map[string]int{},
		ports:   map[string]map[string]int{},
	}
	h.checks = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		port := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr).Port
		h.mu.Lock()
		ok := h.healthy[port]
		h.mu.Unlock()
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})}
	t.Cleanup(func() { _ = h.checks.Close() })
	h.socket = interpose(t, h.h.Socket, h.observe)
	return h
}

func (h *harness) Provider(t *testing.T) providers.LoadBalancer { return provider(t, h.socket) }

func (h *harness) Batch() int { return 0 }

func (h *harness) MaxWeight() int { return 256 }

func (h *harness) Create(t *testing.T, servers []providertest.Server) spec.Binding {
	be := fmt.Sprintf("pool%d", h.next.Add(1)-1)
	require.Less(t, int(h.next.Load()), poolSize+1, "the harness declares %d backends", poolSize)
	model := map[string]*modelServer{}
	ports := map[string]int{}
	total := 0
	for _, s := range servers {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		port := ln.Addr().(*net.TCPAddr).Port
		h.mu.Lock()
		h.healthy[port] = true
		h.mu.Unlock()
		go func() { _ = h.checks.Serve(ln) }()
		srv := be + "/" + s.ID
		for _, cmd := range []string{
			fmt.Sprintf("add server %s %s:%d weight %d check inter 200ms fall 2 rise 1 addr 127.0.0.1 port %d", srv, s.IP, s.Port, s.Weight, port),
			"enable health " + srv,
			"set server " + srv + " state ready", // dynamic servers start in maint
		} {
			reply := runtimeCommand(t, h.h.Socket, cmd)
			require.Contains(t, []string{"", "New server registered."}, reply, cmd)
		}
		model[s.ID] = &modelServer{weight: s.Weight}
		ports[s.ID] = port
		total += s.Weight
	}
	h.mu.Lock()
	h.weights[be], h.low[be], h.ports[be] = model, total, ports
	h.mu.Unlock()
	b := spec.Binding{HAProxy: "edge", Backend: be, Weight: 100}
	for _, s := range servers {
		h.waitCheck(t, b, s.ID, true)
	}
	return b
}

func (h *harness) Weights(t *testing.T, b spec.Binding) map[string]int {
	out := map[string]int{}
	for _, r := range showStat(t, h.h.Socket, b.Backend) {
		w, err := strconv.Atoi(r["uweight"])
		require.NoError(t, err)
		if strings.HasPrefix(r["status"], "DRAIN") || strings.HasPrefix(r["status"], "MAINT") {
			w = 0
		}
		out[r["svname"]] = w
	}
	return out
}

func (h *harness) LowWater(t *testing.T, b spec.Binding) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.low[b.Backend]
}

func (h *harness) SetHealthy(t *testing.T, b spec.Binding, id string, healthy bool) {
	h.mu.Lock()
	h.healthy[h.ports[b.Backend][id]] = healthy
	h.mu.Unlock()
	h.waitCheck(t, b, id, healthy)
}

// waitCheck waits until HAProxy's checks have found the server healthy
// (last check L7OK) or down.
func (h *harness) waitCheck(t *testing.T, b spec.Binding, id string, healthy bool) {
	require.Eventually(t, func() bool {
		for _, r := range showStat(t, h.h.Socket, b.Backend) {
			if r["svname"] == id {
				if healthy {
					return strings.TrimPrefix(r["check_status"], "* ") == "L7OK" && !strings.HasPrefix(r["status"], "DOWN")
				}
				return strings.HasPrefix(r["status"], "DOWN")
			}
		}
		return false
	}, 10*time.Second, 20*time.Millisecond, "server %s/%s never became healthy=%v", b.Backend, id, healthy)
}

// observe replays a successful weight or state command on the model.
func (h *harness) observe(cmd, reply string) {
	f := strings.Fields(cmd)
	if strings.TrimSpace(reply) != "" || len(f) != 5 || f[0] != "set" || f[1] != "server" {
		return
	}
	be, srv, _ := strings.Cut(f[2], "/")
	h.mu.Lock()
	defer h.mu.Unlock()
	s := h.weights[be][srv]
	if s == nil {
		return
	}
	switch {
	case f[3] == "weight":
		s.weight, _ = strconv.Atoi(f[4])
	case f[3] == "state":
		s.drained = f[4] != "ready"
	}
	total := 0
	for _, s := range h.weights[be] {
		if !s.drained {
			total += s.weight
		}
	}
	h.low[be] = min(h.low[be], total)
}

// showStat reads the server rows of one backend, straight from HAProxy.
func showStat(t *testing.T, socket, backend string) []map[string]string {
	reply := runtimeCommand(t, socket, "show stat -1 4 -1")
	records, err := csv.NewReader(strings.NewReader(strings.TrimPrefix(reply, "# "))).ReadAll()
	require.NoError(t, err)
	var rows []map[string]string
	for _, rec := range records[1:] {
		r := map[string]string{}
		for i, v := range rec {
			r[records[0][i]] = v
		}
		if r["pxname"] == backend {
			rows = append(rows, r)
		}
	}
	return rows
}

func TestConformance(t *testing.T) {
	providertest.TestLoadBalancer(t, newHarness(t))
}

// The harness itself: its model must agree with HAProxy.
func TestConformanceHarnessModelAgreesWithHAProxy(t *testing.T) {
	h := newHarness(t)
	b := h.Create(t, []providertest.Server{{ID: "a", IP: "10.9.0.1", Port: 8080, Weight: 100}, {ID: "b", IP: "10.9.0.2", Port: 8080, Weight: 0}})
	require.NoError(t, h.Provider(t).SetWeights(context.Background(), b, []providers.WeightChange{{ID: "b", Weight: 40}, {ID: "a", Weight: 0}}))
	h.mu.Lock()
	model := map[string]int{}
	for id, s := range h.weights[b.Backend] {
		if !s.drained {
			model[id] = s.weight
		} else {
			model[id] = 0
		}
	}
	h.mu.Unlock()
	require.Equal(t, map[string]int{"a": 0, "b": 40}, model)
	require.Equal(t, model, h.Weights(t, b))
	require.Equal(t, 40, h.LowWater(t, b), "totals 100, 140 (b raised), 40 (a drained)")
}
