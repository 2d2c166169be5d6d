package spec

import (
	"fmt"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// LBKind describes one kind of load balancer that traffic bindings name.
// It is the one place that says what a kind is: its binding fields, which
// of them are required, its key format, its maximum weight, whether it
// reports sessions, when its health checks cannot confirm a shift, and
// where its provider instances are configured. Binding, Service validation,
// Config.HasProvider, providers/all and reconcile read from it; none of
// them names a kind.
//
// The built-in kinds (alb, slb, haproxy) keep their binding fields in
// Binding and their configuration in Providers. A kind defined in its own
// package registers with RegisterLBKind: its binding fields are strings
// kept in Binding.Ext, and its provider instances are decoded, as strictly
// as the rest, from providers.<Name> into values of the type of Config.
type LBKind struct {
	// Name is the binding field that names the provider instance, the key
	// of the kind's list under providers, and the prefix of binding keys.
	Name string
	// Article goes before Name in messages ("an" alb binding); default "a".
	Article string
	// Fields are the kind's binding fields besides Name and weight; the
	// fields of other kinds are refused on its bindings.
	Fields []string
	// Required are the fields every binding of the kind must set.
	Required []string
	// MaxWeight is the highest weight the load balancer takes.
	MaxWeight int
	// Sessions: the load balancer reports the sessions it still routes to
	// each backend (providers.Backend.Sessions), which drains wait for.
	Sessions bool
	// Key identifies a binding in plans, status and logs; nil: the name,
	// the provider instance and the Required fields joined, e.g.
	// fake:one/pool-1.
	Key func(b Binding) string
	// Check reports problems of a binding beyond required and foreign
	// fields and the weight; nil: none.
	Check func(b Binding, bad func(field, format string, args ...any))
	// PreviewClash returns why preview binding p, whose key differs from
	// that of main binding m, would still receive m's traffic (e.g. an SLB
	// listener shared with m), "" when it has a route of its own; nil: the
	// binding keys alone tell (ALB: the server group; HAProxy: the
	// backend). A preview route that shares the main route is no preview:
	// moving it would move main traffic.
	PreviewClash func(p, m Binding) string
	// Unconfirmed returns a warning when the load balancer's own health
	// checks cannot confirm a shift on b; nil: never.
	Unconfirmed func(b Binding) string
	// Instances returns the provider instances of the kind that c
	// configures; nil for a registered kind (they come from
	// providers.<Name>, decoded into Config's type).
	Instances func(c *Config) []ProviderConfig
	// Config is a zero value of the type of one provider instance of a
	// registered kind (it may implement Defaulter and Validator); nil for
	// the built-in kinds.
	Config ProviderConfig

	provider func(b Binding) string // reads the Name field (Binding.Kind is on every hot path)
}

// ProviderConfig is the configuration of one provider instance.
type ProviderConfig interface {
	ProviderName() string
}

// Defaulter is implemented by provider configurations that fill their
// optional fields.
type Defaulter interface {
	Default()
}

// Validator is implemented by provider configurations that check
// themselves; base is their path, e.g. providers.alb[0].
type Validator interface {
	Validate(base string, bad func(path, format string, args ...any))
}

// ProviderName implements ProviderConfig.
func (p AlibabaProvider) ProviderName() string { return p.Name }

// ProviderName implements ProviderConfig.
func (p HAProxyProvider) ProviderName() string { return p.Name }

// ProviderName implements ProviderConfig.
func (p NacosProvider) ProviderName() string { return p.Name }

// lbKinds holds the kinds; registration copies it, so that readers (every
// Binding.Key) take no lock.
var (
	kindsMu sync.Mutex // serialises registrations
	lbKinds atomic.Pointer[[]LBKind]
)

// The built-in kinds. (Set in init: their warnings call Binding.Key, which
// reads lbKinds.)
func init() {
	lbKinds.Store(&[]LBKind{
		{
			Name: KindALB, Article: "an", Fields: []string{"serverGroup", "listener"}, Required: []string{"serverGroup"}, MaxWeight: 100,
			provider: func(b Binding) string { return b.ALB },
			Key:      func(b Binding) string { return "alb:" + b.ALB + "/" + b.ServerGroup },
			Unconfirmed: func(b Binding) string {
				if b.Listener != "" {
					return ""
				}
				return fmt.Sprintf("warning: binding %s names no listener: the shift cannot be confirmed by the LB's health checks (set listener to the listener that forwards to %s)", b.Key(), b.ServerGroup)
			},
			Instances: func(c *Config) []ProviderConfig { return configs(c.Providers.ALB) },
		},
		{
			Name: KindSLB, Article: "an", Fields: []string{"loadBalancer", "vServerGroup", "listenerPort"}, Required: []string{"loadBalancer"}, MaxWeight: 100,
			provider: func(b Binding) string { return b.SLB },
			Key: func(b Binding) string {
				return "slb:" + b.SLB + "/" + b.LoadBalancer + "/" + valueOr(b.VServerGroup, "default")
			},
			Check: func(b Binding, bad func(field, format string, args ...any)) {
				if b.ListenerPort < 0 || b.ListenerPort > 65535 {
					bad("listenerPort", "must be 1..65535")
				}
			},
			PreviewClash: func(p, m Binding) string {
				if p.SLB != m.SLB || p.LoadBalancer != m.LoadBalancer {
					return ""
				}
				if p.ListenerPort != 0 && p.ListenerPort == m.ListenerPort {
					return fmt.Sprintf("listenerPort %d is the listener of main binding %s; a preview route needs a listener of its own (a test listener that forwards to %s)", p.ListenerPort, m.Key(), valueOr(p.VServerGroup, "default"))
				}
				return ""
			},
			Unconfirmed: func(b Binding) string {
				if b.ListenerPort != 0 {
					return ""
				}
				return fmt.Sprintf("warning: binding %s names no listener: the shift cannot be confirmed by the LB's health checks (set listenerPort)", b.Key())
			},
			Instances: func(c *Config) []ProviderConfig { return configs(c.Providers.SLB) },
		},
		{
			Name: KindHAProxy, Article: "an", Fields: []string{"backend"}, Required: []string{"backend"}, MaxWeight: 256, Sessions: true,
			provider:  func(b Binding) string { return b.HAProxy },
			Key:       func(b Binding) string { return "haproxy:" + b.HAProxy + "/" + b.Backend },
			Instances: func(c *Config) []ProviderConfig { return configs(c.Providers.HAProxy) },
		},
	})
}

// builtinFields reads the binding fields that are fields of Binding.
var builtinFields = map[string]func(b Binding) string{
	KindALB:        func(b Binding) string { return b.ALB },
	"serverGroup":  func(b Binding) string { return b.ServerGroup },
	"listener":     func(b Binding) string { return b.Listener },
	KindSLB:        func(b Binding) string { return b.SLB },
	"loadBalancer": func(b Binding) string { return b.LoadBalancer },
	"vServerGroup": func(b Binding) string { return b.VServerGroup },
	"listenerPort": func(b Binding) string {
		if b.ListenerPort == 0 {
			return ""
		}
		return strconv.Itoa(b.ListenerPort)
	},
	KindHAProxy: func(b Binding) string { return b.HAProxy },
	"backend":   func(b Binding) string { return b.Backend },
}

// configs points at the instances of list, so that Default fills them.
func configs[T any, P interface {
	*T
	ProviderConfig
}](list []T) []ProviderConfig {
	out := make([]ProviderConfig, len(list))
	for i := range list {
		out[i] = P(&list[i])
	}
	return out
}

func valueOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// RegisterLBKind adds a load-balancer kind. It panics when the kind is
// incomplete or its name or a field clashes with a kind already there, as
// a programming error found by the first test. Call it from an init
// function of the kind's provider package, before
// providers.RegisterLoadBalancer.
func RegisterLBKind(k LBKind) {
	kindsMu.Lock()
	defer kindsMu.Unlock()
	if k.Name == "" || k.MaxWeight < 1 || k.Config == nil || k.Instances != nil {
		panic(fmt.Sprintf("spec: load-balancer kind %q needs a name, a maximum weight and a Config type (and no Instances)", k.Name))
	}
	own := fieldsOf(reflect.TypeOf(Binding{})).index
	for _, f := range append([]string{k.Name}, k.Fields...) {
		if _, builtin := own[f]; builtin {
			panic(fmt.Sprintf("spec: load-balancer kind %q: %q is a field of a built-in kind", k.Name, f))
		}
	}
	for _, o := range LBKinds() {
		if o.Name == k.Name {
			panic(fmt.Sprintf("spec: load-balancer kind %q is registered twice", k.Name))
		}
	}
	if _, clash := fieldsOf(reflect.TypeOf(Providers{})).index[k.Name]; clash {
		panic(fmt.Sprintf("spec: load-balancer kind %q clashes with a provider kind", k.Name))
	}
	name := k.Name
	k.provider = func(b Binding) string { return b.Ext[name] }
	lbKinds.Store(new(append(slices.Clone(LBKinds()), k)))
}

// LBKinds returns every load-balancer kind, the built-in ones first. The
// slice is shared: do not modify it.
func LBKinds() []LBKind { return *lbKinds.Load() }

// LookupLBKind returns the load-balancer kind of that name.
func LookupLBKind(name string) (LBKind, bool) {
	for _, k := range LBKinds() {
		if k.Name == name {
			return k, true
		}
	}
	return LBKind{}, false
}

// Configured returns the provider instances of kind k that c configures.
func (k LBKind) Configured(c *Config) []ProviderConfig {
	if k.Instances != nil {
		return k.Instances(c)
	}
	return c.Providers.Ext[k.Name]
}

func (k LBKind) key(b Binding) string {
	if k.Key != nil {
		return k.Key(b)
	}
	parts := []string{b.Field(k.Name)}
	for _, f := range k.Required {
		parts = append(parts, b.Field(f))
	}
	return k.Name + ":" + strings.Join(parts, "/")
}

// kindNames is "alb, slb or haproxy".
func kindNames(ks []LBKind) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Field returns the value of a binding field by its YAML name ("" when
// unset), for the built-in fields and those of registered kinds alike.
func (b Binding) Field(name string) string {
	if f, ok := builtinFields[name]; ok {
		return f(b)
	}
	return b.Ext[name]
}

// kind returns the binding's kind, nil when none is set: the first of
// several, which validation refuses.
func (b Binding) kind() *LBKind {
	ks := LBKinds()
	for i := range ks {
		if ks[i].provider(b) != "" {
			return &ks[i]
		}
	}
	return nil
}

// validateKind checks the kind-specific part of binding b at path p: one
// kind, its required fields, no field of another kind, the weight.
func validateKind(b Binding, p string, bad func(path, format string, args ...any)) bool {
	ks := LBKinds()
	var k LBKind
	n := 0
	for _, c := range ks {
		if c.provider(b) != "" {
			k, n = c, n+1
		}
	}
	if n != 1 {
		bad(p, "must name exactly one of %s", kindNames(ks))
		return false
	}
	for _, f := range k.Required {
		if b.Field(f) == "" {
			bad(p+"."+f, "is required for %s %s binding", valueOr(k.Article, "a"), k.Name)
		}
	}
	if k.Check != nil {
		k.Check(b, func(field, format string, args ...any) { bad(p+"."+field, format, args...) })
	}
	seen := map[string]bool{}
	for _, o := range ks {
		for _, f := range o.Fields {
			if seen[f] || slices.Contains(k.Fields, f) {
				continue
			}
			seen[f] = true
			if b.Field(f) != "" {
				bad(p+"."+f, "does not apply to a %s binding", k.Name)
			}
		}
	}
	if b.Weight < 1 || b.Weight > k.MaxWeight {
		bad(p+".weight", "must be 1..%d for %s", k.MaxWeight, k.Name)
	}
	return true
}

// extraBindingFields are the binding fields of the registered kinds.
func extraBindingFields() []string {
	var out []string
	for _, k := range LBKinds() {
		if k.Config != nil {
			out = append(out, k.Name)
			out = append(out, k.Fields...)
		}
	}
	return out
}
