// Package emutest starts the Alibaba OpenAPI emulator for tests and gives
// the provider configuration that points the official SDK at it.
package emutest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/providertest"
	"github.com/tandemhq/tandem/spec"
)

// Test AccessKey of the emulators that Start runs, and the environment
// variables the provider configuration reads it from.
const (
	KeyID        = "LTAItandemtest"
	KeySecret    = "tandem-test-secret-0123456789"
	KeyIDEnv     = "TANDEM_TEST_ALIBABA_AK_ID"
	KeySecretEnv = "TANDEM_TEST_ALIBABA_AK_SECRET"
)

// Start serves an emulator on 127.0.0.1 until the test ends and returns it
// with a provider configuration (named name) that reaches it. opts.Keys is
// set to the test key, which Start also puts in the environment.
func Start(t testing.TB, name string, opts emulator.Options) (*emulator.Emulator, spec.AlibabaProvider) {
	t.Helper()
	opts.Keys = []emulator.Key{{ID: KeyID, Secret: KeySecret}}
	e := emulator.New(opts)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Setenv(KeyIDEnv, KeyID)
	t.Setenv(KeySecretEnv, KeySecret)
	return e, spec.AlibabaProvider{
		Name:               name,
		Region:             "cn-hangzhou",
		Endpoint:           strings.TrimPrefix(srv.URL, "http://"),
		Protocol:           "http",
		AccessKeyIDEnv:     KeyIDEnv,
		AccessKeySecretEnv: KeySecretEnv,
		SignatureVersion:   "v3",
		ConnectTimeout:     spec.Duration(2 * time.Second),
		ReadTimeout:        spec.Duration(5 * time.Second),
		JobTimeout:         spec.Duration(30 * time.Second),
		RetryTimeout:       spec.Duration(30 * time.Second),
	}
}

// Overlap serves e on another loopback server that holds every call of
// action first until a call of action second has arrived, and returns cfg
// pointed at it with a function that reports whether every call of first
// met one. A provider that makes the two calls one after the other holds
// first for 2 s (less than the read timeout of Start's configuration),
// then it goes on: overlapped reports false.
func Overlap(t testing.TB, e *emulator.Emulator, cfg spec.AlibabaProvider, first, second string) (spec.AlibabaProvider, func() bool) {
	t.Helper()
	arrived := make(chan struct{})
	var (
		once   sync.Once
		missed atomic.Bool
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Header.Get("x-acs-action") {
		case second:
			once.Do(func() { close(arrived) })
		case first:
			wait := time.NewTimer(2 * time.Second)
			select {
			case <-arrived:
			case <-wait.C:
				missed.Store(true)
			}
			wait.Stop()
		}
		e.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	cfg.Endpoint = strings.TrimPrefix(srv.URL, "http://")
	return cfg, func() bool { return !missed.Load() }
}

// Harness implements the parts of providertest.LBHarness that read and
// steer the emulator behind a provider's back; Target maps a binding to
// the emulated group it names.
type Harness struct {
	E      *emulator.Emulator
	Target func(spec.Binding) emulator.Target
}

// Weights reads the true weight of every server of b, by server id.
func (h Harness) Weights(t *testing.T, b spec.Binding) map[string]int {
	servers, err := h.E.Servers(h.Target(b))
	require.NoError(t, err)
	out := map[string]int{}
	for _, s := range servers {
		out[s.ID] = s.Weight
	}
	return out
}

// LowWater returns the lowest total weight b's group ever had.
func (h Harness) LowWater(t *testing.T, b spec.Binding) int {
	low, err := h.E.LowWater(h.Target(b))
	require.NoError(t, err)
	return low
}

// SetHealthy makes the emulated health check pass or fail for a server.
func (h Harness) SetHealthy(t *testing.T, b spec.Binding, id string, healthy bool) {
	require.NoError(t, h.E.SetHealthy(h.Target(b), id, healthy))
}

// Faults makes about rate of the calls fail, half throttled, half 503.
func (h Harness) Faults(t *testing.T, rate float64) {
	h.E.SetFaults(emulator.Faults{ThrottleRate: rate / 2, ErrorRate: rate / 2})
	t.Cleanup(func() { h.E.SetFaults(emulator.Faults{}) })
}

// Fleet is providertest.Fleet as emulated servers.
func Fleet(n int) (servers []*emulator.Server, toB, toA []providers.WeightChange) {
	list, toB, toA := providertest.Fleet(n)
	for _, s := range list {
		servers = append(servers, &emulator.Server{ID: s.ID, IP: s.IP, Port: s.Port, Weight: s.Weight})
	}
	return servers, toB, toA
}

// Benchmark measures Backends and back-and-forth swaps of binding, and
// reports the API calls each takes (write: the action that sets weights).
func Benchmark(b *testing.B, e *emulator.Emulator, p providers.LoadBalancer, binding spec.Binding, toB, toA []providers.WeightChange, write string) {
	count := func() int {
		n := 0
		for _, c := range e.Calls() {
			n += c
		}
		return n
	}
	b.Run("Backends", func(b *testing.B) {
		e.ResetCalls()
		for b.Loop() {
			_, err := p.Backends(context.Background(), binding)
			require.NoError(b, err)
		}
		b.ReportMetric(float64(count())/float64(b.N), "calls/op")
	})
	b.Run("SetWeights swap", func(b *testing.B) {
		e.ResetCalls()
		i := 0
		for b.Loop() {
			changes := toB
			if i++; i%2 == 0 {
				changes = toA
			}
			require.NoError(b, p.SetWeights(context.Background(), binding, changes))
		}
		b.ReportMetric(float64(count())/float64(b.N), "calls/op")
		b.ReportMetric(float64(e.Calls()[write])/float64(b.N), "writes/op")
	})
}
