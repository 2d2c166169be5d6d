// Package memory is an in-memory world of load balancers, a registry, the
// services' own instances and a deployer, for tests, golden plans and the
// offline preview. It is never wired into the daemon's production providers.
//
// The world checks design invariants 1-4 after every change it is asked to
// make and records violations, so that a test can assert that Tandem never
// broke one, whatever faults were injected.
package memory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// ErrInjected is the error returned by injected faults.
var ErrInjected = errors.New("injected fault")

// App is one running instance of a service.
type App struct {
	Version   string
	Healthy   bool
	InFlight  int
	Sessions  int // open WebSockets
	Signalled bool
	// SmokeAnswer, when set, is the body of a 500 answer every smoke check
	// gets from the app: a release that is healthy but serves errors.
	SmokeAnswer string
}

// Faults are failure knobs, read on every call.
type Faults struct {
	// Fail returns an error to inject for an operation ("backends",
	// "set-weights", "instances", "set-enabled", "deploy", "probe",
	// "evidence", "signal"), or nil.
	Fail func(op string) error
	// DeployHook runs inside every deploy after the fault check; it may
	// block on ctx to simulate a hanging deploy, or change apps.
	DeployHook func(ctx context.Context, req providers.DeployRequest) error
}

// World is the whole in-memory fleet.
type World struct {
	mu         sync.Mutex
	services   map[string]*spec.Service
	backends   map[string]map[string]*providers.Backend // binding key -> backend id -> backend
	registry   map[string]map[string]*providers.RegistryInstance
	apps       map[string]*App // ip:port
	faults     Faults
	clock      *Clock
	violations []string
	deploys    []providers.DeployRequest
	calls      map[string]int
	lowWater   map[string]int
	realTime   bool
	// LB health model (lbhealth.go): off while lbThreshold is 0.
	lbThreshold int
	lbState     map[string]*lbCheck // binding key|backend id
	lbCut       map[string]bool     // ip:port the LB cannot reach
	lbQuiet     bool                // initial backends reported without health (ReportUncheckedAsUnknown)
	slowStart   map[string]time.Duration
}

// New returns an empty world with a fake clock at a fixed instant.
func New() *World {
	return &World{
		services: map[string]*spec.Service{},
		backends: map[string]map[string]*providers.Backend{},
		registry: map[string]map[string]*providers.RegistryInstance{},
		apps:     map[string]*App{},
		clock:    NewClock(time.Date(2026, 11, 25, 3, 0, 0, 0, time.UTC)),
		calls:    map[string]int{},
		lowWater: map[string]int{},
	}
}

// UseRealTime makes the providers report the real clock, for tests that run
// the daemon's worker, whose waits are real.
func (w *World) UseRealTime() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.realTime = true
}

// Clock returns the world's fake clock.
func (w *World) Clock() *Clock { return w.clock }

// SetFaults replaces the fault knobs.
func (w *World) SetFaults(f Faults) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.faults = f
}

// AddService creates the live state of a service: every instance running
// version on its group, the active group serving (full weight, enabled) and
// the other idle, as a freshly set up fleet would be. versions may give the
// idle group's version (default: the same).
func (w *World) AddService(svc *spec.Service, active spec.Group, activeVersion, idleVersion string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.services[svc.Name] = svc
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		ver := idleVersion
		if g == active {
			ver = activeVersion
		}
		for _, in := range svc.Groups.Get(g) {
			w.apps[in.Addr()] = &App{Version: ver, Healthy: true}
			for _, b := range svc.Traffic {
				m := w.backends[b.Key()]
				if m == nil {
					m = map[string]*providers.Backend{}
					w.backends[b.Key()] = m
				}
				weight := 0
				if g == active {
					weight = b.Weight
				}
				m[in.ID] = &providers.Backend{ID: in.ID, IP: in.IP, Port: in.Port, Weight: weight, Health: providers.HealthHealthy, Sessions: 0, Status: "Available"}
			}
			if svc.Registry != nil && svc.Registry.Nacos != nil {
				key := svc.Registry.Nacos.String()
				m := w.registry[key]
				if m == nil {
					m = map[string]*providers.RegistryInstance{}
					w.registry[key] = m
				}
				m[in.Addr()] = &providers.RegistryInstance{IP: in.IP, Port: in.Port, Cluster: svc.Registry.Nacos.Cluster,
					Enabled: g == active, Healthy: true, Weight: 1, Ephemeral: true, Metadata: map[string]string{"version": ver}}
			}
		}
	}
}

// App returns a copy of an app's state.
func (w *World) App(addr string) App {
	w.mu.Lock()
	defer w.mu.Unlock()
	return *w.apps[addr]
}

// UpdateApp changes an app (health, in-flight work) from a test.
func (w *World) UpdateApp(addr string, f func(*App)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	f(w.apps[addr])
	w.syncHealthLocked()
}

// SetWeight changes a backend's weight behind Tandem's back (drift).
func (w *World) SetWeight(binding spec.Binding, id string, weight int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	be := w.backends[binding.Key()][id]
	old := be.Weight
	be.Weight = weight
	w.lbWeightLocked(binding.Key(), be, old)
}

// ServeOnly puts all traffic on group g by hand: full weight and enabled
// for g, nothing for the other group (what an operator does in a console).
func (w *World) ServeOnly(svc *spec.Service, g spec.Group) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, grp := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(grp) {
			for _, b := range svc.Traffic {
				weight := 0
				if grp == g {
					weight = b.Weight
				}
				be := w.backends[b.Key()][in.ID]
				old := be.Weight
				be.Weight = weight
				w.lbWeightLocked(b.Key(), be, old)
			}
			if svc.Registry != nil && svc.Registry.Nacos != nil {
				w.registry[svc.Registry.Nacos.String()][in.Addr()].Enabled = grp == g
			}
		}
	}
}

// SetSessions sets the LB session count of a backend.
func (w *World) SetSessions(binding spec.Binding, id string, n int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.backends[binding.Key()][id].Sessions = n
}

// SetEnabledByHand flips an instance in the registry behind Tandem's back.
func (w *World) SetEnabledByHand(ref spec.NacosRef, addr string, enabled bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.registry[ref.String()][addr].Enabled = enabled
}

// Weight returns a backend's weight.
func (w *World) Weight(binding spec.Binding, id string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.backends[binding.Key()][id].Weight
}

// Enabled returns whether an instance is enabled in the registry.
func (w *World) Enabled(ref spec.NacosRef, addr string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.registry[ref.String()][addr].Enabled
}

// Violations lists every invariant the world saw broken by a change.
func (w *World) Violations() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]string(nil), w.violations...)
}

// Deploys lists every deploy that ran to completion or failure.
func (w *World) Deploys() []providers.DeployRequest {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]providers.DeployRequest(nil), w.deploys...)
}

// Calls returns how often each operation was called.
func (w *World) Calls() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[string]int{}
	for k, v := range w.calls {
		out[k] = v
	}
	return out
}

func (w *World) enter(op string) error {
	w.calls[op]++
	if w.faults.Fail != nil {
		if err := w.faults.Fail(op); err != nil {
			return fmt.Errorf("%s: %w", op, err)
		}
	}
	return nil
}

// syncHealthLocked mirrors app health into LB health and registry health.
func (w *World) syncHealthLocked() {
	if w.lbThreshold > 0 {
		return // the LB learns app health through its modelled checks
	}
	for _, svc := range w.services {
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range svc.Groups.Get(g) {
				app := w.apps[in.Addr()]
				h := providers.HealthHealthy
				if !app.Healthy {
					h = providers.HealthUnhealthy
				}
				for _, b := range svc.Traffic {
					w.backends[b.Key()][in.ID].Health = h
				}
			}
		}
	}
}

// serving measures, per binding and per registry, the weight on healthy
// instances and the number of enabled instances.
func (w *World) serving() map[string]int {
	out := map[string]int{}
	for _, svc := range w.services {
		for _, b := range svc.Traffic {
			for _, be := range w.backends[b.Key()] {
				lbOK := w.lbThreshold == 0 || be.Health == providers.HealthHealthy
				if in, ok := instanceByID(svc, be.ID); ok && w.apps[in.Addr()].Healthy && lbOK {
					out[b.Key()] += be.Weight
				}
			}
			out[b.Key()] += 0
		}
		if svc.Registry != nil && svc.Registry.Nacos != nil {
			key := svc.Registry.Nacos.String()
			out[key] += 0
			for _, r := range w.registry[key] {
				if r.Enabled {
					out[key]++
				}
			}
		}
	}
	return out
}

// check records invariant 1 and 2 violations that a change through the
// providers caused: a binding that had weight on a healthy instance before
// and has none after, a registry that had an enabled instance and has none.
// (A world made unhealthy by a test is not Tandem's doing.)
func (w *World) check(before map[string]int, cause string) {
	for key, after := range w.serving() {
		if before[key] > 0 && after == 0 {
			inv := 1
			if strings.HasPrefix(key, "nacos:") {
				inv = 2
			}
			w.violations = append(w.violations, fmt.Sprintf("invariant %d after %s: %s has nothing serving", inv, cause, key))
		}
	}
}

func instanceByID(svc *spec.Service, id string) (spec.Instance, bool) {
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Groups.Get(g) {
			if in.ID == id {
				return in, true
			}
		}
	}
	return spec.Instance{}, false
}

// carryingLocked reports where group g of svc takes traffic.
func (w *World) carryingLocked(svc *spec.Service, g spec.Group) []string {
	var out []string
	for _, in := range svc.Groups.Get(g) {
		for _, b := range svc.Traffic {
			if be := w.backends[b.Key()][in.ID]; be != nil && be.Weight > 0 {
				out = append(out, fmt.Sprintf("%s weight %d on %s", in.ID, be.Weight, b.Key()))
			}
		}
		if svc.Registry != nil && svc.Registry.Nacos != nil {
			if r := w.registry[svc.Registry.Nacos.String()][in.Addr()]; r != nil && r.Enabled {
				out = append(out, fmt.Sprintf("%s enabled", in.Addr()))
			}
		}
	}
	sort.Strings(out)
	return out
}

// Set returns the provider set for the reconciler: every LB provider named
// by the services' bindings, every registry, the instances and the deployer.
func (w *World) Set() *providers.Set {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := &providers.Set{
		LoadBalancers: map[string]providers.LoadBalancer{},
		Registries:    map[string]providers.Registry{},
		Instances:     instances{w},
		Deployer:      func(*spec.Service) (providers.Deployer, error) { return deployer{w}, nil },
		Smoke:         smoke{w},
	}
	if !w.realTime {
		s.Clock = w.clock
	}
	for _, svc := range w.services {
		for _, b := range svc.Traffic {
			s.LoadBalancers[providers.LBKey(b.Kind(), b.Provider())] = lb{w}
		}
		if svc.Registry != nil && svc.Registry.Nacos != nil {
			s.Registries[svc.Registry.Nacos.Provider] = registry{w}
		}
	}
	return s
}

type lb struct{ w *World }

var (
	_ providers.LoadBalancer  = lb{}
	_ providers.SessionCloser = lb{}
	_ providers.Registry      = registry{}
	_ providers.Instances     = instances{}
	_ providers.Deployer      = deployer{}
	_ providers.SmokeTester   = smoke{}
)

func (l lb) Backends(_ context.Context, b spec.Binding) ([]providers.Backend, error) {
	w := l.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("backends"); err != nil {
		return nil, err
	}
	m, ok := w.backends[b.Key()]
	if !ok {
		return nil, providers.Permanentf("NotFound", "%s: no such server group", b.Key())
	}
	w.lbCheckLocked(b.Key(), m)
	out := make([]providers.Backend, 0, len(m))
	for _, be := range m {
		out = append(out, *be)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out, nil
}

func (l lb) SetWeights(_ context.Context, b spec.Binding, changes []providers.WeightChange) error {
	w := l.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("set-weights"); err != nil {
		return err
	}
	m, ok := w.backends[b.Key()]
	if !ok {
		return providers.Permanentf("NotFound", "%s: no such server group", b.Key())
	}
	maxWeight := 100
	if k, ok := b.LBKind(); ok {
		maxWeight = k.MaxWeight
	}
	total := 0
	after := map[string]int{}
	for id, be := range m {
		after[id] = be.Weight
	}
	for _, c := range changes {
		if _, ok := m[c.ID]; !ok {
			return providers.Permanentf("NotFound", "%s: no backend %s", b.Key(), c.ID)
		}
		if c.Weight < 0 || c.Weight > maxWeight {
			return providers.Permanentf("InvalidParameter", "%s: weight %d of %s is outside 0..%d", b.Key(), c.Weight, c.ID, maxWeight)
		}
		after[c.ID] = c.Weight
	}
	for _, wt := range after {
		total += wt
	}
	if total == 0 {
		return providers.Permanentf("WouldZeroAll", "%s: the change would leave every backend at weight 0", b.Key())
	}
	before := w.serving()
	for _, c := range changes {
		be := m[c.ID]
		if be.Weight == 0 && c.Weight > 0 {
			// Invariant 4: weight only for a healthy instance.
			for _, svc := range w.services {
				if in, ok := instanceByID(svc, c.ID); ok && !w.apps[in.Addr()].Healthy {
					w.violations = append(w.violations, fmt.Sprintf("invariant 4: %s got weight while unhealthy", c.ID))
				}
			}
		}
		old := be.Weight
		be.Weight = c.Weight
		w.lbWeightLocked(b.Key(), be, old)
	}
	w.check(before, "set-weights on "+b.Key())
	if low, ok := w.lowWater[b.Key()]; !ok || total < low {
		w.lowWater[b.Key()] = total
	}
	return nil
}

// AddBackends creates a server group for binding b outside of any service
// (for the LB conformance suite).
func (w *World) AddBackends(b spec.Binding, backends []providers.Backend) {
	w.mu.Lock()
	defer w.mu.Unlock()
	m := map[string]*providers.Backend{}
	total := 0
	for _, be := range backends {
		c := be
		m[be.ID] = &c
		total += be.Weight
	}
	w.backends[b.Key()] = m
	w.lowWater[b.Key()] = total
}

// LowWater returns the lowest total weight binding b ever had.
func (w *World) LowWater(b spec.Binding) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.lowWater[b.Key()]
}

// SetBackendHealth sets the health an LB reports for a backend.
func (w *World) SetBackendHealth(b spec.Binding, id string, h providers.Health) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.backends[b.Key()][id].Health = h
}

// LoadBalancer returns the world's load balancer (every binding).
func (w *World) LoadBalancer() providers.LoadBalancer { return lb{w} }

func (l lb) CloseSessions(_ context.Context, b spec.Binding, ids []string) (int, error) {
	w := l.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("close-sessions"); err != nil {
		return 0, err
	}
	n := 0
	for _, id := range ids {
		if be := w.backends[b.Key()][id]; be != nil {
			n += be.Sessions
			be.Sessions = 0
		}
	}
	return n, nil
}

type registry struct{ w *World }

func (r registry) Instances(_ context.Context, ref spec.NacosRef) (providers.RegistryView, error) {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("instances"); err != nil {
		return providers.RegistryView{}, err
	}
	var v providers.RegistryView
	v.Visible = []providers.Addr{}
	for _, ri := range w.registry[ref.String()] {
		c := *ri
		c.Healthy = w.apps[spec.Instance{IP: ri.IP, Port: ri.Port}.Addr()].Healthy
		v.Instances = append(v.Instances, c)
		if c.Enabled && c.Healthy {
			v.Visible = append(v.Visible, providers.Addr{IP: c.IP, Port: c.Port})
		}
	}
	sort.Slice(v.Instances, func(i, j int) bool {
		return spec.Instance{IP: v.Instances[i].IP, Port: v.Instances[i].Port}.Addr() < spec.Instance{IP: v.Instances[j].IP, Port: v.Instances[j].Port}.Addr()
	})
	return v, nil
}

func (r registry) SetEnabled(_ context.Context, ref spec.NacosRef, addrs []providers.Addr, enabled bool) error {
	w := r.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("set-enabled"); err != nil {
		return err
	}
	m := w.registry[ref.String()]
	if !enabled {
		off := map[string]bool{}
		for _, a := range addrs {
			off[spec.Instance{IP: a.IP, Port: a.Port}.Addr()] = true
		}
		left := 0
		for k, ri := range m {
			if ri.Enabled && !off[k] {
				left++
			}
		}
		if left == 0 {
			return fmt.Errorf("disabling %d instances of %s: %w", len(addrs), ref, providers.ErrWouldDisableAll)
		}
	}
	for _, a := range addrs {
		if key := (spec.Instance{IP: a.IP, Port: a.Port}).Addr(); m[key] == nil {
			return providers.Permanentf("NotFound", "%s: no instance %s", ref, key)
		}
	}
	before := w.serving()
	for _, a := range addrs {
		key := spec.Instance{IP: a.IP, Port: a.Port}.Addr()
		ri := m[key]
		if enabled && !ri.Enabled && !w.apps[key].Healthy {
			w.violations = append(w.violations, fmt.Sprintf("invariant 4: %s enabled while unhealthy", key))
		}
		ri.Enabled = enabled
	}
	w.check(before, "set-enabled on "+ref.String())
	return nil
}

type instances struct{ w *World }

func (i instances) Probe(_ context.Context, _ *spec.Service, in spec.Instance) providers.ProbeResult {
	w := i.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("probe"); err != nil {
		return providers.ProbeResult{Detail: err.Error()}
	}
	app := w.apps[in.Addr()]
	if !app.Healthy {
		return providers.ProbeResult{Version: app.Version, Detail: "GET /healthz: 503"}
	}
	return providers.ProbeResult{Healthy: true, Version: app.Version}
}

func (i instances) Evidence(_ context.Context, _ *spec.Service, in spec.Instance) (providers.Evidence, error) {
	w := i.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("evidence"); err != nil {
		return providers.Evidence{}, err
	}
	app := w.apps[in.Addr()]
	return providers.Evidence{InFlight: app.InFlight, Sessions: app.Sessions}, nil
}

func (i instances) SignalDrain(_ context.Context, _ *spec.Service, in spec.Instance) error {
	w := i.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("signal"); err != nil {
		return err
	}
	app := w.apps[in.Addr()]
	app.Signalled = true
	app.Sessions = 0 // clients reconnect elsewhere
	return nil
}

type deployer struct{ w *World }

func (d deployer) Deploy(ctx context.Context, req providers.DeployRequest) (providers.DeployResult, error) {
	w := d.w
	w.mu.Lock()
	if err := w.enter("deploy"); err != nil {
		w.deploys = append(w.deploys, req)
		w.mu.Unlock()
		return providers.DeployResult{}, err
	}
	svc := w.services[req.Service]
	// Invariant 3: never deploy to a group that takes traffic.
	if busy := w.carryingLocked(svc, req.Group); len(busy) > 0 {
		w.violations = append(w.violations, fmt.Sprintf("invariant 3: deploy %s to %s/%s while it carries traffic: %v", req.Version, req.Service, req.Group, busy))
	}
	hook := w.faults.DeployHook
	w.mu.Unlock()
	if hook != nil {
		if err := hook(ctx, req); err != nil {
			w.mu.Lock()
			w.deploys = append(w.deploys, req)
			w.mu.Unlock()
			return providers.DeployResult{}, err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, in := range req.Instances {
		app := w.apps[in.Addr()]
		app.Version = req.Version
		if svc.Registry != nil && svc.Registry.Nacos != nil {
			if ri := w.registry[svc.Registry.Nacos.String()][in.Addr()]; ri != nil {
				ri.Metadata = map[string]string{"version": req.Version}
			}
		}
	}
	w.deploys = append(w.deploys, req)
	return providers.DeployResult{Output: fmt.Sprintf("deployed %s to %d instances", req.Version, len(req.Instances))}, nil
}

type smoke struct{ w *World }

// Smoke answers every HTTP check of gates.smoke on every instance with 200,
// or 500 and App.SmokeAnswer when it is set; the exec hook passes unless
// an instance has a SmokeAnswer. Fault op: "smoke".
func (s smoke) Smoke(_ context.Context, svc *spec.Service, req providers.SmokeRequest) ([]providers.SmokeResult, error) {
	w := s.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.enter("smoke"); err != nil {
		return nil, err
	}
	g := svc.Gates.Smoke
	if g == nil {
		return nil, nil
	}
	var out []providers.SmokeResult
	broken := ""
	for _, c := range g.HTTP {
		for _, in := range req.Instances {
			r := providers.SmokeResult{Check: c.Name, Instance: in.Addr(), Passed: true, Status: 200}
			if app := w.apps[in.Addr()]; app != nil && app.SmokeAnswer != "" {
				r.Passed, r.Status, r.Body = false, 500, app.SmokeAnswer
				r.Error = fmt.Sprintf("%s http://%s%s: status 500 (want %s)", c.Method, in.Addr(), c.Path, c.Expect.Describe())
				broken = app.SmokeAnswer
			}
			out = append(out, r)
		}
	}
	if g.Exec != nil {
		r := providers.SmokeResult{Check: "exec", Passed: broken == ""}
		if !r.Passed {
			r.Error, r.Body = "exit status 1", broken
		}
		out = append(out, r)
	}
	return out, nil
}

// Clock is a fake clock that moves only when told.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock at t.
func NewClock(t time.Time) *Clock { return &Clock{now: t} }

// Now returns the fake time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// After fires at once: waits in the in-memory world are instantaneous.
func (c *Clock) After(time.Duration) <-chan time.Time {
	ch := make(chan time.Time, 1)
	ch <- c.Now()
	return ch
}
