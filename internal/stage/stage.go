// Package stage sets up a whole Tandem environment on loopback, in-process:
// a local Git repository of desired state, demo-app fleets for groups A and
// B of each service (registering in Nacos through the official SDK when the
// service uses it), the load balancer in front of each service (a real
// HAProxy, or the Alibaba ALB/SLB emulator with its data plane), Nacos (the
// emulator, or a real server the caller started), a Nacos consumer in front
// of every registered service, and the daemon itself (the real providers,
// the Git source and a file journal), with an events recorder.
//
// Releases and reverts are Git commits (Release, Revert); WaitInSync polls
// the daemon's status until a revision is in force. The end-to-end tests,
// the e2e benchmark and `tandem demo` use it; nothing here needs *testing.T.
package stage

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"time"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/javaapps"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/nacosside"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/all"
	nacosemu "github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Service is one service of the stage.
type Service struct {
	Name string
	// LB is what users' traffic enters through: spec.KindHAProxy,
	// spec.KindALB or spec.KindSLB; "" for a service reached only through
	// Nacos (its consumer).
	LB string
	// Nacos registers the apps in Nacos; Tandem then takes groups in and
	// out of consumers' view, and a consumer (ConsumerURL) calls them.
	Nacos bool
	// VersionFromNacos reads the running version from the apps' Nacos
	// metadata instead of GET /version.
	VersionFromNacos bool
	// Java runs e2e/java's Spring Boot provider (internal/javaapps, from
	// Options.JavaDir) instead of demo apps, probed with the spring-boot
	// presets; registered in Nacos it needs a real server (Options.Nacos).
	Java     bool
	PerGroup int        // apps per group; default 2
	Version  string     // the version both groups run at the start; default 1.0.0
	Active   spec.Group // the group serving at the start; default A
	After    []string
	// Preview gives the service a preview route behind its load balancer
	// (see preview.go and PreviewURL); it needs LB.
	Preview bool
	// Comment is written at the top of the service's file, each line as a
	// YAML comment (what the service is, for a reader of the repository).
	Comment string
	// Rollout is the spec's rollout as a YAML flow mapping ("" none): the
	// release shifts in weight steps or a ramp.
	Rollout string
	// Gates is the YAML of the service's gates mapping ("" none).
	Gates string
	// Approval is the service's gates.approval as a YAML flow mapping
	// (e.g. "{}"; "" for no approval gate).
	Approval string
}

// Timing are the durations written into every service spec. Zero fields
// take the defaults of DefaultTiming.
type Timing struct {
	// Propagation is drain.propagation; the default covers the Nacos
	// consumers' cache (ConsumerCache plus the push delay) for registered
	// services, and is short for services behind a load balancer only,
	// whose shift takes effect when it is read back.
	Propagation    time.Duration
	Quiet          time.Duration // drain.quiet
	DrainTimeout   time.Duration // drain.timeout
	VerifyWindow   time.Duration // verify.window
	HealthDeadline time.Duration // health.deadline
	DeployTimeout  time.Duration // deploy.timeout
	// LBHealthTimeout is verify.lbHealthTimeout; 0 leaves the spec's default.
	LBHealthTimeout time.Duration
}

// DefaultTiming is short but realistic relative to each other: the drain is
// bounded by propagation and evidence, never by its timeout.
var DefaultTiming = Timing{
	Quiet:          200 * time.Millisecond,
	DrainTimeout:   30 * time.Second,
	VerifyWindow:   time.Second,
	HealthDeadline: 30 * time.Second,
	DeployTimeout:  30 * time.Second,
}

// startTimeout bounds Start (JVMs take tens of seconds on two busy cores).
const startTimeout = 3 * time.Minute

// Propagation defaults.
const (
	propagationLB    = 500 * time.Millisecond
	propagationNacos = 2 * time.Second
)

// NacosServer is a running Nacos server for the stage to use instead of
// its in-process emulator (e.g. one started by internal/nacostest).
type NacosServer = nacosside.Server

// Options configure a stage.
type Options struct {
	// Dir is where the stage keeps its files (Git repository, daemon state,
	// HAProxy configuration); it must exist and is left in place.
	Dir      string
	Services []Service
	Timing   Timing
	// Nacos is a real server to use; nil runs the emulator in-process.
	Nacos *NacosServer
	// ConsumerCache is how long a Nacos consumer keeps its list of
	// instances (Spring Cloud LoadBalancer's cache TTL, 35 s by default
	// there); default 1s.
	ConsumerCache time.Duration
	// NacosPassword turns authentication on in the Nacos emulator: user
	// "nacos" with this password. The daemon's configuration reads both from
	// the environment (Start sets the variables), the apps and consumers log
	// in with them.
	NacosPassword spec.Secret
	// DeployURL is the deploy system every service's spec names
	// (deploy.http.url); "" is the stage's own, the demo fleet's. Another
	// one must speak the protocol of providers/deploy and may use
	// RestartGroup to deploy.
	DeployURL string
	// DeployTokenEnv is written as deploy.http.tokenEnv ("" for none).
	DeployTokenEnv string
	// JavaDir holds the built Java apps (javaapps.Require), for services
	// with Java set.
	JavaDir string
	// NacosMetadata is added to every app's registration metadata (what an
	// application may register besides its version and group).
	NacosMetadata map[string]string
	// Manual runs no daemon: the caller runs its own on Config() (tandem
	// demo runs tandem run's wiring) or drives the fleet by hand (the naive
	// baseline restarts the serving group in place).
	Manual bool
	// LBHealthCheck is the health check the emulated ALB server groups and
	// SLB listeners run against the apps; nil: DefaultLBHealthCheck. The
	// emulator checks on this interval with one second lasting
	// LBHealthCheckUnit (default 25 ms), and routes only to servers it
	// reports healthy (fail-open when none is), as Alibaba documents.
	// PrometheusURL configures a Prometheus server (providers.prometheus
	// "stage") for analysis gates; "" none.
	PrometheusURL string
	// Faults make versions of the demo apps misbehave (demoapp.Options.Faults).
	Faults            map[string]demoapp.Fault
	LBHealthCheck     *emulator.HealthCheck
	LBHealthCheckUnit time.Duration
	Recorder          reconcile.Recorder // also receives every event; nil: none
	Log               *slog.Logger
	// HookCommands is policy.hooks.commands of the daemon's configuration:
	// the exec hooks (gates.smoke.exec) service files may name.
	HookCommands []string
}

// nameRE is the spec's rule for service names.
var nameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// Stage is a running environment.
type Stage struct {
	opts   Options
	log    *slog.Logger
	ctx    context.Context // lives until Close
	cancel context.CancelFunc

	repo   *repo
	config *spec.Config
	set    *spec.Set // the desired state at the start
	fleet  *demoapp.Fleet
	java   *javaapps.Fleet
	set2   *providers.Set
	daemon *daemon.Assembly // nil when Manual
	events *recorder
	deploy *deploySystem
	nacos  *nacosSide
	lbs    *loadBalancers

	entries   map[string]string // service -> users' entry URL
	previews  map[string]string // service -> its preview route's entry URL (PreviewURL)
	consumers map[string]string // service -> Nacos consumer URL

	closers  []func() error // run in reverse order by Close
	bg       sync.WaitGroup // goroutines that end with ctx
	handlers sync.WaitGroup // HTTP handlers of serve
	closed   sync.Once
	err      error
}

// Start builds the environment and, unless Manual, starts the daemon; it
// gives up after startTimeout. The stage runs until Close or until ctx
// ends (then Close must still be called to wait for it). On error
// everything started is stopped again.
func Start(ctx context.Context, o Options) (*Stage, error) {
	if err := o.validate(); err != nil {
		return nil, err
	}
	o.Timing = o.Timing.withDefaults()
	if o.ConsumerCache <= 0 {
		o.ConsumerCache = time.Second
	}
	log := o.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	s := &Stage{opts: o, log: log, ctx: runCtx, cancel: cancel, events: &recorder{next: o.Recorder},
		entries: map[string]string{}, previews: map[string]string{}, consumers: map[string]string{}}
	s.closers = append(s.closers, func() error { stop(); return nil })
	startCtx, cancelStart := context.WithTimeout(ctx, startTimeout)
	defer cancelStart()
	if err := s.start(startCtx); err != nil {
		return nil, errors.Join(fmt.Errorf("starting the stage: %w", err), s.Close())
	}
	return s, nil
}

func (o *Options) validate() error {
	if st, err := os.Stat(o.Dir); err != nil || !st.IsDir() {
		return fmt.Errorf("stage: Dir %q must be an existing directory", o.Dir)
	}
	if len(o.Services) == 0 {
		return errors.New("stage: no services")
	}
	seen := map[string]bool{}
	for i := range o.Services {
		svc := &o.Services[i]
		switch {
		case !nameRE.MatchString(svc.Name):
			return fmt.Errorf("stage: service %q: the name must be lower-case letters, digits and '-'", svc.Name)
		case seen[svc.Name]:
			return fmt.Errorf("stage: service %s is listed twice", svc.Name)
		case !slices.Contains([]string{"", spec.KindHAProxy, spec.KindALB, spec.KindSLB}, svc.LB):
			return fmt.Errorf("stage: service %s: LB must be haproxy, alb, slb or empty, got %q", svc.Name, svc.LB)
		case svc.Preview && svc.LB == "":
			return fmt.Errorf("stage: service %s: Preview needs a load balancer", svc.Name)
		case svc.LB == "" && !svc.Nacos:
			return fmt.Errorf("stage: service %s has neither a load balancer nor Nacos: users could not reach it", svc.Name)
		case svc.VersionFromNacos && !svc.Nacos:
			return fmt.Errorf("stage: service %s: VersionFromNacos needs Nacos", svc.Name)
		case svc.Java && o.JavaDir == "":
			return fmt.Errorf("stage: service %s: Java needs Options.JavaDir", svc.Name)
		case svc.Java && svc.Nacos && o.Nacos == nil:
			return fmt.Errorf("stage: service %s: Java apps register in a real Nacos (Options.Nacos), not the emulator", svc.Name)
		case svc.Active != "" && !svc.Active.Valid():
			return fmt.Errorf("stage: service %s: Active must be A or B, got %q", svc.Name, svc.Active)
		}
		seen[svc.Name] = true
		if svc.PerGroup <= 0 {
			svc.PerGroup = 2
		}
		if svc.Version == "" {
			svc.Version = "1.0.0"
		}
		if svc.Active == "" {
			svc.Active = spec.GroupA
		}
	}
	return nil
}

func (t Timing) withDefaults() Timing {
	d := DefaultTiming
	set := func(v *time.Duration, def time.Duration) {
		if *v <= 0 {
			*v = def
		}
	}
	set(&t.Quiet, d.Quiet)
	set(&t.DrainTimeout, d.DrainTimeout)
	set(&t.VerifyWindow, d.VerifyWindow)
	set(&t.HealthDeadline, d.HealthDeadline)
	set(&t.DeployTimeout, d.DeployTimeout)
	return t
}

// propagation is drain.propagation for svc.
func (t Timing) propagation(svc Service) time.Duration {
	switch {
	case t.Propagation > 0:
		return t.Propagation
	case svc.Nacos:
		return propagationNacos
	}
	return propagationLB
}

// start starts the parts in an order whose reverse is a clean stop: the
// daemon and the entries first, then the apps (deregistering from a Nacos
// still running), then the load balancers and Nacos.
func (s *Stage) start(ctx context.Context) error {
	var err error
	if s.nacos, err = s.startNacos(); err != nil {
		return err
	}
	s.fleet = demoapp.NewFleet(s.ctx, s.log)
	s.closers = append(s.closers, s.fleet.Close)
	s.java = javaapps.NewFleet()
	s.closers = append(s.closers, s.java.Close)
	apps, err := s.startApps(ctx)
	if err != nil {
		return err
	}
	if s.deploy, err = s.startDeploySystem(); err != nil {
		return err
	}
	if s.lbs, err = s.startLoadBalancers(apps); err != nil {
		return err
	}
	if s.repo, err = newRepo(filepath.Join(s.opts.Dir, "repo")); err != nil {
		return err
	}
	s.config = s.daemonConfig()
	if err := s.repo.seed(s.specFiles(apps)); err != nil {
		return err
	}
	if s.set, err = spec.Load(os.DirFS(s.repo.dir), servicesDir, s.config); err != nil {
		return fmt.Errorf("the generated desired state is invalid: %w", err)
	}
	// The daemon as tandem run assembles it (providers with their metrics,
	// events log, notifications, lock and HTTP API); built now, it runs
	// once the idle groups are disabled. Manual runs none: the stage keeps
	// providers of its own.
	if s.opts.Manual {
		set, closeProviders, err := all.New(s.config, s.log)
		if err != nil {
			return err
		}
		s.set2 = set
		s.closers = append(s.closers, closeProviders)
	} else {
		if s.daemon, err = daemon.Assemble(s.config, daemon.AssembleOptions{Log: s.log, Recorder: s.events,
			ConfigName: "(generated by the stage)"}); err != nil {
			return err
		}
		s.closers = append(s.closers, s.daemon.Close)
		s.set2 = s.daemon.Providers()
	}
	// Nacos registers every app enabled; the idle groups go out of
	// consumers' view before anyone looks, as an operator would have done.
	if err := s.disableIdleGroups(ctx); err != nil {
		return err
	}
	if err := s.startConsumers(ctx); err != nil {
		return err
	}
	if s.opts.Manual {
		return nil
	}
	s.startDaemon()
	return nil
}

// startDaemon runs the assembled daemon until Close.
func (s *Stage) startDaemon() {
	ctx, cancel := context.WithCancel(s.ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.daemon.Run(ctx); err != nil && ctx.Err() == nil {
			s.log.Error("the daemon stopped", "error", err)
		}
	}()
	s.closers = append(s.closers, func() error {
		cancel()
		<-done
		return nil
	})
}

func (s *Stage) journalDir() string { return filepath.Join(s.config.StateDir, "journal") }

// Close stops everything the stage started, in reverse order, and returns
// what failed. It is safe to call more than once.
func (s *Stage) Close() error {
	s.closed.Do(func() {
		var errs []error
		for i := len(s.closers) - 1; i >= 0; i-- {
			errs = append(errs, s.closers[i]())
		}
		s.cancel()
		s.handlers.Wait()
		s.bg.Wait()
		s.err = errors.Join(errs...)
	})
	return s.err
}

// Config is the daemon configuration the stage runs with.
func (s *Stage) Config() *spec.Config { return s.config }

// RepoDir is the working tree of the desired-state repository.
func (s *Stage) RepoDir() string { return s.repo.dir }

// Fleet runs the demo apps of every service.
func (s *Stage) Fleet() *demoapp.Fleet { return s.fleet }

// Alibaba is the Alibaba OpenAPI emulator (nil when no service is behind
// ALB or SLB): its state is the live weights, its faults are the test's.
func (s *Stage) Alibaba() *emulator.Emulator {
	if s.lbs.alibaba == nil {
		return nil
	}
	return s.lbs.alibaba.emu
}

// NacosEmulator is the in-process Nacos emulator (nil when no service uses
// Nacos or Options.Nacos names a real server).
func (s *Stage) NacosEmulator() *nacosemu.Emulator { return s.nacos.emu }

// Daemon is the running daemon (nil when Manual).
func (s *Stage) Daemon() *daemon.Daemon {
	if s.daemon == nil {
		return nil
	}
	return s.daemon.Daemon()
}

// APIAddr is the address of the daemon's HTTP API ("" when Manual).
func (s *Stage) APIAddr() string {
	if s.daemon == nil {
		return ""
	}
	return s.daemon.Addr().String()
}

// Providers are the providers the daemon uses (built by providers/all).
func (s *Stage) Providers() *providers.Set { return s.set2 }

// Service returns a service's spec as committed at the start (its
// instances, bindings and durations do not change; version and active do).
func (s *Stage) Service(name string) (*spec.Service, bool) { return s.set.Get(name) }

// URL is where users reach a service: its load balancer's frontend, or
// its Nacos consumer for a service without one.
func (s *Stage) URL(service string) string { return s.entries[service] }

// ConsumerURL is the Nacos consumer in front of a registered service
// ("" for one not in Nacos).
func (s *Stage) ConsumerURL(service string) string { return s.consumers[service] }

// NacosName says which Nacos the stage uses, e.g. "emulator (in-process)".
func (s *Stage) NacosName() string { return s.nacos.name }

// Events returns the events recorded so far.
func (s *Stage) Events() []reconcile.Event { return s.events.all() }

// Deploys returns the deploy requests the deploy system received, in order.
func (s *Stage) Deploys() []providers.DeployRequest { return s.deploy.requests() }

// Journal reads the daemon's journal of a service.
func (s *Stage) Journal(ctx context.Context, service string) (reconcile.State, error) {
	store, err := reconcile.NewFileStore(s.journalDir())
	if err != nil {
		return reconcile.State{}, err
	}
	return store.Load(ctx, service)
}

// StartTraffic starts users' traffic on url (rate POST/s and websockets
// clients, see internal/loadgen) for at most an hour, and returns once
// every WebSocket client is connected (bounded by ctx).
func (s *Stage) StartTraffic(ctx context.Context, url string, rate, websockets int) (*loadgen.Generator, error) {
	return s.StartLoad(ctx, loadgen.Config{URL: url, Rate: rate, WebSockets: websockets, Duration: time.Hour})
}

// StartLoad starts the traffic cfg describes (its Log defaults to the
// stage's), for at most the stage's life, and returns once every WebSocket
// client is connected (bounded by ctx).
func (s *Stage) StartLoad(ctx context.Context, cfg loadgen.Config) (*loadgen.Generator, error) {
	if cfg.Log == nil {
		cfg.Log = s.log
	}
	g, err := loadgen.Start(s.ctx, cfg)
	if err != nil {
		return nil, err
	}
	err = poll(ctx, func() (bool, error) { return g.Snapshot().Connected == cfg.WebSockets, nil })
	if err != nil {
		g.Stop()
		return nil, fmt.Errorf("waiting for %d websocket clients on %s: %w", cfg.WebSockets, cfg.URL, err)
	}
	return g, nil
}

// pollInterval is how often the stage looks at a condition it waits for.
const pollInterval = 20 * time.Millisecond

// poll checks cond until it holds, fails or ctx ends.
func poll(ctx context.Context, cond func() (bool, error)) error {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
}

// serve serves h on a new loopback listener until the stage closes and
// returns its address. Requests (upgraded connections too) end when the
// stage's context does; Close waits for their handlers.
func (s *Stage) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.handlers.Add(1)
			defer s.handlers.Done()
			h.ServeHTTP(w, r)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return s.ctx },
	}
	s.bg.Go(func() { _ = srv.Serve(ln) })
	s.closers = append(s.closers, srv.Close)
	return ln.Addr().String(), nil
}
