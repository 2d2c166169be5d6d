// Package all is the one place that names every concrete provider: it
// builds the reconciler's providers.Set from the daemon configuration.
// Adding a provider kind means adding it here (see providers/README.md).
package all

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alb"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/providers/haproxy"
	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/providers/probe"
	"github.com/tandemhq/tandem/providers/slb"
	"github.com/tandemhq/tandem/spec"
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
	for _, p := range cfg.Providers.ALB {
		lb, err := alb.New(p, log)
		if err != nil {
			return fail(fmt.Errorf("alb provider %s: %w", p.Name, err))
		}
		set.LoadBalancers[providers.LBKey(spec.KindALB, p.Name)] = lb
	}
	for _, p := range cfg.Providers.SLB {
		lb, err := slb.New(p, log)
		if err != nil {
			return fail(fmt.Errorf("slb provider %s: %w", p.Name, err))
		}
		set.LoadBalancers[providers.LBKey(spec.KindSLB, p.Name)] = lb
	}
	for _, p := range cfg.Providers.HAProxy {
		lb, err := haproxy.New(p, log)
		if err != nil {
			return fail(fmt.Errorf("haproxy provider %s: %w", p.Name, err))
		}
		set.LoadBalancers[providers.LBKey(spec.KindHAProxy, p.Name)] = lb
	}
	for _, p := range cfg.Providers.Nacos {
		reg, err := nacos.New(p, log)
		if err != nil {
			return fail(fmt.Errorf("nacos provider %s: %w", p.Name, err))
		}
		closers = append(closers, reg.Close)
		set.Registries[p.Name] = reg
	}
	return set, closeAll, nil
}
