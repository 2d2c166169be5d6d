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

// RegisterLoadBalancer makes a load-balancer kind of spec buildable: the
// provider package of the kind calls it from an init function (after
// spec.RegisterLBKind for a kind that is not built into spec), and
// providers/all imports the package. It panics when spec does not know the
// kind or the kind is registered twice.
func RegisterLoadBalancer(kind string, build NewLoadBalancer) {
	if _, ok := spec.LookupLBKind(kind); !ok {
		panic(fmt.Sprintf("providers: %q is not a load-balancer kind of spec (register it with spec.RegisterLBKind first)", kind))
	}
	buildersMu.Lock()
	defer buildersMu.Unlock()
	if _, dup := builders[kind]; dup {
		panic(fmt.Sprintf("providers: load-balancer kind %q is registered twice", kind))
	}
	builders[kind] = build
}

// LoadBalancerBuilder returns how to build load balancers of a kind.
func LoadBalancerBuilder(kind string) (NewLoadBalancer, bool) {
	buildersMu.RLock()
	defer buildersMu.RUnlock()
	b, ok := builders[kind]
	return b, ok
}
