package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/ha"
	"github.com/tandemhq/tandem/notify"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/all"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// AddrFile is the file in the state directory where a serving daemon
// writes the address its API listens on (host:port and a newline), so that
// an operator or a script finds it with `--listen 127.0.0.1:0` too. It is
// written once the listener is bound and removed when the daemon stops.
const AddrFile = "api.addr"

// AssembleOptions are what the caller adds to the configuration.
type AssembleOptions struct {
	Log    *slog.Logger // nil: discard
	DryRun bool         // plan and report, change nothing
	// Once assembles for Assembly.Once: no HTTP API and no leader election
	// (ha is refused).
	Once bool
	// Listener serves the HTTP API instead of a listener on cfg.Listen.
	Listener net.Listener
	// Recorder also receives every event (besides the events log, the
	// notifications and the metrics).
	Recorder reconcile.Recorder
	// ConfigName names the configuration in the start-up log line.
	ConfigName string
}

// Assembly is the daemon as `tandem run` runs it: the state directory lock
// (or leader election), the providers with their request metrics, the Git
// source, the journal, the events log, the notifications, the metrics and
// the HTTP API around the reconcile loop. tandem run, tandem demo and the
// test stage (internal/stage) all build it here.
type Assembly struct {
	cfg  *spec.Config
	opts AssembleOptions
	log  *slog.Logger
	red  *redact.Redactor

	reg      *prometheus.Registry
	metrics  *server.Metrics
	ps       *providers.Set
	src      *gitsource.Source
	evlog    *events.Log
	notifier *notify.Notifier
	elector  *ha.Elector
	ln       net.Listener
	srv      *server.Server
	cur      *current

	closers []func() error // run in reverse order by Close
	closed  sync.Once
	err     error
}

// Assemble builds the daemon for cfg; nothing runs until Run (or Once).
// On error everything built is released again.
func Assemble(cfg *spec.Config, opts AssembleOptions) (_ *Assembly, err error) {
	if opts.Once && cfg.HA != nil {
		return nil, errors.New("--once acts alone; it cannot be used with ha (run it on a replica without ha, or use --dry-run)")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// Every secret the daemon can know, removed from its logs, events,
	// notifications and answers (docs/security.md).
	red := redact.ForConfig(cfg)
	a := &Assembly{cfg: cfg, opts: opts, red: red, log: slog.New(redact.Handler(red, log.Handler())), cur: &current{}}
	defer func() {
		if err != nil {
			err = errors.Join(err, a.Close())
		}
	}()
	log = a.log
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating state directory: %w", err)
	}
	if cfg.HA == nil {
		release, err := ha.Lock(cfg.StateDir)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, func() error { release(); return nil })
	}
	a.reg = prometheus.NewRegistry()
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	a.metrics = server.NewMetrics(a.reg)

	ps, closeProviders, err := all.New(cfg, log)
	if err != nil {
		return nil, err
	}
	a.closers = append(a.closers, closeProviders)
	a.ps = providers.Instrument(ps, a.metrics.ObserveProviderRequest)

	if a.src, err = gitsource.New(cfg.Git, cfg, cfg.StateDir, log); err != nil {
		return nil, fmt.Errorf("git source: %w", err)
	}
	if a.evlog, err = events.Open(filepath.Join(cfg.StateDir, "events.jsonl"), 2000, events.WithLogger(log), events.WithRedactor(red)); err != nil {
		return nil, err
	}
	a.closers = append(a.closers, a.evlog.Close)
	links, err := approvalLinks(cfg, log)
	if err != nil {
		return nil, err
	}
	if a.notifier, err = notify.New(cfg.Notify, log, notify.WithRegisterer(a.reg), notify.WithRedactor(red), notify.WithApprovalLinks(links)); err != nil {
		return nil, err
	}
	if cfg.HA == nil {
		// Without ha the daemon acts from the start: it exists before Run,
		// for callers that read its status.
		store, err := reconcile.NewFileStore(filepath.Join(cfg.StateDir, "journal"))
		if err != nil {
			return nil, err
		}
		a.cur.set(a.newDaemon(store, nil, nil), "")
	}
	if opts.Once {
		return a, nil
	}

	token, err := spec.SecretFromEnv("api.tokenEnv", cfg.API.TokenEnv)
	if err != nil {
		return nil, err
	}
	readToken, err := spec.SecretFromEnv("api.readTokenEnv", cfg.API.ReadTokenEnv)
	if err != nil {
		return nil, err
	}
	if cfg.HA != nil {
		// Before the API serves: a follower's answers name the leader.
		el, err := ha.NewElector(*cfg.HA, ha.Identity(), log)
		if err != nil {
			return nil, err
		}
		a.closers = append(a.closers, func() error { el.Close(); return nil })
		a.elector, a.cur.leader = el, el.Leader
	}
	a.ln = opts.Listener
	if a.ln == nil {
		if a.ln, err = net.Listen("tcp", cfg.Listen); err != nil {
			return nil, fmt.Errorf("listening on %s: %w", cfg.Listen, err)
		}
	}
	a.closers = append(a.closers, func() error {
		if err := a.ln.Close(); err != nil && !errors.Is(err, net.ErrClosed) {
			return err
		}
		return nil
	})
	a.srv = server.New(server.Options{
		Status: a.cur, Events: a.evlog, Actions: a.cur, Registry: a.reg, Token: token, GitWebhook: a.src.WebhookHandler(), Source: a.src, Log: log,
		Ready: a.cur.ready, ReadToken: readToken, MetricsRequireToken: cfg.API.MetricsRequireToken, AllowedHosts: server.AllowedHosts(cfg.Listen, externalHosts(cfg)),
		MaxStreams: cfg.API.MaxStreams, Redactor: red, Links: links,
	})
	return a, nil
}

// Addr is the address the HTTP API listens on (nil when assembled Once).
func (a *Assembly) Addr() net.Addr {
	if a.ln == nil {
		return nil
	}
	return a.ln.Addr()
}

// Providers are the providers the daemon uses, with their request metrics.
func (a *Assembly) Providers() *providers.Set { return a.ps }

// Redactor removes every secret the daemon knows from what it writes.
func (a *Assembly) Redactor() *redact.Redactor { return a.red }

// Daemon is the daemon acting now: under ha, the leader's (nil on a
// replica that does not lead).
func (a *Assembly) Daemon() *Daemon { return a.cur.d.Load() }

// Run runs the Git source, the notifications, the HTTP API and the
// reconcile loop (under ha, while this replica leads) until ctx ends or
// the API stops serving.
func (a *Assembly) Run(ctx context.Context) error {
	if a.srv == nil {
		return errors.New("the daemon was assembled for --once")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	a.runBackground(ctx, &wg)
	addrFile := filepath.Join(a.cfg.StateDir, AddrFile)
	if err := writeFileAtomic(addrFile, []byte(a.ln.Addr().String()+"\n")); err != nil {
		return fmt.Errorf("writing the API address: %w", err)
	}
	defer os.Remove(addrFile)
	wg.Go(func() {
		if err := a.srv.ServeListener(ctx, a.ln); err != nil {
			a.log.Error("HTTP server stopped", "listen", a.ln.Addr().String(), "error", err)
			cancel()
		}
	})
	a.log.Info("tandem running", "config", a.opts.ConfigName, "state_dir", a.cfg.StateDir, "listen", a.ln.Addr().String(),
		"dry_run", a.opts.DryRun, "ha", a.cfg.HA != nil)

	if a.elector == nil {
		return a.Daemon().Run(ctx)
	}
	return a.elector.Run(ctx, func(ctx context.Context, l *ha.Leadership) error {
		d := a.newDaemon(l.Store(), l, l.Context())
		a.cur.set(d, "")
		defer a.cur.set(nil, "lost the leadership")
		a.log.Info("leading: acting on live state")
		return d.Run(ctx)
	})
}

// Once runs the Git source and the notifications while it passes over
// every service (see Daemon.Once), and returns the statuses.
func (a *Assembly) Once(ctx context.Context, maxPasses int) ([]reconcile.Status, error) {
	d := a.Daemon()
	if d == nil {
		return nil, errors.New("--once acts alone; it cannot be used with ha")
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	defer wg.Wait()
	a.runBackground(ctx, &wg)
	return d.Once(ctx, maxPasses)
}

// runBackground runs what outlives a daemon that loses its leadership.
func (a *Assembly) runBackground(ctx context.Context, wg *sync.WaitGroup) {
	wg.Go(func() { a.notifier.Run(ctx) })
	wg.Go(func() {
		if err := a.src.Run(ctx); err != nil {
			a.log.Error("git source stopped", "error", err)
		}
	})
}

// Close releases what Assemble took (the lock, the providers, the events
// log, the listener); call it after Run returned. It is safe to call more
// than once.
func (a *Assembly) Close() error {
	a.closed.Do(func() {
		var errs []error
		for i := len(a.closers) - 1; i >= 0; i-- {
			errs = append(errs, a.closers[i]())
		}
		a.err = errors.Join(errs...)
	})
	return a.err
}

func (a *Assembly) newDaemon(store reconcile.Store, fence reconcile.Fence, term context.Context) *Daemon {
	var d *Daemon
	d = New(Options{
		Config: a.cfg, Providers: a.ps, Source: a.src, Store: store, Fence: fence, Term: term, Log: a.log, DryRun: a.opts.DryRun,
		Recorder: a.recorder(), Redactor: a.red, MetadataKeys: a.cfg.API.MetadataKeys,
		OnPass: func(service string, class reconcile.Class, took time.Duration) {
			a.metrics.ObservePass(service, class, took)
			if st, ok := d.Reconciler().Status(service); ok {
				a.metrics.ObserveStatus(st)
			} else {
				a.metrics.Forget(service)
			}
		},
		OnSource: func(st gitsource.Status) {
			if st.Good != nil {
				a.metrics.SetRevision(st.Good.Hash)
			}
			if st.FetchErr == nil && !st.LastFetch.IsZero() {
				a.metrics.GitLastFetchSuccess.Set(float64(st.LastFetch.Unix()))
			}
		},
	})
	return d
}

func (a *Assembly) recorder() reconcile.Recorder {
	r := fanout{a.evlog, a.notifier, a.metrics}
	if a.opts.Recorder != nil {
		r = append(r, a.opts.Recorder)
	}
	return r
}

// fanout records every event in each recorder.
type fanout []reconcile.Recorder

func (f fanout) Record(e reconcile.Event) {
	for _, r := range f {
		r.Record(e)
	}
}

// writeFileAtomic writes data to path through a temporary file renamed
// over it, so that a reader never sees a partial file.
func writeFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o640); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// current is what the HTTP API serves: the daemon acting now (the leader
// under ha), or none.
type current struct {
	d   atomic.Pointer[Daemon]
	why atomic.Pointer[string]
	// Under ha: who leads. Set before the API serves.
	leader func(context.Context) (string, error)
}

// ErrNotActing is the API's answer on a replica that does not act.
var ErrNotActing = errors.New("this replica is not acting")

func (c *current) set(d *Daemon, why string) {
	c.d.Store(d)
	c.why.Store(&why)
}

func (c *current) Statuses() []reconcile.Status {
	if d := c.d.Load(); d != nil {
		return d.Reconciler().Statuses()
	}
	return nil
}

func (c *current) Status(name string) (reconcile.Status, bool) {
	if d := c.d.Load(); d != nil {
		return d.Reconciler().Status(name)
	}
	return reconcile.Status{}, false
}

func (c *current) Sync(ctx context.Context, service string, retry bool) error {
	d := c.d.Load()
	if d == nil {
		return c.notActing(ctx)
	}
	return notFound(service, d.Sync(ctx, service, retry))
}

func (c *current) Suspend(ctx context.Context, service string, suspend bool) error {
	d := c.d.Load()
	if d == nil {
		return c.notActing(ctx)
	}
	return notFound(service, d.Suspend(ctx, service, suspend))
}

func (c *current) Promote(ctx context.Context, service, transition string, step int, by string) error {
	return c.decide(ctx, service, transition, step, spec.ApprovalPromote, by)
}

func (c *current) Abort(ctx context.Context, service, transition string, step int, by string) error {
	return c.decide(ctx, service, transition, step, spec.ApprovalAbort, by)
}

// decide is carried out by the leader only (a follower names it); the
// journal it writes to is the one the next leader reads.
func (c *current) decide(ctx context.Context, service, transition string, step int, action spec.ApprovalDecision, by string) error {
	d := c.d.Load()
	if d == nil {
		return c.notActing(ctx)
	}
	return notFound(service, d.Decide(ctx, service, transition, step, action, by))
}

// ready: a daemon acts and has a desired state in force.
func (c *current) ready() error {
	d := c.d.Load()
	if d == nil {
		return c.notActing(context.Background())
	}
	select {
	case <-d.Ready():
		return nil
	default:
		return errors.New("no good revision of the desired state yet")
	}
}

func (c *current) notActing(ctx context.Context) error {
	if c.leader != nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		if who, err := c.leader(ctx); err == nil && who != "" {
			return fmt.Errorf("%w: %s leads; ask it", ErrNotActing, who)
		}
	}
	if why := c.why.Load(); why != nil && *why != "" {
		return fmt.Errorf("%w: %s", ErrNotActing, *why)
	}
	return ErrNotActing
}

// notFound maps the daemon's unknown-service error to the API's.
func notFound(service string, err error) error {
	if errors.Is(err, ErrNotFound) {
		return fmt.Errorf("%s: %w", service, server.ErrNotFound)
	}
	return err
}
