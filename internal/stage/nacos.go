package stage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/nacosside"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

// nacosSide is the Nacos the stage uses, as the apps and the daemon see it.
type nacosSide struct {
	name     string
	provider *spec.NacosProvider // nil when no service uses Nacos
	app      nacosapp.Config
	emu      *emulator.Emulator // nil for a real server
	metadata map[string]string  // added to every registration (Options.NacosMetadata)
}

// The Nacos user of Options.NacosPassword, and the environment variables
// the provider configuration reads the credentials from.
const (
	nacosUser        = "nacos"
	nacosUserEnv     = "TANDEM_STAGE_NACOS_USER"
	nacosPasswordEnv = "TANDEM_STAGE_NACOS_PASSWORD"
)

// startNacos starts the emulator, or adopts the server of Options.Nacos,
// when a service uses Nacos.
func (s *Stage) startNacos() (*nacosSide, error) {
	used := false
	for _, svc := range s.opts.Services {
		used = used || svc.Nacos
	}
	if !used {
		return &nacosSide{name: "none"}, nil
	}
	o := nacosside.Options{Provider: providerName, Timeout: 5 * time.Second, Log: s.log,
		Username: nacosUser, UsernameEnv: nacosUserEnv, PasswordEnv: nacosPasswordEnv, Password: s.opts.NacosPassword}
	o.Server = s.opts.Nacos
	side, err := nacosside.Start(s.ctx, o)
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	s.closers = append(s.closers, side.Close)
	n := &nacosSide{name: side.Name, provider: &side.Provider, app: side.App, emu: side.Emu, metadata: s.opts.NacosMetadata}
	s.log.Info("stage nacos", "nacos", n.name, "servers", n.provider.Servers)
	return n, nil
}

// register returns the demo apps' registration: through the official SDK,
// as an ephemeral instance with its version and group as metadata.
func (n *nacosSide) register(service string, g spec.Group) func(context.Context, *demoapp.App) (func(), error) {
	return func(ctx context.Context, a *demoapp.App) (func(), error) {
		in := a.Instance()
		md := map[string]string{"version": a.Version(), "group": string(g)}
		for k, v := range n.metadata {
			md[k] = v
		}
		return nacosapp.Register(ctx, n.app, service, in.IP, in.Port, md)
	}
}

// disableIdleGroups takes the idle group of every registered service out
// of consumers' view with the daemon's own Nacos provider, once Nacos lists
// every app.
func (s *Stage) disableIdleGroups(ctx context.Context) error {
	var idle []nacosside.Idle
	for _, svc := range s.opts.Services {
		if !svc.Nacos {
			continue
		}
		sv, _ := s.set.Get(svc.Name)
		ref := *sv.Registry.Nacos
		it := nacosside.Idle{Ref: ref, Listed: len(sv.Instances(sv.Active)) + len(sv.Instances(sv.Active.Other()))}
		for _, in := range sv.Instances(sv.Active.Other()) {
			it.Addrs = append(it.Addrs, providers.Addr{IP: in.IP, Port: in.Port})
		}
		idle = append(idle, it)
	}
	if len(idle) == 0 {
		return nil
	}
	return nacosside.DisableIdleGroups(ctx, s.set2.Registries[providerName], idle, 1)
}

// startConsumers starts a Nacos consumer in front of every registered
// service; it is the users' entry of a service without a load balancer.
func (s *Stage) startConsumers(ctx context.Context) error {
	for _, svc := range s.opts.Services {
		if !svc.Nacos {
			continue
		}
		c := newConsumer(svc.Name, s.opts.ConsumerCache)
		stop, err := nacosapp.Subscribe(ctx, s.nacos.app, svc.Name, c.update)
		if err != nil {
			return err
		}
		s.closers = append(s.closers, func() error { stop(); return nil })
		addr, err := s.serveConsumer(ctx, c)
		if err != nil {
			return err
		}
		s.consumers[svc.Name] = "http://" + addr
		if svc.LB == "" {
			s.entries[svc.Name] = s.consumers[svc.Name]
		}
	}
	return nil
}

func hostPort(ip string, port int) string { return net.JoinHostPort(ip, strconv.Itoa(port)) }

// RestartNacos restarts the Nacos emulator on the same addresses (see
// emulator.Restart); down runs while it is stopped.
func (s *Stage) RestartNacos(down func()) error {
	if s.nacos.emu == nil {
		return errors.New("restarting nacos: the stage runs no nacos emulator")
	}
	return s.nacos.emu.Restart(down)
}
