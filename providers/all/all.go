// Package all is the one place that names every concrete provider: it
// builds the reconciler's providers.Set from the daemon configuration.
// Load-balancer kinds register themselves (providers.RegisterLoadBalancer)
// when their package is imported here; adding one is one import line (see
// providers/README.md).
package all

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/providers/probe"
	"github.com/tandemhq/tandem/providers/prometheus"
	"github.com/tandemhq/tandem/providers/smoke"
	"github.com/tandemhq/tandem/spec"

	// Load-balancer kinds: one line each.
	_ "github.com/tandemhq/tandem/providers/alb"
	_ "github.com/tandemhq/tandem/providers/haproxy"
	_ "github.com/tandemhq/tandem/providers/slb"
)

// New builds every provider instance the configuration defines. The
// returned close function releases them (SDK connections, caches).
// Provider names are unique per kind (spec validation refuses duplicates).
func New(cfg *spec.Config, log *slog.Logger) (*providers.Set, func() error, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	deployPolicy := deploy.PolicyOf(cfg)
	set := &providers.Set{
		LoadBalancers: map[string]providers.LoadBalancer{},
		Registries:    map[string]providers.Registry{},
		Instances:     probe.New(cfg.ProbeHosts(), log),
		Deployer: func(svc *spec.Service) (providers.Deployer, error) {
			return deploy.New(svc.Deploy, deployPolicy, log)
		},
		// Smoke requests go where probes go; its exec hook is a deploy hook.
		Smoke: smoke.New(cfg.ProbeHosts(), deployPolicy, log),
	}
	var closers []func() error
	closeAll := func() error {
		var errs []error
		for _, c := range closers {
			errs = append(errs, c())
		}
		return errors.Join(errs...)
	}
	fail := func(err error) (*providers.Set, func() error, error) {
		_ = closeAll()
		return nil, nil, err
	}
	for _, k := range spec.LBKinds() {
		instances := k.Configured(cfg)
		if len(instances) == 0 {
			continue
		}
		build, ok := providers.LoadBalancerBuilder(k.Name)
		if !ok {
			return fail(fmt.Errorf("%s providers are configured, but no provider package of that kind is linked in", k.Name))
		}
		for _, p := range instances {
			lb, err := build(p, log)
			if err != nil {
				return fail(fmt.Errorf("%s provider %s: %w", k.Name, p.ProviderName(), err))
			}
			set.LoadBalancers[providers.LBKey(k.Name, p.ProviderName())] = lb
		}
	}
	for _, p := range cfg.Providers.Nacos {
		reg, err := nacos.New(p, log)
		if err != nil {
			return fail(fmt.Errorf("nacos provider %s: %w", p.Name, err))
		}
		closers = append(closers, reg.Close)
		set.Registries[p.Name] = reg
	}
	for _, p := range cfg.Providers.Prometheus {
		q, err := prometheus.New(p)
		if err != nil {
			return fail(fmt.Errorf("prometheus provider %s: %w", p.Name, err))
		}
		if set.Metrics == nil {
			set.Metrics = map[string]providers.MetricsQuerier{}
		}
		closers = append(closers, q.Close)
		set.Metrics[p.Name] = q
	}
	return set, closeAll, nil
}
