package reconcile

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Live is everything observed about one service in one pass. Observation is
// all or nothing: a Live is only planned on when every read succeeded
// (stale data beats partial data, and no data beats both).
type Live struct {
	Bindings []BindingLive                    `json:"bindings"`
	Registry *providers.RegistryView          `json:"registry,omitempty"` // nil when the service has no registry
	Probes   map[string]providers.ProbeResult `json:"probes,omitempty"`   // by ip:port; only for probed instances
	Evidence map[string]*providers.Evidence   `json:"evidence,omitempty"` // by ip:port; nil value: could not be read
	// EvidenceErrors says why the evidence of an instance could not be read
	// (by ip:port), e.g. that its metrics have none of the configured series.
	EvidenceErrors map[string]string `json:"evidenceErrors,omitempty"`
	// Analysis is the measurement of the analysis gate taken in this pass
	// (nil when none was due).
	Analysis *AnalysisSample `json:"analysis,omitempty"`
}

// BindingLive is one binding as its load balancer reports it.
type BindingLive struct {
	Binding  spec.Binding        `json:"binding"`
	Backends []providers.Backend `json:"backends"`
	// SlowStart is the LB's slow-start duration for servers that have just
	// become healthy (ALB server group SlowStartConfig), 0 when off or not
	// supported.
	SlowStart time.Duration `json:"slowStart,omitempty"`
}

// Active is the live active group derived from weights and the registry.
type Active string

const (
	ActiveA       Active = "A"
	ActiveB       Active = "B"
	ActiveBoth    Active = "both"    // both groups carry traffic
	ActiveNeither Active = "neither" // no group carries all traffic
	ActiveMixed   Active = "mixed"   // some instances of a group carry traffic, some do not
)

// view answers questions about a Live in terms of one service's groups.
type view struct {
	svc  *spec.Service
	live *Live
}

// backend finds in's server in a binding's list: the same id and, where
// the load balancer reports them (HAProxy's addr, ALB's ServerIp and Port,
// SLB's ServerIp and Port), the same ip:port. Matching by id alone would
// take a mistyped id for an idle instance.
func (v view) backend(bl BindingLive, in spec.Instance) (providers.Backend, bool) {
	for _, b := range bl.Backends {
		if b.ID == in.ID && sameAddr(b, in) {
			return b, true
		}
	}
	return providers.Backend{}, false
}

// sameAddr reports whether b is at in's ip:port, as far as the LB says.
func sameAddr(b providers.Backend, in spec.Instance) bool {
	return (b.IP == "" || b.IP == in.IP) && (b.Port == 0 || b.Port == in.Port)
}

// absent says why in has no server in a binding's list: its id is at
// another address, its address has another id, or neither is there. ""
// when it has one.
func (v view) absent(bl BindingLive, in spec.Instance) string {
	if _, ok := v.backend(bl, in); ok {
		return ""
	}
	for _, b := range bl.Backends {
		if b.ID == in.ID {
			return fmt.Sprintf("%s lists server %s at %s:%d, but the spec has %s at %s", bl.Binding.Key(), b.ID, b.IP, b.Port, in.ID, in.Addr())
		}
	}
	for _, b := range bl.Backends {
		if b.ID != in.ID && b.IP == in.IP && b.Port == in.Port {
			return fmt.Sprintf("%s lists %s as server %s, but the spec names it %s", bl.Binding.Key(), in.Addr(), b.ID, in.ID)
		}
	}
	if len(bl.Backends) == 0 {
		return fmt.Sprintf("%s answered with an empty server list, which has no %s", bl.Binding.Key(), in)
	}
	return fmt.Sprintf("%s has no server %s", bl.Binding.Key(), in)
}

// mismatches lists the instances whose id and ip:port disagree with a
// binding's server list (a mistyped id or address in the spec, or a server
// re-created elsewhere).
func (v view) mismatches() []string {
	var out []string
	for _, bl := range v.live.Bindings {
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range v.svc.Groups.Get(g) {
				if _, ok := v.backend(bl, in); ok {
					continue
				}
				for _, b := range bl.Backends {
					if (b.ID == in.ID) != (b.IP == in.IP && b.Port == in.Port) {
						out = append(out, v.absent(bl, in))
						break
					}
				}
			}
		}
	}
	return out
}

func (v view) registryInstance(in spec.Instance) (providers.RegistryInstance, bool) {
	if v.live.Registry == nil {
		return providers.RegistryInstance{}, false
	}
	for _, r := range v.live.Registry.Instances {
		if r.IP == in.IP && r.Port == in.Port {
			return r, true
		}
	}
	return providers.RegistryInstance{}, false
}

func (v view) visible(in spec.Instance) bool {
	if v.live.Registry == nil {
		return false
	}
	for _, a := range v.live.Registry.Visible {
		if a.IP == in.IP && a.Port == in.Port {
			return true
		}
	}
	return false
}

func (v view) hasRegistry() bool { return v.svc.Registry != nil && v.svc.Registry.Nacos != nil }

// weighted reports how many instances of g carry weight on the binding, and
// whether every instance of g has exactly want (want < 0: any weight > 0).
func (v view) weightState(bl BindingLive, g spec.Group) (on, total int) {
	insts := v.svc.Groups.Get(g)
	for _, in := range insts {
		if b, ok := v.backend(bl, in); ok && b.Weight > 0 {
			on++
		}
	}
	return on, len(insts)
}

// groupOn reports whether every instance of g has weight > 0 on every
// main binding and is enabled in the registry. The preview bindings do not
// count towards the live active group: during a release they carry the
// target before the main traffic moves (gate_preview.go), and when idle a
// preview binding on the wrong group is drift (idle.go), not a change of
// the active group.
func (v view) groupOn(g spec.Group) bool {
	for _, bl := range v.live.Bindings {
		if bl.Binding.Preview {
			continue
		}
		if on, total := v.weightState(bl, g); on != total {
			return false
		}
	}
	if v.hasRegistry() {
		for _, in := range v.svc.Groups.Get(g) {
			if r, ok := v.registryInstance(in); !ok || !r.Enabled {
				return false
			}
		}
	}
	return true
}

// groupOff reports whether no instance of g has weight on a main binding
// or is enabled.
func (v view) groupOff(g spec.Group) bool {
	for _, bl := range v.live.Bindings {
		if bl.Binding.Preview {
			continue
		}
		if on, _ := v.weightState(bl, g); on > 0 {
			return false
		}
	}
	if v.hasRegistry() {
		for _, in := range v.svc.Groups.Get(g) {
			if r, ok := v.registryInstance(in); ok && r.Enabled {
				return false
			}
		}
	}
	return true
}

// active derives the live active group from groupOn and groupOff: A or B
// when that group is on and the other off, otherwise both, neither or mixed.
func (v view) active() Active {
	return activeOf(v.groupOn(spec.GroupA), v.groupOn(spec.GroupB), v.groupOff(spec.GroupA), v.groupOff(spec.GroupB))
}

// activeOf names what carries traffic from whether each group is all on
// and all off.
func activeOf(aOn, bOn, aOff, bOff bool) Active {
	switch {
	case aOn && bOff:
		return ActiveA
	case bOn && aOff:
		return ActiveB
	case aOn && bOn:
		return ActiveBoth
	case aOff && bOff:
		return ActiveNeither
	}
	return ActiveMixed
}

// version returns the running version of an instance ("" when unknown).
func (v view) version(in spec.Instance) string {
	if key := v.svc.Health.Version.NacosMetadata; key != "" {
		if r, ok := v.registryInstance(in); ok {
			return r.Metadata[key]
		}
		return ""
	}
	if p, ok := v.live.Probes[in.Addr()]; ok {
		return p.Version
	}
	return ""
}

// groupVersion returns the version every instance of g runs, or "" when they
// differ or one is unknown.
func (v view) groupVersion(g spec.Group) string {
	ver := ""
	for i, in := range v.svc.Groups.Get(g) {
		iv := v.version(in)
		if iv == "" || (i > 0 && iv != ver) {
			return ""
		}
		ver = iv
	}
	return ver
}

// versionKnown reports whether versions of g can be read from this Live.
func (v view) versionKnown(g spec.Group) bool {
	if v.svc.Health.Version.NacosMetadata != "" {
		return v.live.Registry != nil
	}
	for _, in := range v.svc.Groups.Get(g) {
		if _, ok := v.live.Probes[in.Addr()]; !ok {
			return false
		}
	}
	return true
}

// verified reports whether every instance of g is healthy, registered and
// runs version ("" when the version is unknown, e.g. the source group of a
// transition that began with unreadable versions), and if not, why.
func (v view) verified(g spec.Group, version string) (bool, string) {
	for _, in := range v.svc.Groups.Get(g) {
		p, ok := v.live.Probes[in.Addr()]
		switch {
		case !ok:
			return false, fmt.Sprintf("%s not probed yet", in)
		case !p.Healthy:
			return false, fmt.Sprintf("%s unhealthy: %s", in, orDash(p.Detail))
		}
		if got := v.version(in); version != "" && got != version {
			return false, fmt.Sprintf("%s runs %s, want %s", in, orDash(got), version)
		}
		if v.hasRegistry() {
			if _, ok := v.registryInstance(in); !ok {
				return false, fmt.Sprintf("%s is not registered in %s", in, v.svc.Registry.Nacos)
			}
		}
		for _, bl := range v.live.Bindings {
			b, ok := v.backend(bl, in)
			switch {
			case !ok:
				return false, fmt.Sprintf("%s is not a backend of %s", in, bl.Binding.Key())
			case b.Health == providers.HealthUnhealthy:
				return false, fmt.Sprintf("%s reports %s unhealthy%s", bl.Binding.Key(), in, because(b.Reason))
			}
		}
	}
	return true, ""
}

// unhealthy lists the instances of g that a probe or an LB reports unhealthy.
func (v view) unhealthy(g spec.Group) []string {
	var out []string
	for _, in := range v.svc.Groups.Get(g) {
		if p, ok := v.live.Probes[in.Addr()]; ok && !p.Healthy {
			out = append(out, fmt.Sprintf("%s: %s", in, orDash(p.Detail)))
			continue
		}
		for _, bl := range v.live.Bindings {
			if b, ok := v.backend(bl, in); ok && b.Health == providers.HealthUnhealthy {
				out = append(out, fmt.Sprintf("%s: unhealthy on %s", in, bl.Binding.Key()))
				break
			}
		}
	}
	return out
}

// evidence sums the drain evidence of g: sessions the LBs still route to it
// and the instances' own in-flight and session counts. known is false when
// any source could not be read (unknown is never taken for zero).
func (v view) evidence(g spec.Group) (total int, known bool, detail string) {
	known = true
	var parts []string
	for _, bl := range v.live.Bindings {
		n := 0
		for _, in := range v.svc.Groups.Get(g) {
			if b, ok := v.backend(bl, in); ok {
				if b.Sessions < 0 {
					continue // this LB does not report sessions
				}
				n += b.Sessions
			}
		}
		total += n
		parts = append(parts, fmt.Sprintf("%s sessions=%d", bl.Binding.Key(), n))
	}
	if v.svc.Drain.Metrics != "" {
		inflight, sessions := 0, 0
		for _, in := range v.svc.Groups.Get(g) {
			e, ok := v.live.Evidence[in.Addr()]
			if !ok || e == nil {
				known = false
				msg := v.live.EvidenceErrors[in.Addr()] // "evidence of ip:port: why"
				if msg == "" {
					msg = fmt.Sprintf("%s evidence unreadable", in)
				}
				parts = append(parts, msg)
				continue
			}
			inflight += e.InFlight
			sessions += e.Sessions
		}
		total += inflight + sessions
		parts = append(parts, fmt.Sprintf("in-flight=%d websockets=%d", inflight, sessions))
	}
	return total, known, strings.Join(parts, ", ")
}

// unknownBackends lists LB backends and registry instances the spec does not know.
func (v view) unknown() []string {
	var out []string
	for _, bl := range v.live.Bindings {
		for _, b := range bl.Backends {
			if _, ok := v.svc.Groups.GroupOfID(b.ID); !ok {
				if g, ok := v.svc.Groups.GroupOf(b.IP, b.Port); ok {
					out = append(out, fmt.Sprintf("%s has backend %s (%s:%d) whose address is an instance of group %s under another id", bl.Binding.Key(), b.ID, b.IP, b.Port, g))
					continue
				}
				out = append(out, fmt.Sprintf("%s has backend %s (%s:%d) that is in neither group", bl.Binding.Key(), b.ID, b.IP, b.Port))
			}
		}
	}
	if v.live.Registry != nil {
		for _, r := range v.live.Registry.Instances {
			if _, ok := v.svc.Groups.GroupOf(r.IP, r.Port); !ok {
				out = append(out, fmt.Sprintf("%s has instance %s:%d that is in neither group", v.svc.Registry.Nacos, r.IP, r.Port))
			}
		}
	}
	sort.Strings(out)
	return out
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// because renders an LB's reason as " (reason)", or "" without one.
func because(reason string) string {
	if reason == "" {
		return ""
	}
	return " (" + reason + ")"
}
