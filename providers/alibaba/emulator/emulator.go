// Package emulator imitates the Alibaba Cloud OpenAPI endpoints of ALB
// (version 2020-06-16) and CLB/SLB (2014-05-15) that Tandem uses, closely
// enough that the official Go SDKs, unmodified, cannot tell the difference:
// RPC-style requests signed with ACS3-HMAC-SHA256 or the legacy HMAC-SHA1
// RPC signature, the documented field names, pagination, batch limits,
// error format and codes, ALB's asynchronous jobs and SLB's configuration
// lock. Fault knobs (throttling, 5xx, latency, injected codes, failed jobs)
// make the error paths testable, and Frontend is a data plane that forwards
// real HTTP and WebSocket traffic by the emulated weights, forwarding rules
// and health checks: the LB checks every weighted server's real endpoint as
// Alibaba documents (health.go), and BlockServers cuts the LB off from
// chosen servers. docs/alibaba-emulator.md lists what is modelled.
//
// Every behaviour carries a comment naming its source. "SDK doc" means the
// doc comment of the request or response model in
// github.com/alibabacloud-go/alb-20200616/v2 v2.3.2 or slb-20140515/v4
// v4.0.14; "error table" means the one in providers/alibaba/errors.go, which
// cites Alibaba's ALB and CLB error-code pages; "Terraform" means
// aliyun/terraform-provider-alicloud alicloud/errors.go. Facts that no
// source settled are marked UNVERIFIED with the choice made.
package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// Key is an AccessKey the emulator accepts. Token, when set, must come with
// every request signed by this key (an STS key pair).
type Key struct {
	ID     string
	Secret string
	Token  string
}

// Faults are random failures injected before an API call is handled.
type Faults struct {
	ThrottleRate float64       `json:"throttleRate,omitempty"` // share of calls refused with Throttling.User (HTTP 400)
	ErrorRate    float64       `json:"errorRate,omitempty"`    // share of calls answered ServiceUnavailable (HTTP 503)
	Latency      time.Duration `json:"latency,omitempty"`      // added to every call
	// JobDelay, when longer than Options.JobDelay, is how long new ALB
	// asynchronous jobs stay Processing: slow jobs.
	JobDelay time.Duration `json:"jobDelay,omitempty"`
}

// Options configure an Emulator.
type Options struct {
	Keys   []Key  // accepted AccessKeys; a request signed with any other key is refused
	Region string // the region of every resource; default cn-hangzhou
	// JobDelay is how long an ALB asynchronous job stays Processing (group
	// and servers Configuring) before it succeeds.
	JobDelay time.Duration
	// SLBBusy is how long an SLB load balancer stays locked after a write;
	// another write meanwhile gets BackendServer.configuring.
	SLBBusy time.Duration
	Faults  Faults
	// Seed makes the random faults reproducible; 0 draws a random seed.
	Seed uint64
	// StateFile, when set, receives the state (JSON) after every change.
	StateFile string
	// HealthCheckUnit is how long one second of the health-check settings
	// (HealthCheckInterval, HealthCheckTimeout) lasts for RunHealthChecks:
	// tests scale the documented seconds down to milliseconds. 0 is 1 s.
	HealthCheckUnit time.Duration
	Log             *slog.Logger
}

// Emulator is the emulated OpenAPI. It is an http.Handler; serve it on a
// loopback listener and point the SDK's Endpoint at it with Protocol http.
type Emulator struct {
	opts Options
	log  *slog.Logger
	keys map[string]Key

	mu       sync.Mutex
	state    State
	rng      *rand.Rand
	faults   Faults
	injected []injection
	failJobs []string // error codes of the next ALB jobs that fail
	jobs     []*job
	tokens   map[string]tokenUse  // ALB ClientToken → the request it was first used for
	nonces   map[string]time.Time // signature nonces seen in the last 15 minutes
	// nonceQueue holds the nonces in the order seen, to forget them in order.
	nonceQueue []string
	slbBusy    map[string]time.Time // SLB load balancer → locked until
	calls      map[string]int
	callLog    []Call          // the latest maxCallLog calls, oldest first
	low        map[Target]int  // lowest total weight each group has had
	blocked    map[string]bool // "ip:port" the LB cannot reach (BlockServers)
	seq        int
}

type injection struct {
	action, code string
	status, left int
}

type tokenUse struct {
	digest string
	jobID  string
}

// New returns an emulator with no resources; Seed or LoadState adds them.
func New(opts Options) *Emulator {
	if opts.Region == "" {
		opts.Region = "cn-hangzhou"
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	seed := opts.Seed
	if seed == 0 {
		seed = rand.Uint64()
	}
	e := &Emulator{
		opts:    opts,
		log:     log,
		keys:    map[string]Key{},
		rng:     rand.New(rand.NewPCG(seed, seed^0x5eed)),
		faults:  opts.Faults,
		tokens:  map[string]tokenUse{},
		nonces:  map[string]time.Time{},
		slbBusy: map[string]time.Time{},
		calls:   map[string]int{},
		low:     map[Target]int{},
		blocked: map[string]bool{},
	}
	for _, k := range opts.Keys {
		e.keys[k.ID] = k
	}
	return e
}

// State is everything the emulator holds that survives a restart: the
// resources, their servers and weights. It is the state file's format.
type State struct {
	ServerGroups  []*ServerGroup  `json:"albServerGroups,omitempty"`
	Listeners     []*Listener     `json:"albListeners,omitempty"`
	Rules         []*Rule         `json:"albRules,omitempty"`
	LoadBalancers []*LoadBalancer `json:"slbLoadBalancers,omitempty"`
}

// Server is one backend server of a group.
type Server struct {
	ID          string `json:"id"` // ECS/ENI/ECI id (ALB Ip type: the IP)
	IP          string `json:"ip"`
	Port        int    `json:"port,omitempty"` // 0 in an SLB default server group, which has no port
	Type        string `json:"type,omitempty"` // ALB: Ecs (default), Eni, Eci, Ip; SLB: ecs (default), eni, eci
	Weight      int    `json:"weight"`
	Description string `json:"description,omitempty"`
	// Unhealthy makes every health check of the server fail, as an app
	// whose health endpoint answers 503 (SetHealthy).
	Unhealthy bool `json:"unhealthy,omitempty"`
	// Health is the health-check state of a weighted server: Initial,
	// Healthy or Unhealthy (see health.go). Seeded empty, a server with
	// weight starts Healthy (it has been in service), one without Initial.
	Health string `json:"health,omitempty"`

	passes, fails int     // consecutive check results
	reason        *Reason // the last failed check
	checking      bool    // a check is under way
	gen           int     // bumped when the checks start over

	slowFrom, slowUntil time.Time // slow start (SlowStart of the group)
}

// ServerGroup is an ALB server group.
type ServerGroup struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Servers []*Server `json:"servers"`
	// HealthCheck is the group's HealthCheckConfig; nil: the defaults, on
	// (ALB health check doc: on by default for every server group).
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
	SlowStart   *SlowStart   `json:"slowStart,omitempty"`
}

// Listener is an ALB listener forwarding to one server group by default.
type Listener struct {
	ID          string `json:"id"`
	Port        int    `json:"port"`
	Protocol    string `json:"protocol,omitempty"` // HTTP (default), HTTPS, QUIC
	ServerGroup string `json:"serverGroup"`
	// HealthCheckDisabled makes GetListenerHealthStatus on this listener
	// report checks off (Unavailable), whatever the group's settings: an
	// emulator shortcut kept for older state files; ALB sets health checks
	// per server group (HealthCheck).
	HealthCheckDisabled bool `json:"healthCheckDisabled,omitempty"`
}

// Rule is an ALB forwarding rule of a listener: a request that meets every
// condition goes to the server groups of its ForwardGroup action (SDK
// CreateRule/ListRules: RuleConditions, RuleActions[].ForwardGroupConfig.
// ServerGroupTuples). The emulator knows Header and Cookie conditions.
type Rule struct {
	ID       string `json:"id"`
	Listener string `json:"listener"`
	// Priority orders the rules of a listener, lowest first; 1..10000 (SDK doc, CreateRule.Priority).
	Priority     int                `json:"priority"`
	Conditions   []RuleCondition    `json:"conditions"`
	ServerGroups []ServerGroupTuple `json:"serverGroups"`
}

// RuleCondition is a Header condition (the header Key has one of Values;
// SDK HeaderConfig{Key, Values}) or a Cookie condition (the cookie Key has
// one of Values; SDK CookieConfig.Values[]{Key, Value}).
type RuleCondition struct {
	Type   string   `json:"type"` // Header | Cookie
	Key    string   `json:"key"`
	Values []string `json:"values"`
}

// ServerGroupTuple is one server group of a ForwardGroup action with its
// weight (0..100; 0 in the state means 100).
type ServerGroupTuple struct {
	ServerGroup string `json:"serverGroup"`
	Weight      int    `json:"weight,omitempty"`
}

func (t ServerGroupTuple) weight() int {
	if t.Weight == 0 {
		return 100
	}
	return t.Weight
}

// LoadBalancer is an SLB (CLB) instance with its default server group,
// vServer groups and listeners.
type LoadBalancer struct {
	ID            string          `json:"id"`
	Name          string          `json:"name,omitempty"`
	Servers       []*Server       `json:"servers"` // the default server group
	VServerGroups []*VServerGroup `json:"vServerGroups,omitempty"`
	Listeners     []*SLBListener  `json:"listeners,omitempty"`
}

// VServerGroup is an SLB vServer group.
type VServerGroup struct {
	ID      string    `json:"id"`
	Name    string    `json:"name,omitempty"`
	Servers []*Server `json:"servers"`
}

// SLBListener is an SLB listener; it forwards to a vServer group, or to the
// default server group when VServerGroup is empty.
type SLBListener struct {
	Port                int    `json:"port"`
	Protocol            string `json:"protocol,omitempty"` // tcp (default), udp, http, https
	VServerGroup        string `json:"vServerGroup,omitempty"`
	HealthCheckDisabled bool   `json:"healthCheckDisabled,omitempty"` // same as HealthCheck.Enabled false
	// HealthCheck is the listener's health check (CLB sets checks per
	// listener); nil: the defaults, on.
	HealthCheck *HealthCheck `json:"healthCheck,omitempty"`
}

// Target names one group of servers: an ALB server group, or an SLB load
// balancer's vServer group (VServerGroup empty: its default server group).
type Target struct {
	ServerGroup  string `json:"serverGroup,omitempty"`
	LoadBalancer string `json:"loadBalancer,omitempty"`
	VServerGroup string `json:"vServerGroup,omitempty"`
}

func (t Target) String() string {
	switch {
	case t.ServerGroup != "":
		return "alb server group " + t.ServerGroup
	case t.VServerGroup != "":
		return "slb " + t.LoadBalancer + " vserver group " + t.VServerGroup
	}
	return "slb " + t.LoadBalancer + " default server group"
}

// Seed adds resources. It refuses (and adds nothing) when an id is taken,
// a reference dangles or a weight is out of 0..100.
func (e *Emulator) Seed(s State) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	next := cloneState(e.state)
	add := cloneState(s)
	next.ServerGroups = append(next.ServerGroups, add.ServerGroups...)
	next.Listeners = append(next.Listeners, add.Listeners...)
	next.Rules = append(next.Rules, add.Rules...)
	next.LoadBalancers = append(next.LoadBalancers, add.LoadBalancers...)
	if err := next.validate(); err != nil {
		return fmt.Errorf("seeding the emulator: %w", err)
	}
	initHealth(add)
	// Append rather than replace: pending jobs point into the live state.
	e.state.ServerGroups = append(e.state.ServerGroups, add.ServerGroups...)
	e.state.Listeners = append(e.state.Listeners, add.Listeners...)
	e.state.Rules = append(e.state.Rules, add.Rules...)
	e.state.LoadBalancers = append(e.state.LoadBalancers, add.LoadBalancers...)
	for _, g := range add.ServerGroups {
		e.noteLocked(Target{ServerGroup: g.ID})
	}
	for _, lb := range add.LoadBalancers {
		e.noteLocked(Target{LoadBalancer: lb.ID})
		for _, vg := range lb.VServerGroups {
			e.noteLocked(Target{LoadBalancer: lb.ID, VServerGroup: vg.ID})
		}
	}
	e.saveLocked()
	return nil
}

// initHealth gives seeded servers their first health-check state: Healthy
// with weight (in service before the emulator started), Initial without,
// Unhealthy when they fail their checks.
func initHealth(s State) {
	each := func(list []*Server) {
		for _, sv := range list {
			switch {
			case sv.Health != "":
			case sv.Unhealthy:
				sv.Health = StatusUnhealthy
			case sv.Weight > 0:
				sv.Health = StatusHealthy
			default:
				sv.Health = StatusInitial
			}
		}
	}
	for _, g := range s.ServerGroups {
		each(g.Servers)
	}
	for _, lb := range s.LoadBalancers {
		each(lb.Servers)
		for _, vg := range lb.VServerGroups {
			each(vg.Servers)
		}
	}
}

func (s *State) validate() error {
	var errs []error
	ids := map[string]bool{}
	unique := func(kind, id string) {
		if id == "" {
			errs = append(errs, fmt.Errorf("%s without id", kind))
		} else if ids[id] {
			errs = append(errs, fmt.Errorf("%s id %q is used twice", kind, id))
		}
		ids[id] = true
	}
	servers := func(where string, list []*Server, needPort bool) {
		seen := map[string]bool{}
		for _, sv := range list {
			k := fmt.Sprintf("%s:%d", sv.ID, sv.Port)
			switch {
			case sv.ID == "":
				errs = append(errs, fmt.Errorf("%s: server without id", where))
			case seen[k]:
				errs = append(errs, fmt.Errorf("%s: server %s port %d is listed twice", where, sv.ID, sv.Port))
			case sv.Weight < 0 || sv.Weight > 100:
				errs = append(errs, fmt.Errorf("%s: server %s: weight %d is not in 0..100", where, sv.ID, sv.Weight))
			case needPort && (sv.Port < 1 || sv.Port > 65535):
				errs = append(errs, fmt.Errorf("%s: server %s: port must be 1..65535", where, sv.ID))
			case !slices.Contains([]string{"", StatusInitial, StatusHealthy, StatusUnhealthy}, sv.Health):
				errs = append(errs, fmt.Errorf("%s: server %s: health %q must be Initial, Healthy or Unhealthy", where, sv.ID, sv.Health))
			}
			seen[k] = true
		}
	}
	for _, g := range s.ServerGroups {
		unique("alb server group", g.ID)
		servers("alb server group "+g.ID, g.Servers, true)
		if g.HealthCheck != nil {
			if err := g.HealthCheck.validate(); err != nil {
				errs = append(errs, fmt.Errorf("alb server group %s: healthCheck: %w", g.ID, err))
			}
		}
	}
	for _, l := range s.Listeners {
		unique("alb listener", l.ID)
		if s.group(l.ServerGroup) == nil {
			errs = append(errs, fmt.Errorf("alb listener %s: server group %q does not exist", l.ID, l.ServerGroup))
		}
	}
	for _, r := range s.Rules {
		unique("alb rule", r.ID)
		if s.listener(r.Listener) == nil {
			errs = append(errs, fmt.Errorf("alb rule %s: listener %q does not exist", r.ID, r.Listener))
		}
		if r.Priority < 1 || r.Priority > 10000 {
			errs = append(errs, fmt.Errorf("alb rule %s: priority %d is not in 1..10000", r.ID, r.Priority))
		}
		if len(r.ServerGroups) == 0 {
			errs = append(errs, fmt.Errorf("alb rule %s: no server group to forward to", r.ID))
		}
		for _, t := range r.ServerGroups {
			if s.group(t.ServerGroup) == nil {
				errs = append(errs, fmt.Errorf("alb rule %s: server group %q does not exist", r.ID, t.ServerGroup))
			}
			if t.Weight < 0 || t.Weight > 100 {
				errs = append(errs, fmt.Errorf("alb rule %s: weight %d of %s is not in 0..100", r.ID, t.Weight, t.ServerGroup))
			}
		}
		for _, c := range r.Conditions {
			if (c.Type != "Header" && c.Type != "Cookie") || c.Key == "" || len(c.Values) == 0 {
				errs = append(errs, fmt.Errorf("alb rule %s: condition %+v: type must be Header or Cookie, with a key and values", r.ID, c))
			}
		}
	}
	for _, lb := range s.LoadBalancers {
		unique("slb load balancer", lb.ID)
		servers("slb "+lb.ID+" default server group", lb.Servers, false)
		for _, vg := range lb.VServerGroups {
			unique("slb vserver group", vg.ID)
			servers("slb vserver group "+vg.ID, vg.Servers, true)
		}
		ports := map[int]bool{}
		for _, l := range lb.Listeners {
			if ports[l.Port] {
				errs = append(errs, fmt.Errorf("slb %s: listener port %d is used twice", lb.ID, l.Port))
			}
			ports[l.Port] = true
			if l.HealthCheck != nil {
				if err := l.HealthCheck.validate(); err != nil {
					errs = append(errs, fmt.Errorf("slb %s listener %d: healthCheck: %w", lb.ID, l.Port, err))
				}
			}
			if l.VServerGroup != "" && lb.vgroup(l.VServerGroup) == nil {
				errs = append(errs, fmt.Errorf("slb %s listener %d: vserver group %q does not exist", lb.ID, l.Port, l.VServerGroup))
			}
		}
	}
	return errors.Join(errs...)
}

func (s *State) group(id string) *ServerGroup {
	for _, g := range s.ServerGroups {
		if g.ID == id {
			return g
		}
	}
	return nil
}

func (s *State) listener(id string) *Listener {
	for _, l := range s.Listeners {
		if l.ID == id {
			return l
		}
	}
	return nil
}

// rules returns the rules of a listener by priority.
func (s *State) rules(listener string) []*Rule {
	var out []*Rule
	for _, r := range s.Rules {
		if r.Listener == listener {
			out = append(out, r)
		}
	}
	slices.SortStableFunc(out, func(a, b *Rule) int { return a.Priority - b.Priority })
	return out
}

func (s *State) lb(id string) *LoadBalancer {
	for _, lb := range s.LoadBalancers {
		if lb.ID == id {
			return lb
		}
	}
	return nil
}

func (lb *LoadBalancer) vgroup(id string) *VServerGroup {
	for _, vg := range lb.VServerGroups {
		if vg.ID == id {
			return vg
		}
	}
	return nil
}

// servers returns the live server list of t.
func (s *State) servers(t Target) ([]*Server, error) {
	if t.ServerGroup != "" {
		if g := s.group(t.ServerGroup); g != nil {
			return g.Servers, nil
		}
		return nil, fmt.Errorf("%s does not exist", t)
	}
	lb := s.lb(t.LoadBalancer)
	if lb == nil {
		return nil, fmt.Errorf("%s does not exist", t)
	}
	if t.VServerGroup == "" {
		return lb.Servers, nil
	}
	if vg := lb.vgroup(t.VServerGroup); vg != nil {
		return vg.Servers, nil
	}
	return nil, fmt.Errorf("%s does not exist", t)
}

// State returns a copy of the true state, as a test reads it behind the
// provider's back. Finished ALB jobs are applied first.
func (e *Emulator) State() State {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(time.Now())
	return cloneState(e.state)
}

// Servers returns a copy of the servers of t with their applied weights.
func (e *Emulator) Servers(t Target) ([]Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(time.Now())
	list, err := e.state.servers(t)
	if err != nil {
		return nil, err
	}
	out := make([]Server, len(list))
	for i, s := range list {
		out[i] = *s
	}
	return out, nil
}

// SetWeight changes a server's weight directly, as a person in the console
// would (drift). Every server of t with this id gets the weight.
func (e *Emulator) SetWeight(t Target, serverID string, weight int) error {
	if weight < 0 || weight > 100 {
		return fmt.Errorf("setting weight of %s in %s: %d is not in 0..100", serverID, t, weight)
	}
	return e.update(t, serverID, func(s *Server) { setWeightLocked(s, weight) })
}

// SetHealthy makes a server's health checks fail (as an app whose health
// endpoint answers 503) or probe its endpoint again, and sets its status
// at once to Unhealthy or Healthy, as if the threshold had been reached: a
// shortcut for tests that do not run the checks (CheckHealth,
// RunHealthChecks), which then go on from that status.
func (e *Emulator) SetHealthy(t Target, serverID string, healthy bool) error {
	return e.update(t, serverID, func(s *Server) {
		s.Unhealthy = !healthy
		s.restart(StatusHealthy)
		if !healthy {
			s.Health = StatusUnhealthy
			s.reason = &Reason{ReasonCode: "RESPONSE_MISMATCH", ExpectedResponse: "HTTP_2xx,HTTP_3xx", ActualResponse: "503"}
		}
	})
}

func (e *Emulator) update(t Target, serverID string, f func(*Server)) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	list, err := e.state.servers(t)
	if err != nil {
		return fmt.Errorf("updating server %s: %w", serverID, err)
	}
	found := false
	for _, s := range list {
		if s.ID == serverID {
			f(s)
			found = true
		}
	}
	if !found {
		return fmt.Errorf("updating server %s: not in %s", serverID, t)
	}
	e.noteLocked(t)
	e.saveLocked()
	return nil
}

// LowWater returns the lowest total weight the servers of t have had at
// any moment since they were seeded: 0 means that at some moment no
// server of the group could receive a new request.
func (e *Emulator) LowWater(t Target) (int, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(time.Now())
	low, ok := e.low[t]
	if !ok {
		return 0, fmt.Errorf("%s does not exist", t)
	}
	return low, nil
}

// noteLocked records the total weight of t after a change.
func (e *Emulator) noteLocked(t Target) {
	list, err := e.state.servers(t)
	if err != nil {
		return
	}
	total := 0
	for _, s := range list {
		total += s.Weight
	}
	if low, ok := e.low[t]; !ok || total < low {
		e.low[t] = total
	}
}

// SetFaults replaces the random fault knobs.
func (e *Emulator) SetFaults(f Faults) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.faults = f
}

// Inject makes the next times calls of action fail with code and HTTP status.
func (e *Emulator) Inject(action, code string, status, times int) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.injected = append(e.injected, injection{action: action, code: code, status: status, left: times})
}

// FailJobs makes the next n ALB asynchronous jobs end Failed with code;
// their changes are not applied.
func (e *Emulator) FailJobs(n int, code string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for range n {
		e.failJobs = append(e.failJobs, code)
	}
}

// Calls returns how many API calls were answered, per action (errors included).
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make(map[string]int, len(e.calls))
	for k, v := range e.calls {
		out[k] = v
	}
	return out
}

// ResetCalls sets every call counter back to zero and empties the call log.
func (e *Emulator) ResetCalls() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.calls)
	e.callLog = nil
}

// Call is one answered API call, as the call log keeps it.
type Call struct {
	Action string
	DryRun bool   // the request asked for DryRun=true
	Code   string // the error code answered; "" on success
}

// maxCallLog bounds the call log.
const maxCallLog = 10000

// CallLog returns the latest answered calls (at most 10,000), oldest first:
// what a test needs to show that a client only read.
func (e *Emulator) CallLog() []Call {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.callLog)
}

// LoadState reads a state file written by the emulator (or by hand).
func LoadState(path string) (State, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return State{}, fmt.Errorf("reading emulator state: %w", err)
	}
	var s State
	d := json.NewDecoder(bytes.NewReader(b))
	d.DisallowUnknownFields()
	if err := d.Decode(&s); err != nil {
		return State{}, fmt.Errorf("reading emulator state %s: %w", path, err)
	}
	return s, nil
}

// saveLocked writes the state file, atomically, when one is configured.
func (e *Emulator) saveLocked() {
	if e.opts.StateFile == "" {
		return
	}
	if err := writeState(e.opts.StateFile, e.state); err != nil {
		e.log.Error("saving emulator state failed", "err", err)
	}
}

func writeState(path string, s State) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".state-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

func cloneState(s State) State {
	b, err := json.Marshal(s)
	if err != nil {
		panic(err) // plain structs of strings and ints always marshal
	}
	var out State
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// requestID imitates the service's request ids (UUID-like, upper case).
func (e *Emulator) requestIDLocked() string {
	e.seq++
	r := e.rng.Uint64()
	return fmt.Sprintf("%08X-%04X-%04X-%04X-%012X", uint32(r), uint16(r>>32), e.seq&0xffff, uint16(r>>48), e.rng.Uint64()&0xffffffffffff)
}

// apiError is an error answer of the OpenAPI.
type apiError struct {
	status  int
	code    string
	message string
}

func (a *apiError) Error() string { return a.code + ": " + a.message }

func errf(status int, code, format string, args ...any) *apiError {
	return &apiError{status: status, code: code, message: fmt.Sprintf(format, args...)}
}

// ServeHTTP answers one OpenAPI request.
//
// Wire format (verified by pointing darabonba-openapi v2.2.1 at a local
// server): POST /
// with the parameters in the query, and for some calls in a form body;
// Action and Version in the x-acs-action/x-acs-version headers (ACS3) or
// in the query (legacy RPC signature). Success is HTTP 200 with a JSON
// body; an error is HTTP 4xx/5xx with {"RequestId","HostId","Code",
// "Message","Recommend"} (darabonba-openapi doRequest_opResponse).
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	req, aerr := e.authenticate(r)
	action := ""
	if req != nil {
		action = req.action
	}
	var body any
	if aerr == nil {
		aerr = e.injectFaults(r, action)
	}
	if aerr == nil {
		body, aerr = e.dispatch(req)
	}
	e.mu.Lock()
	e.calls[action]++
	c := Call{Action: action, DryRun: req != nil && req.get("DryRun") == "true"}
	if aerr != nil {
		c.Code = aerr.code
	}
	if len(e.callLog) == maxCallLog {
		e.callLog = e.callLog[1:]
	}
	e.callLog = append(e.callLog, c)
	rid := e.requestIDLocked()
	e.mu.Unlock()

	w.Header().Set("Content-Type", "application/json;charset=utf-8")
	w.Header().Set("x-acs-request-id", rid)
	if aerr != nil {
		e.log.Debug("emulated api error", "action", action, "code", aerr.code)
		host := "alb." + e.opts.Region + ".aliyuncs.com"
		product := "Alb"
		if req != nil && req.version == slbVersion {
			host, product = "slb.aliyuncs.com", "Slb"
		}
		if aerr.code == "Throttling.User" {
			// The SDK parses TimeLeft from this header (darabonba
			// GetThrottlingTimeLeft); the header name is from the SDK.
			w.Header().Set("x-ratelimit-user-api", "Limit:100,Remain:0,TimeLeft:1000,Reset:1")
		}
		w.WriteHeader(aerr.status)
		_ = json.NewEncoder(w).Encode(map[string]string{
			"RequestId": rid,
			"HostId":    host,
			"Code":      aerr.code,
			"Message":   aerr.message,
			"Recommend": "https://api.aliyun.com/troubleshoot?q=" + aerr.code + "&product=" + product,
		})
		return
	}
	out := map[string]any{"RequestId": rid}
	b, _ := json.Marshal(body)
	_ = json.Unmarshal(b, &out)
	out["RequestId"] = rid
	_ = json.NewEncoder(w).Encode(out)
}

// injectFaults applies latency, injected codes and random faults.
func (e *Emulator) injectFaults(r *http.Request, action string) *apiError {
	e.mu.Lock()
	f := e.faults
	var inj *apiError
	for i := range e.injected {
		in := &e.injected[i]
		if in.left > 0 && in.action == action {
			in.left--
			inj = errf(in.status, in.code, "Injected fault.")
			break
		}
	}
	e.injected = slices.DeleteFunc(e.injected, func(in injection) bool { return in.left <= 0 })
	roll := e.rng.Float64()
	e.mu.Unlock()

	if f.Latency > 0 {
		t := time.NewTimer(f.Latency)
		select {
		case <-r.Context().Done():
		case <-t.C:
		}
		t.Stop()
	}
	switch {
	case inj != nil:
		return inj
	case roll < f.ThrottleRate:
		// Throttling.User, HTTP 400: the code the SDK itself singles out
		// (darabonba doRequest_opResponse); message as the gateway words it.
		return errf(http.StatusBadRequest, "Throttling.User", "Request was denied due to user flow control.")
	case roll < f.ThrottleRate+f.ErrorRate:
		// ServiceUnavailable, HTTP 503: retried by Terraform's NeedRetry.
		return errf(http.StatusServiceUnavailable, "ServiceUnavailable", "The request has failed due to a temporary failure of the server.")
	}
	return nil
}

func (e *Emulator) dispatch(req *request) (any, *apiError) {
	switch req.version {
	case albVersion:
		if h, ok := albActions[req.action]; ok {
			return h(e, req)
		}
	case slbVersion:
		if h, ok := slbActions[req.action]; ok {
			return h(e, req)
		}
	}
	// InvalidAction.NotFound, HTTP 404: the OpenAPI gateway's answer to an
	// unknown action (UNVERIFIED wording; the code is the gateway's common one).
	return nil, errf(http.StatusNotFound, "InvalidAction.NotFound", "Specified api is not found, please check your url and method.")
}

// request is an authenticated call: its action, version and parameters
// (query and form body merged, as the service reads them).
type request struct {
	action, version string
	params          map[string]string
	now             time.Time
}

func (r *request) get(name string) string { return r.params[name] }

// indexed returns the values of a repeated parameter Name.1, Name.2, ...
// (the SDK's flattening, darabonba-openapi utils flatRepeatedList).
func (r *request) indexed(name string) []map[string]string {
	var out []map[string]string
	for i := 1; ; i++ {
		prefix := fmt.Sprintf("%s.%d", name, i)
		m := map[string]string{}
		if v, ok := r.params[prefix]; ok {
			m[""] = v
		}
		for k, v := range r.params {
			if rest, ok := strings.CutPrefix(k, prefix+"."); ok {
				m[rest] = v
			}
		}
		if len(m) == 0 {
			return out
		}
		out = append(out, m)
	}
}
