package server

import (
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Metrics is Tandem's standard set, registered on the caller's registerer
// (never the global one). The daemon updates it: the fields directly, or
// through the Observe methods and Record.
type Metrics struct {
	ReconcileTotal          *prometheus.CounterVec   // service, result (success|waiting|stalled|transient)
	ReconcileDuration       prometheus.Histogram     // seconds per pass
	TransitionsTotal        *prometheus.CounterVec   // service, kind, outcome (succeeded|aborted|swapped-back)
	PhaseDuration           *prometheus.HistogramVec // phase
	ServiceReady            *prometheus.GaugeVec     // service: 1 when Ready
	ServiceStalled          *prometheus.GaugeVec     // service: 1 when Stalled (a person must act)
	ServiceDrift            *prometheus.GaugeVec     // service: number of drift findings
	BindingWeight           *prometheus.GaugeVec     // service, binding, group: summed weight of the group's instances
	GitRevisionInfo         *prometheus.GaugeVec     // revision: 1 for the revision in force
	GitLastFetchSuccess     prometheus.Gauge         // unix seconds of the last successful fetch
	ProviderRequests        *prometheus.CounterVec   // provider, op, result (success|error)
	ProviderRequestDuration *prometheus.HistogramVec // provider, op

	mu       sync.Mutex
	kinds    map[string]reconcile.Kind // service -> kind of its last transition in progress
	bindings map[string][]string       // service -> binding keys of its BindingWeight series
}

// NewMetrics creates the metrics and registers them on reg. It panics if
// they are already registered there (a wiring mistake).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		ReconcileTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_reconcile_total", Help: "Reconcile passes by service and result (success, waiting, stalled, transient).",
		}, []string{"service", "result"}),
		ReconcileDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tandem_reconcile_duration_seconds", Help: "Duration of one reconcile pass (observe, plan, apply at most one step).",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900},
		}),
		TransitionsTotal: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_transitions_total", Help: "Finished transitions by service, kind (release, heal, abort, swap-back) and outcome (succeeded, aborted, swapped-back).",
		}, []string{"service", "kind", "outcome"}),
		PhaseDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tandem_phase_duration_seconds", Help: "Duration of completed transition phases.",
			Buckets: []float64{0.1, 0.5, 1, 5, 10, 30, 60, 120, 300, 600, 1800, 3600},
		}, []string{"phase"}),
		ServiceReady: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_service_ready", Help: "1 when the service's Ready condition is true, else 0.",
		}, []string{"service"}),
		ServiceStalled: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_service_stalled", Help: "1 when the service's Stalled condition is true (a person must act: see its status), else 0.",
		}, []string{"service"}),
		ServiceDrift: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_service_drift", Help: "Number of differences between live and desired state found by the last pass (0: none).",
		}, []string{"service"}),
		BindingWeight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_binding_weight", Help: "Summed live weight of a group's instances on a load-balancer binding.",
		}, []string{"service", "binding", "group"}),
		GitRevisionInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "tandem_git_revision_info", Help: "The Git revision of the desired state in force (value 1).",
		}, []string{"revision"}),
		GitLastFetchSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tandem_git_last_fetch_success_timestamp_seconds", Help: "Unix time of the last successful fetch of the desired-state repository.",
		}),
		ProviderRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tandem_provider_requests_total", Help: "Requests to provider APIs by provider, operation and result (success, error).",
		}, []string{"provider", "op", "result"}),
		ProviderRequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "tandem_provider_request_duration_seconds", Help: "Latency of provider API requests.",
			Buckets: []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30},
		}, []string{"provider", "op"}),
		kinds:    map[string]reconcile.Kind{},
		bindings: map[string][]string{},
	}
	reg.MustRegister(m.ReconcileTotal, m.ReconcileDuration, m.TransitionsTotal, m.PhaseDuration, m.ServiceReady, m.ServiceStalled,
		m.ServiceDrift, m.BindingWeight, m.GitRevisionInfo, m.GitLastFetchSuccess, m.ProviderRequests, m.ProviderRequestDuration)
	return m
}

// ObservePass counts a finished pass. Its signature is reconcile's
// PassObserver, so that it can be wired as the worker's OnPass.
func (m *Metrics) ObservePass(service string, class reconcile.Class, took time.Duration) {
	result := string(class)
	if class == reconcile.ClassNone {
		result = "success"
	}
	m.ReconcileTotal.WithLabelValues(service, result).Inc()
	m.ReconcileDuration.Observe(took.Seconds())
}

// ObserveStatus sets the gauges of a service from its last status, and
// remembers the kind of its transition in progress for Record.
func (m *Metrics) ObserveStatus(s reconcile.Status) {
	ready := 0.0
	if s.Ready() {
		ready = 1
	}
	m.ServiceReady.WithLabelValues(s.Service).Set(ready)
	stalled := 0.0
	for _, c := range s.Conditions {
		if c.Type == reconcile.ConditionStalled && c.Status {
			stalled = 1
		}
	}
	m.ServiceStalled.WithLabelValues(s.Service).Set(stalled)
	m.ServiceDrift.WithLabelValues(s.Service).Set(float64(len(s.Drift)))
	keys := make([]string, 0, len(s.Bindings))
	for _, bl := range s.Bindings {
		key := bl.Binding.Key()
		keys = append(keys, key)
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			sum := 0
			for _, w := range groupWeights(s.Groups, bl, g) {
				sum += max(w, 0)
			}
			m.BindingWeight.WithLabelValues(s.Service, key, string(g)).Set(float64(sum))
		}
	}
	// Only the service's own series that its bindings no longer name go:
	// deleting by partial match would scan every service's series, on every
	// pass of every service.
	m.mu.Lock()
	old := m.bindings[s.Service]
	m.bindings[s.Service] = keys
	if s.Transition != nil {
		m.kinds[s.Service] = s.Transition.Kind
	}
	m.mu.Unlock()
	m.deleteBindings(s.Service, old, keys)
}

// Forget drops the gauges of a service that left the desired state.
func (m *Metrics) Forget(service string) {
	m.ServiceReady.DeleteLabelValues(service)
	m.ServiceStalled.DeleteLabelValues(service)
	m.ServiceDrift.DeleteLabelValues(service)
	m.mu.Lock()
	old := m.bindings[service]
	delete(m.bindings, service)
	delete(m.kinds, service)
	m.mu.Unlock()
	m.deleteBindings(service, old, nil)
}

// deleteBindings deletes the BindingWeight series of service for the
// binding keys in old that are not in keep.
func (m *Metrics) deleteBindings(service string, old, keep []string) {
	for _, key := range old {
		if slices.Contains(keep, key) {
			continue
		}
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			m.BindingWeight.DeleteLabelValues(service, key, string(g))
		}
	}
}

// SetRevision marks the revision of the desired state in force.
func (m *Metrics) SetRevision(hash string) {
	m.GitRevisionInfo.Reset()
	m.GitRevisionInfo.WithLabelValues(hash).Set(1)
}

// ObserveProviderRequest counts one provider API request.
func (m *Metrics) ObserveProviderRequest(provider, op string, took time.Duration, err error) {
	result := "success"
	if err != nil {
		result = "error"
	}
	m.ProviderRequests.WithLabelValues(provider, op, result).Inc()
	m.ProviderRequestDuration.WithLabelValues(provider, op).Observe(took.Seconds())
}

// Record implements reconcile.Recorder: completed phases feed the phase
// histogram, finished transitions the transitions counter. The kind of a
// transition is the one the service's last status showed (ObserveStatus);
// "unknown" when no status showed one.
func (m *Metrics) Record(e reconcile.Event) {
	outcome := ""
	switch e.Reason {
	case reconcile.ReasonPhaseCompleted:
		m.PhaseDuration.WithLabelValues(string(e.Phase)).Observe(e.Duration.Seconds())
		return
	case reconcile.ReasonTransitionSucceeded:
		outcome = "succeeded"
	case reconcile.ReasonTransitionAborted:
		outcome = "aborted"
	case reconcile.ReasonSwappedBack:
		outcome = "swapped-back"
	default:
		return
	}
	m.mu.Lock()
	kind, ok := m.kinds[e.Service]
	m.mu.Unlock()
	if !ok {
		kind = "unknown"
	}
	m.TransitionsTotal.WithLabelValues(e.Service, string(kind), outcome).Inc()
}

var _ reconcile.Recorder = (*Metrics)(nil)

// groupWeights returns the weight of each instance of group g on a binding,
// in the group's order; -1 for an instance that is not a backend of it.
func groupWeights(groups spec.Groups, bl reconcile.BindingLive, g spec.Group) []int {
	insts := groups.Get(g)
	out := make([]int, len(insts))
	for i, in := range insts {
		out[i] = -1
		for _, b := range bl.Backends {
			if b.ID == in.ID {
				out[i] = b.Weight
				break
			}
		}
	}
	return out
}
