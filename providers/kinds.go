package providers

import (
	"fmt"
	"log/slog"
	"sync"

	"github.com/tandemhq/tandem/spec"
)

// NewLoadBalancer builds one provider instance of a load-balancer kind
// from its configuration, as spec.LBKind.Configured returns it.
type NewLoadBalancer func(cfg spec.ProviderConfig, log *slog.Logger) (LoadBalancer, error)

var (
	buildersMu sync.RWMutex
	builders   = map[string]NewLoadBalancer{}
)

// RegisterLoadBalancer makes a load-balancer kind buildable: the provider
// package of the kind calls it from an init function, and providers/all
// imports the package. A kind that is not built into spec passes its
// descriptor too (kind.Config set), which registers it with
// spec.RegisterLBKind; a built-in kind passes spec.LBKind{Name: name}.
// It panics on a second registration of a kind.
func RegisterLoadBalancer(kind spec.LBKind, build NewLoadBalancer) {
	if kind.Config != nil {
		spec.RegisterLBKind(kind)
	} else if _, ok := spec.LookupLBKind(kind.Name); !ok {
		panic(fmt.Sprintf("providers: %q is not a load-balancer kind of spec and the registration gives no descriptor", kind.Name))
	}
	buildersMu.Lock()
	defer buildersMu.Unlock()
	if _, dup := builders[kind.Name]; dup {
		panic(fmt.Sprintf("providers: load-balancer kind %q is registered twice", kind.Name))
	}
	builders[kind.Name] = build
}

// LoadBalancerBuilder returns how to build load balancers of a kind.
func LoadBalancerBuilder(kind string) (NewLoadBalancer, bool) {
	buildersMu.RLock()
	defer buildersMu.RUnlock()
	b, ok := builders[kind]
	return b, ok
}
