// Package providers holds the small interfaces through which Tandem reads
// and changes the systems it coordinates, and the neutral types they speak.
// It holds no implementation: each system has its own package (alb, slb,
// nacos, haproxy, deploy, probe), load-balancer kinds register their
// constructors here (kinds.go), and providers/all is the only code that
// names the packages. reconcile depends on this package only.
//
// Reading is split from writing. Observers must be side-effect free and
// cheap enough to call on every pass; appliers perform exactly one typed
// change, are idempotent ("ensure"), and return only when the change is in
// effect as far as the system can tell (read back, job finished, pushed).
package providers

import (
	"context"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Health of one backend as a load balancer or probe reports it.
type Health string

const (
	HealthUnknown   Health = "unknown" // the LB does not report health for this backend
	HealthHealthy   Health = "healthy"
	HealthUnhealthy Health = "unhealthy"
	// HealthInitial: the LB checks this backend but has not yet seen it pass
	// its healthy threshold (ALB "Initial", HAProxy check "INI" or a check
	// that has not yet succeeded). The LB may not route to it yet.
	HealthInitial Health = "initial"
)

// Reported says whether the LB reports health for the backend at all.
func (h Health) Reported() bool { return h != HealthUnknown && h != "" }

// Backend is one server of a load-balancer binding, as the LB reports it.
type Backend struct {
	ID     string `json:"id"` // LB server id (ECS/ENI id) or HAProxy server name
	IP     string `json:"ip,omitempty"`
	Port   int    `json:"port,omitempty"`
	Weight int    `json:"weight"` // effective weight: 0 when the LB sends it no new traffic (e.g. HAProxy drain)
	Health Health `json:"health"`
	// Sessions is the number of established sessions the LB still routes to
	// this backend (HAProxy scur), used as drain evidence; -1 when unknown.
	Sessions int    `json:"sessions"`
	Status   string `json:"status,omitempty"` // the LB's own word for its state, for display ("Available", "UP", "DRAIN")
	// Reason is the LB's own account of why the backend is not healthy
	// (ALB ReasonCode "CONNECT_TIMEOUT", SLB "abnormal", HAProxy check_status
	// "L4CON"), "" when healthy or unknown. When the binding's group is used
	// by several listeners or forwarding rules, Health is the worst of them
	// and Reason names where it was seen.
	Reason string `json:"reason,omitempty"`
}

// WeightChange sets the weight of one backend of a binding.
type WeightChange struct {
	ID     string `json:"id"`
	IP     string `json:"ip,omitempty"`
	Port   int    `json:"port,omitempty"`
	Weight int    `json:"weight"`
}

// TrafficObserver reads the backends of one binding.
type TrafficObserver interface {
	Backends(ctx context.Context, b spec.Binding) ([]Backend, error)
}

// TrafficApplier changes weights on one binding.
//
// SetWeights must never leave the binding with all of its backends at
// weight 0, not even between API calls: when the change does not fit into
// one call, the calls that raise weights go first. It returns when the
// load balancer has applied the change (ALB: the async job finished) and a
// read-back shows it; otherwise it returns an error. Backends not named in
// changes keep their weight.
type TrafficApplier interface {
	SetWeights(ctx context.Context, b spec.Binding, changes []WeightChange) error
}

// LoadBalancer is one provider instance of a load-balancer kind (alb, slb,
// haproxy, or a registered one: spec.LBKind).
type LoadBalancer interface {
	TrafficObserver
	TrafficApplier
}

// SlowStarter is implemented by load balancers whose server groups can
// ramp a server's share of new requests up over a period after it becomes
// healthy (ALB slow start). SlowStart returns that period for the binding's
// group, 0 when slow start is off.
type SlowStarter interface {
	SlowStart(ctx context.Context, b spec.Binding) (time.Duration, error)
}

// SessionCloser is implemented by load balancers that can close the sessions
// still open on backends (HAProxy: shutdown sessions). Used only when a
// drain reaches its ceiling; it returns how many sessions were closed.
type SessionCloser interface {
	CloseSessions(ctx context.Context, b spec.Binding, ids []string) (int, error)
}

// RegistryInstance is one registration of a service in the registry, as the
// operator sees it (disabled instances included).
type RegistryInstance struct {
	IP        string            `json:"ip"`
	Port      int               `json:"port"`
	Cluster   string            `json:"cluster,omitempty"`
	Enabled   bool              `json:"enabled"`
	Healthy   bool              `json:"healthy"`
	Weight    float64           `json:"weight"`
	Ephemeral bool              `json:"ephemeral"`
	Metadata  map[string]string `json:"metadata,omitempty"`
}

// Addr identifies a registry instance.
type Addr struct {
	IP   string `json:"ip"`
	Port int    `json:"port"`
}

// RegistryView is what the registry says about one service.
type RegistryView struct {
	// Instances is the operator view: every registration, enabled or not.
	Instances []RegistryInstance `json:"instances"`
	// Visible is what a consumer's subscription currently receives (enabled,
	// healthy instances, as pushed to Tandem's own subscriber). Nil when the
	// provider has no subscription for this service yet.
	Visible []Addr `json:"visible"`
	// PushDelay is how long the registry waits after a change before it
	// pushes it to subscribers, when the provider knows it (0: unknown).
	// The drain counts drain.propagation from the disable itself when it is
	// known, and from when Tandem's subscription showed the disable when it
	// is not (docs/propagation.md).
	PushDelay time.Duration `json:"pushDelay,omitempty"`
}

// RegistryObserver reads one service of a registry.
type RegistryObserver interface {
	Instances(ctx context.Context, ref spec.NacosRef) (RegistryView, error)
}

// ExpectingRegistryObserver is implemented by registries whose operator
// list can leave registered instances out (r-nacos lists only enabled
// ones): InstancesExpecting reads the service like Instances and also looks
// up each expected address the list lacks, so that a registered but
// disabled instance is in the view.
type ExpectingRegistryObserver interface {
	InstancesExpecting(ctx context.Context, ref spec.NacosRef, expect []Addr) (RegistryView, error)
}

// ReadRegistry reads one service of r, passing the addresses the desired
// state expects to registries that implement ExpectingRegistryObserver.
func ReadRegistry(ctx context.Context, r RegistryObserver, ref spec.NacosRef, expect []Addr) (RegistryView, error) {
	if e, ok := r.(ExpectingRegistryObserver); ok {
		return e.InstancesExpecting(ctx, ref, expect)
	}
	return r.Instances(ctx, ref)
}

// RegistryApplier takes instances in and out of consumers' view.
//
// SetEnabled sends the operator change for every address, always preserving
// each instance's current weight and writing no metadata of its own (the
// registry keeps showing what the apps register, so a version in the
// metadata stays readable across a redeploy), and returns when Tandem's own
// subscription shows the change. It refuses (ErrWouldDisableAll) a change
// that would leave the service with no enabled instance.
type RegistryApplier interface {
	SetEnabled(ctx context.Context, ref spec.NacosRef, addrs []Addr, enabled bool) error
}

// Registry is one provider instance of kind nacos.
type Registry interface {
	RegistryObserver
	RegistryApplier
}

// RegistryWatcher is implemented by registries that push changes. notify is
// called (from any goroutine, possibly often) when the service changes; it
// must not block. Watch returns when ctx ends.
type RegistryWatcher interface {
	Watch(ctx context.Context, ref spec.NacosRef, notify func()) error
}

// DeployRequest asks for a group to be brought to a version.
type DeployRequest struct {
	Service   string          `json:"service"`
	Group     spec.Group      `json:"group"`
	Version   string          `json:"version"`
	Instances []spec.Instance `json:"instances"`
	Revision  string          `json:"revision,omitempty"` // the Git revision that asked for it
}

// DeployResult is what a finished deploy reports.
type DeployResult struct {
	Output string `json:"output,omitempty"` // captured output, truncated, for the events log
}

// Deployer upgrades one group. It is only ever called for a group that
// carries no traffic; it returns when the deploy finished or failed.
type Deployer interface {
	Deploy(ctx context.Context, req DeployRequest) (DeployResult, error)
}

// ProbeResult is one instance's health and running version.
type ProbeResult struct {
	Healthy bool   `json:"healthy"`
	Version string `json:"version,omitempty"` // "" when the version is read from the registry or unknown
	Detail  string `json:"detail,omitempty"`  // why it is unhealthy
}

// Prober checks an instance's health (and version, when health.version.http is set).
type Prober interface {
	Probe(ctx context.Context, svc *spec.Service, in spec.Instance) ProbeResult
}

// Evidence is an instance's own account of the work it still has.
type Evidence struct {
	InFlight int `json:"inFlight"` // requests being served
	Sessions int `json:"sessions"` // open long-lived sessions (WebSockets)
}

// EvidenceReader reads drain evidence from an instance (drain.metrics).
type EvidenceReader interface {
	Evidence(ctx context.Context, svc *spec.Service, in spec.Instance) (Evidence, error)
}

// DrainSignaler asks an instance to close its long-lived sessions
// gracefully (drain.signal), e.g. WebSockets with 1001 Going Away.
type DrainSignaler interface {
	SignalDrain(ctx context.Context, svc *spec.Service, in spec.Instance) error
}

// Instances is everything Tandem asks of the service's own instances.
type Instances interface {
	Prober
	EvidenceReader
	DrainSignaler
}

// SmokeRequest asks for a service's gates.smoke to be run against the
// instances of a group that carries no traffic.
type SmokeRequest struct {
	Service   string          `json:"service"`
	Group     spec.Group      `json:"group"`
	Version   string          `json:"version"`
	Instances []spec.Instance `json:"instances"`
	Revision  string          `json:"revision,omitempty"`
}

const (
	// MaxSmokeExcerpt bounds SmokeResult.Body.
	MaxSmokeExcerpt = 512
	// SmokeParallel is how many instances a SmokeTester checks at once;
	// the checks of one instance run one after the other.
	SmokeParallel = 8
)

// SmokeResult is the outcome of one smoke check on one instance, or of the
// exec hook on the whole group (Instance "").
type SmokeResult struct {
	Check    string `json:"check"`
	Instance string `json:"instance,omitempty"` // ip:port
	Passed   bool   `json:"passed"`
	Status   int    `json:"status,omitempty"` // the HTTP status, when an answer came
	// Body is the start of the answer (the end of the exec hook's output),
	// at most MaxSmokeExcerpt bytes of valid UTF-8.
	Body  string `json:"body,omitempty"`
	Error string `json:"error,omitempty"` // why it failed
}

// SmokeTester runs a service's gates.smoke. Every check runs, also after
// one failed; the results list the HTTP checks in spec order, each on every
// instance in order, then the exec hook. The error is for a smoke that
// could not run at all (providers.Permanent when retrying cannot help, e.g.
// policy.hooks refuses the command).
type SmokeTester interface {
	Smoke(ctx context.Context, svc *spec.Service, req SmokeRequest) ([]SmokeResult, error)
}

// Set is the wiring the reconciler receives: every provider instance by
// kind and name, and the per-service deployers. providers/all builds it from
// the daemon config; tests build it from providers/memory.
type Set struct {
	LoadBalancers map[string]LoadBalancer // key: kind + "/" + name, e.g. "alb/prod-hz"
	Registries    map[string]Registry     // key: nacos provider name
	Instances     Instances
	// Metrics are the metrics servers analysis gates query, by the name of
	// their providers.prometheus entry.
	Metrics map[string]MetricsQuerier
	// Deployer returns the deployer a service's spec asks for.
	Deployer func(svc *spec.Service) (Deployer, error)
	// Smoke runs gates.smoke; nil when no service may have smoke tests
	// (a release whose service has them then aborts).
	Smoke SmokeTester
	// Clock is the time source for waits; nil means the real clock.
	Clock Clock
}

// LBKey is the key of a load balancer in Set.LoadBalancers.
func LBKey(kind, name string) string { return kind + "/" + name }

// Clock abstracts time so that tests can run drains and windows instantly.
type Clock interface {
	Now() time.Time
	// After behaves like time.After.
	After(d time.Duration) <-chan time.Time
}
