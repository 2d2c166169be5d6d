// Package spec is Tandem's desired state: the service files kept in Git and
// the daemon's own configuration. It decodes strictly (unknown fields are
// errors), applies defaults and validates, reporting every problem at once
// as FILE:LINE: field.path: message. It performs no I/O beyond reading the
// files it is given.
package spec

import (
	"fmt"
	"net"
	"strconv"
	"time"
)

// Group names one of the two interchangeable machine groups of a service.
type Group string

const (
	GroupA Group = "A"
	GroupB Group = "B"
)

// Other returns the group that is not g.
func (g Group) Other() Group {
	if g == GroupA {
		return GroupB
	}
	return GroupA
}

// Valid reports whether g is A or B.
func (g Group) Valid() bool { return g == GroupA || g == GroupB }

func (g *Group) decodeScalar(s string) error {
	if gr := Group(s); gr.Valid() {
		*g = gr
		return nil
	}
	return fmt.Errorf("must be A or B, got %q", s)
}

// Duration is a time.Duration written as "30s", "5m", "1h30m".
type Duration time.Duration

// D returns the duration as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

func (d *Duration) decodeScalar(s string) error {
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("must be a duration such as 30s or 5m, got %q", s)
	}
	if v < 0 {
		return fmt.Errorf("must not be negative, got %q", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalText makes durations print as "30s" in JSON output.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Service is one document of the desired-state repository.
type Service struct {
	Name     string     `yaml:"service" json:"service"`
	Active   Group      `yaml:"active" json:"active"`
	Version  string     `yaml:"version" json:"version"`
	Groups   Groups     `yaml:"groups" json:"groups"`
	Traffic  []Binding  `yaml:"traffic" json:"traffic"`
	Registry *Registry  `yaml:"registry" json:"registry,omitempty"`
	Deploy   Deploy     `yaml:"deploy" json:"deploy"`
	Health   Health     `yaml:"health" json:"health"`
	Drain    Drain      `yaml:"drain" json:"drain"`
	Verify   VerifySpec `yaml:"verify" json:"verify"`
	Gates    Gates      `yaml:"gates" json:"gates,omitzero"`
	Rollout  *Rollout   `yaml:"rollout" json:"rollout,omitempty"`
	After    []string   `yaml:"after" json:"after,omitempty"`
	Suspend  bool       `yaml:"suspend" json:"suspend,omitempty"`
	Source   Source     `yaml:"-" json:"source"`
	pos      positions  // field path -> line, for validation messages
}

// Source is where a service was defined.
type Source struct {
	File string `json:"file"`
	Line int    `json:"line"`
}

func (s Source) String() string { return fmt.Sprintf("%s:%d", s.File, s.Line) }

// Groups holds the instances of groups A and B.
type Groups struct {
	A GroupSpec `yaml:"A" json:"A"`
	B GroupSpec `yaml:"B" json:"B"`
}

// Get returns the instances of group g.
func (gs Groups) Get(g Group) []Instance {
	if g == GroupA {
		return gs.A.Instances
	}
	return gs.B.Instances
}

// GroupOf returns the group an instance with this address belongs to.
func (gs Groups) GroupOf(ip string, port int) (Group, bool) {
	for _, g := range []Group{GroupA, GroupB} {
		for _, in := range gs.Get(g) {
			if in.IP == ip && in.Port == port {
				return g, true
			}
		}
	}
	return "", false
}

// GroupOfID returns the group of the instance with this LB server id.
func (gs Groups) GroupOfID(id string) (Group, bool) {
	for _, g := range []Group{GroupA, GroupB} {
		for _, in := range gs.Get(g) {
			if in.ID == id {
				return g, true
			}
		}
	}
	return "", false
}

// GroupSpec is one machine group.
type GroupSpec struct {
	Instances []Instance `yaml:"instances" json:"instances"`
}

// Instance is one machine (or process) of a group.
type Instance struct {
	IP   string `yaml:"ip" json:"ip"`
	Port int    `yaml:"port" json:"port"`
	// ID is the load balancer's server id (ECS/ENI id) or the HAProxy server name.
	ID string `yaml:"id" json:"id"`
}

// Addr is ip:port.
func (i Instance) Addr() string { return net.JoinHostPort(i.IP, strconv.Itoa(i.Port)) }

func (i Instance) String() string {
	if i.ID != "" {
		return i.ID + "(" + i.Addr() + ")"
	}
	return i.Addr()
}

// Binding attaches a service to one load-balancer server group. Exactly one
// kind's name field (alb, slb, haproxy, or that of a registered kind) is
// set; it names a provider instance of the daemon's configuration. What
// each kind is, and which fields it takes, is its LBKind (kinds.go).
type Binding struct {
	ALB         string `yaml:"alb" json:"alb,omitempty"`
	ServerGroup string `yaml:"serverGroup" json:"serverGroup,omitempty"`
	Listener    string `yaml:"listener" json:"listener,omitempty"` // ALB: listener whose health status is read

	SLB          string `yaml:"slb" json:"slb,omitempty"`
	LoadBalancer string `yaml:"loadBalancer" json:"loadBalancer,omitempty"`
	VServerGroup string `yaml:"vServerGroup" json:"vServerGroup,omitempty"` // empty: the default server group
	ListenerPort int    `yaml:"listenerPort" json:"listenerPort,omitempty"` // SLB: listener whose health status is read

	HAProxy string `yaml:"haproxy" json:"haproxy,omitempty"`
	Backend string `yaml:"backend" json:"backend,omitempty"`

	// Ext holds the binding fields of registered kinds (RegisterLBKind),
	// written in YAML like the built-in ones.
	Ext map[string]string `yaml:"-" json:"ext,omitempty"`

	// Weight is what each instance of the active group gets (default 100).
	Weight int `yaml:"weight" json:"weight"`

	// Preview marks the binding as a preview route: a server group,
	// vserver group or backend that users reach through a route of their
	// own (a header or cookie forwarding rule, a test listener, an ACL),
	// not the service's main traffic. During a release it carries the
	// target group from the preview phase on, so the new version can be
	// tried through the real load balancer before the shift; otherwise it
	// follows the serving group like the main bindings. See README
	// "Preview route".
	Preview bool `yaml:"preview" json:"preview,omitempty"`
}

// The built-in binding kinds, which are also provider kinds of the daemon
// config, and the registry kind.
const (
	KindALB     = "alb"
	KindSLB     = "slb"
	KindHAProxy = "haproxy"
	KindNacos   = "nacos"
)

// Kind is the name of the binding's kind ("" when none is set; the first
// of several, which validation refuses).
func (b Binding) Kind() string {
	if k := b.kind(); k != nil {
		return k.Name
	}
	return ""
}

// LBKind returns the binding's kind.
func (b Binding) LBKind() (LBKind, bool) {
	if k := b.kind(); k != nil {
		return *k, true
	}
	return LBKind{}, false
}

// Provider is the name of the provider instance the binding uses.
func (b Binding) Provider() string {
	if k := b.kind(); k != nil {
		return k.provider(b)
	}
	return ""
}

// Key identifies the binding in plans, status and logs, e.g.
// alb:prod-hz/sgp-0123, slb:prod-hz/lb-0456/rsp-0789, haproxy:edge/user_be.
func (b Binding) Key() string {
	if k := b.kind(); k != nil {
		return k.key(b)
	}
	return "invalid-binding"
}

func (b Binding) String() string { return b.Key() }

// Registry is where consumers discover the service.
type Registry struct {
	Nacos *NacosRef `yaml:"nacos" json:"nacos,omitempty"`
}

// NacosRef locates a service in a Nacos provider instance.
type NacosRef struct {
	Provider  string `yaml:"provider" json:"provider"`
	Namespace string `yaml:"namespace" json:"namespace"`
	Group     string `yaml:"group" json:"group"`
	Service   string `yaml:"service" json:"service"`
	Cluster   string `yaml:"cluster" json:"cluster"`
}

func (r NacosRef) String() string {
	return fmt.Sprintf("nacos:%s/%s/%s@@%s#%s", r.Provider, r.Namespace, r.Group, r.Service, r.Cluster)
}

// Deploy says how the idle group is upgraded: a command or an HTTP deploy system.
type Deploy struct {
	Exec    []string    `yaml:"exec" json:"exec,omitempty"`
	HTTP    *HTTPDeploy `yaml:"http" json:"http,omitempty"`
	Timeout Duration    `yaml:"timeout" json:"timeout"`
}

// HTTPDeploy POSTs a deploy request, then polls a status URL until done.
type HTTPDeploy struct {
	URL          string            `yaml:"url" json:"url"`
	Headers      map[string]string `yaml:"headers" json:"headers,omitempty"`
	TokenEnv     string            `yaml:"tokenEnv" json:"tokenEnv,omitempty"` // bearer token read from this variable
	PollInterval Duration          `yaml:"pollInterval" json:"pollInterval"`
}

// Health says how instances are probed.
type Health struct {
	// Preset fills in what a stack answers: spring-boot (PresetSpringBoot)
	// sets http.path /actuator/health, http.jsonStatus UP and, unless
	// version is set, version.http /actuator/info with version.json
	// build.version. Fields the spec sets win.
	Preset   string        `yaml:"preset" json:"preset,omitempty"`
	HTTP     *HTTPProbe    `yaml:"http" json:"http,omitempty"`
	Version  VersionSource `yaml:"version" json:"version"`
	Timeout  Duration      `yaml:"timeout" json:"timeout"`   // per probe
	Deadline Duration      `yaml:"deadline" json:"deadline"` // how long verify may wait for the target group
}

// HTTPProbe is an HTTP GET on each instance; 2xx is healthy.
type HTTPProbe struct {
	Path   string `yaml:"path" json:"path"`
	Port   int    `yaml:"port" json:"port,omitempty"` // default: the instance port
	Scheme string `yaml:"scheme" json:"scheme"`
	// JSONStatus, when set, also requires the answer to be a JSON object
	// whose "status" is this value (Spring Boot Actuator: UP).
	JSONStatus string `yaml:"jsonStatus" json:"jsonStatus,omitempty"`
}

// VersionSource says where the running version of an instance is read.
type VersionSource struct {
	NacosMetadata string `yaml:"nacosMetadata" json:"nacosMetadata,omitempty"` // metadata key in the registry
	HTTP          string `yaml:"http" json:"http,omitempty"`                   // path whose body (or JSON "version") is the version
	// JSON is the dotted path of the version in the JSON answer of http,
	// such as build.version; default "version" (or the whole body when it
	// is not JSON).
	JSON string `yaml:"json" json:"json,omitempty"`
}

// Drain bounds how long the old group is given to finish its work.
type Drain struct {
	Propagation Duration     `yaml:"propagation" json:"propagation"`
	Quiet       Duration     `yaml:"quiet" json:"quiet"`
	Timeout     Duration     `yaml:"timeout" json:"timeout"`
	Signal      *DrainSignal `yaml:"signal" json:"signal,omitempty"`
	Metrics     string       `yaml:"metrics" json:"metrics,omitempty"` // path of the app's Prometheus text with in-flight gauges
	// Evidence says which series of Metrics count as work in flight.
	Evidence *DrainEvidence `yaml:"evidence" json:"evidence,omitempty"`
}

// DrainEvidence says which Prometheus series of drain.metrics are the
// instance's work in flight. Selectors are metric names as they appear in
// the exposition text, with optional label matchers: name{label="v"}.
// Every series any selector picks is added up once.
type DrainEvidence struct {
	// Preset names the series a stack exports (EvidencePresets: demo,
	// spring-boot, tomcat) and sets drain.metrics unless
	// the spec does.
	Preset string `yaml:"preset" json:"preset,omitempty"`
	// InFlight and Sessions are added to the preset's series.
	InFlight []string `yaml:"inFlight" json:"inFlight,omitempty"`
	Sessions []string `yaml:"sessions" json:"sessions,omitempty"`
	// Scrape selects the series that count Tandem's own metrics request
	// while it is answered; when they add up to one or more, one is taken
	// off the in-flight total, unless health.http.port sends the request
	// to a separate management port. The preset sets it.
	Scrape string `yaml:"scrape" json:"scrape,omitempty"`
}

// DrainSignal asks old instances to close long-lived sessions (WebSockets with 1001).
type DrainSignal struct {
	HTTP string `yaml:"http" json:"http"`
}

// VerifySpec is the watch after the shift.
type VerifySpec struct {
	Window           Duration `yaml:"window" json:"window"`
	FailureThreshold int      `yaml:"failureThreshold" json:"failureThreshold"`
	// LBHealthTimeout bounds how long the shift waits, after raising the
	// target group on a binding, for the load balancer's own health checks to
	// report every target server healthy before the serving group is lowered.
	LBHealthTimeout Duration `yaml:"lbHealthTimeout" json:"lbHealthTimeout"`
}

// Instances returns the instances of g as a lookup set of "ip:port".
func (s *Service) Instances(g Group) []Instance { return s.Groups.Get(g) }

// Line returns the line that defined a field path of this service, for
// messages about it. Unknown paths fall back to the service's own line.
func (s *Service) Line(path string) int {
	if s.pos == nil {
		return s.Source.Line
	}
	if l := s.pos.line(path); l > 0 {
		return l
	}
	return s.Source.Line
}

// Problem builds a located problem about a field of this service.
func (s *Service) Problem(path, format string, args ...any) Problem {
	return Problem{File: s.Source.File, Line: s.Line(path), Path: path, Msg: fmt.Sprintf(format, args...)}
}
