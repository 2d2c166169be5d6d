package stage

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

// nacosPushDelay is the emulator's push delay: Nacos' default
// nacos.naming.push.pushTaskDelay (reference nacos.md §1).
const nacosPushDelay = 500 * time.Millisecond

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
func (s *Stage) startNacos(ctx context.Context) (*nacosSide, error) {
	used := false
	for _, svc := range s.opts.Services {
		used = used || svc.Nacos
	}
	if !used {
		return &nacosSide{name: "none"}, nil
	}
	n := &nacosSide{}
	p := spec.NacosProvider{Name: providerName, ContextPath: "/nacos", Timeout: spec.Duration(5 * time.Second)}
	if srv := s.opts.Nacos; srv != nil {
		if _, _, err := net.SplitHostPort(srv.Addr); err != nil {
			return nil, fmt.Errorf("stage: Nacos.Addr %q must be host:port", srv.Addr)
		}
		n.name = srv.Name
		p.Servers, p.GRPCPort, p.API = []string{srv.Addr}, srv.GRPCPort, srv.API
	} else {
		o := emulator.Options{PushDelay: nacosPushDelay, Log: s.log}
		if pw := s.opts.NacosPassword; !pw.Empty() {
			o.Username, o.Password = nacosUser, pw
			for env, v := range map[string]string{nacosUserEnv: nacosUser, nacosPasswordEnv: pw.Reveal()} {
				if err := os.Setenv(env, v); err != nil {
					return nil, err
				}
			}
			p.UsernameEnv, p.PasswordEnv = nacosUserEnv, nacosPasswordEnv
		}
		emu := emulator.New(o)
		addrs, err := emu.Start(s.ctx, "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		s.closers = append(s.closers, emu.Close)
		n.name, n.emu = "emulator (in-process)", emu
		p.Servers, p.GRPCPort, p.API = []string{addrs.HTTP}, addrs.GRPCPort(), emulator.ModeV1
	}
	if p.API == "" {
		p.API = "v1"
	}
	n.provider = &p
	n.app = nacosapp.Config{Servers: p.Servers, GRPCPort: p.GRPCPort, ContextPath: p.ContextPath, Timeout: p.Timeout.D()}
	n.metadata = s.opts.NacosMetadata
	if n.emu != nil && !s.opts.NacosPassword.Empty() {
		n.app.Username, n.app.Password = nacosUser, s.opts.NacosPassword
	}
	s.log.Info("stage nacos", "nacos", n.name, "servers", p.Servers)
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
	for _, svc := range s.opts.Services {
		if !svc.Nacos {
			continue
		}
		sv, _ := s.set.Get(svc.Name)
		ref := *sv.Registry.Nacos
		reg := s.set2.Registries[ref.Provider]
		want := len(sv.Instances(sv.Active)) + len(sv.Instances(sv.Active.Other()))
		err := poll(ctx, func() (bool, error) {
			v, err := reg.Instances(ctx, ref)
			return err == nil && len(v.Instances) == want, nil
		})
		if err != nil {
			return fmt.Errorf("waiting for the apps of %s in nacos: %w", svc.Name, err)
		}
		var idle []providers.Addr
		for _, in := range sv.Instances(sv.Active.Other()) {
			idle = append(idle, providers.Addr{IP: in.IP, Port: in.Port})
		}
		if err := reg.SetEnabled(ctx, ref, idle, false); err != nil {
			return err
		}
	}
	return nil
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
