// Package nacosside is the Nacos of a test environment (internal/stage,
// internal/scalebench): the in-process emulator or a real server, as the
// daemon's provider configuration and the applications' SDK see it, and the
// operator's first step before the daemon starts: every idle group
// disabled.
package nacosside

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

// PushDelay is the emulator's push delay: Nacos' default
// nacos.naming.push.pushTaskDelay, 500 ms (see providers/nacos/emulator).
const PushDelay = 500 * time.Millisecond

// Server is a running Nacos server to use instead of the emulator (e.g. one
// started by internal/nacostest).
type Server struct {
	Name     string // for the log, e.g. "r-nacos 0.8.5"
	Addr     string // host:port of the HTTP API
	GRPCPort int    // 0: the HTTP port + 1000
	API      string // operator API: v1 (Nacos 2.x, r-nacos) or v3 (Nacos 3.x); "": v1
}

// Options configure Start.
type Options struct {
	Provider string        // the provider's name in the daemon's configuration
	Timeout  time.Duration // the provider's timeout; 0 leaves the default
	Server   *Server       // nil: the emulator, in this process
	// Password turns authentication on in the emulator: user Username with
	// this password. The provider reads both from the environment variables
	// UsernameEnv and PasswordEnv, which Start sets; the SDK (App) logs in
	// with them.
	Username, UsernameEnv, PasswordEnv string
	Password                           spec.Secret
	Log                                *slog.Logger
}

// Side is the Nacos in use.
type Side struct {
	Name     string             // for the log: the server's, or "emulator (in-process)"
	Emu      *emulator.Emulator // nil for a real server
	Provider spec.NacosProvider // the daemon's provider configuration
	App      nacosapp.Config    // how applications reach it through the SDK
}

// Start starts the emulator (until ctx ends or Close), or adopts o.Server.
func Start(ctx context.Context, o Options) (*Side, error) {
	s := &Side{}
	p := spec.NacosProvider{Name: o.Provider, ContextPath: emulator.ContextPath, Timeout: spec.Duration(o.Timeout)}
	if srv := o.Server; srv != nil {
		if _, _, err := net.SplitHostPort(srv.Addr); err != nil {
			return nil, fmt.Errorf("nacos server address %q must be host:port", srv.Addr)
		}
		s.Name = srv.Name
		p.Servers, p.GRPCPort, p.API = []string{srv.Addr}, srv.GRPCPort, srv.API
	} else {
		eo := emulator.Options{PushDelay: PushDelay, Log: o.Log}
		if !o.Password.Empty() {
			eo.Username, eo.Password = o.Username, o.Password
			for env, v := range map[string]string{o.UsernameEnv: o.Username, o.PasswordEnv: o.Password.Reveal()} {
				if err := os.Setenv(env, v); err != nil {
					return nil, err
				}
			}
			p.UsernameEnv, p.PasswordEnv = o.UsernameEnv, o.PasswordEnv
		}
		emu := emulator.New(eo)
		addrs, err := emu.Start(ctx, "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		s.Name, s.Emu = "emulator (in-process)", emu
		p.Servers, p.GRPCPort, p.API = []string{addrs.HTTP}, addrs.GRPCPort(), emulator.ModeV1
	}
	if p.API == "" {
		p.API = emulator.ModeV1
	}
	s.Provider = p
	s.App = nacosapp.Config{Servers: p.Servers, GRPCPort: p.GRPCPort, ContextPath: p.ContextPath, Timeout: p.Timeout.D()}
	if s.Emu != nil && !o.Password.Empty() {
		s.App.Username, s.App.Password = o.Username, o.Password
	}
	return s, nil
}

// Close stops the emulator (nothing for a real server).
func (s *Side) Close() error {
	if s.Emu == nil {
		return nil
	}
	return s.Emu.Close()
}

// Idle is the idle group of one registered service.
type Idle struct {
	Ref   spec.NacosRef
	Addrs []providers.Addr // the idle group's instances
	// Listed is how many instances Nacos must list (both groups) before
	// they are disabled; 0: do not wait.
	Listed int
}

// listPoll is how often DisableIdleGroups looks at Nacos' list.
const listPoll = 20 * time.Millisecond

// DisableIdleGroups takes every idle group out of consumers' view the way
// Tandem does it, through the daemon's Nacos provider (reg), so that the
// live state matches the desired state before the daemon starts, as an
// operator would have made it. Each service waits for its instances to be
// listed first; parallel services are handled at once (SetEnabled waits
// for a push).
func DisableIdleGroups(ctx context.Context, reg providers.Registry, idle []Idle, parallel int) error {
	work := make(chan Idle)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range max(1, parallel) {
		wg.Go(func() {
			for it := range work {
				if err := disable(ctx, reg, it); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for _, it := range idle {
		work <- it
	}
	close(work)
	wg.Wait()
	return first
}

func disable(ctx context.Context, reg providers.Registry, it Idle) error {
	if it.Listed > 0 {
		t := time.NewTicker(listPoll)
		defer t.Stop()
		for {
			v, err := reg.Instances(ctx, it.Ref)
			if err == nil && len(v.Instances) == it.Listed {
				break
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("waiting for the %d instances of %s in nacos: %w", it.Listed, it.Ref.Service, ctx.Err())
			case <-t.C:
			}
		}
	}
	if err := reg.SetEnabled(ctx, it.Ref, it.Addrs, false); err != nil {
		return fmt.Errorf("disabling the idle group of %s: %w", it.Ref.Service, err)
	}
	return nil
}
