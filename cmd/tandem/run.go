package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
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

	"github.com/tandemhq/tandem/daemon"
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

type runFlags struct {
	config           string
	once, dryRun     bool
	logFormat, level string
	onceMaxPasses    int
}

func init() {
	var f runFlags
	register(&command{
		name: "run",
		summary: `Run the daemon: watch the Git source, observe live state, and make it match, safely.
SIGTERM/SIGINT stop at a safe point: a step in progress finishes and is journaled; the next start resumes.
--once makes one pass over every service and exits 0 only if all are in sync.
--dry-run plans and reports, and changes nothing.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&f.config, "config", "tandem.yaml", "daemon configuration file")
			fs.BoolVar(&f.once, "once", false, "one pass over every service, then exit (0: all in sync, 1: not)")
			fs.BoolVar(&f.dryRun, "dry-run", false, "observe and plan, change nothing")
			fs.StringVar(&f.logFormat, "log-format", "text", "text or json")
			fs.StringVar(&f.level, "log-level", "info", "debug, info, warn or error")
			fs.IntVar(&f.onceMaxPasses, "once-max-passes", 1, "with --once: passes per service (each applies at most one step)")
		},
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 0 {
				return usagef("run takes no arguments")
			}
			log, err := newLogger(env, f.logFormat, f.level)
			if err != nil {
				return usagef("%v", err)
			}
			cfg, err := spec.LoadConfig(f.config)
			if err != nil {
				return report(env, err)
			}
			return runDaemon(ctx, env, cfg, f, log, embedding{})
		},
	})
}

func newLogger(env *cli, format, level string) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(env.stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(env.stderr, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, got %q", format)
}

// fanout records every event in each recorder.
type fanout []reconcile.Recorder

func (f fanout) Record(e reconcile.Event) {
	for _, r := range f {
		r.Record(e)
	}
}

// embedding is what tandem demo adds to the daemon it runs in its own
// process; tandem run uses the zero value.
type embedding struct {
	listener net.Listener       // serve the HTTP API here instead of on cfg.Listen
	recorder reconcile.Recorder // also receives every event
}

// runDaemon wires the daemon: state directory lock (or leader election),
// providers, Git source, journal, events log, notifications, metrics and
// the HTTP server; then runs until ctx ends.
func runDaemon(ctx context.Context, env *cli, cfg *spec.Config, f runFlags, log *slog.Logger, emb embedding) error {
	// Every secret the daemon can know, removed from its logs, events,
	// notifications and answers (docs/security.md).
	red := redact.ForConfig(cfg)
	log = slog.New(redact.Handler(red, log.Handler()))
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	if cfg.HA == nil {
		release, err := ha.Lock(cfg.StateDir)
		if err != nil {
			return err
		}
		defer release()
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	metrics := server.NewMetrics(reg)

	ps, closeProviders, err := all.New(cfg, log)
	if err != nil {
		return err
	}
	defer closeProviders()
	ps = providers.Instrument(ps, metrics.ObserveProviderRequest)

	src, err := gitsource.New(cfg.Git, cfg, cfg.StateDir, log)
	if err != nil {
		return fmt.Errorf("git source: %w", err)
	}
	evlog, err := events.Open(filepath.Join(cfg.StateDir, "events.jsonl"), 2000, events.WithLogger(log), events.WithRedactor(red))
	if err != nil {
		return err
	}
	defer evlog.Close()
	notifier, err := notify.New(cfg.Notify, log, notify.WithRegisterer(reg), notify.WithRedactor(red))
	if err != nil {
		return err
	}
	token, err := spec.SecretFromEnv("api.tokenEnv", cfg.API.TokenEnv)
	if err != nil {
		return err
	}
	readToken, err := spec.SecretFromEnv("api.readTokenEnv", cfg.API.ReadTokenEnv)
	if err != nil {
		return err
	}

	recorder := fanout{evlog, notifier, metrics}
	if emb.recorder != nil {
		recorder = append(recorder, emb.recorder)
	}

	var wg sync.WaitGroup
	defer wg.Wait()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wg.Go(func() { notifier.Run(ctx) })
	wg.Go(func() {
		if err := src.Run(ctx); err != nil {
			log.Error("git source stopped", "error", err)
		}
	})

	cur := &current{}
	newDaemon := func(store reconcile.Store, fence reconcile.Fence, term context.Context) *daemon.Daemon {
		var d *daemon.Daemon
		d = daemon.New(daemon.Options{
			Config: cfg, Providers: ps, Source: src, Store: store, Fence: fence, Term: term, Log: log, DryRun: f.dryRun,
			Recorder: recorder, Redactor: red, MetadataKeys: cfg.API.MetadataKeys,
			OnPass: func(service string, class reconcile.Class, took time.Duration) {
				metrics.ObservePass(service, class, took)
				if st, ok := d.Reconciler().Status(service); ok {
					metrics.ObserveStatus(st)
				} else {
					metrics.Forget(service)
				}
			},
			OnSource: func(st gitsource.Status) {
				if st.Good != nil {
					metrics.SetRevision(st.Good.Hash)
				}
				if st.FetchErr == nil && !st.LastFetch.IsZero() {
					metrics.GitLastFetchSuccess.Set(float64(st.LastFetch.Unix()))
				}
			},
		})
		return d
	}

	if f.once {
		store, err := reconcile.NewFileStore(filepath.Join(cfg.StateDir, "journal"))
		if err != nil {
			return err
		}
		if cfg.HA != nil {
			return usagef("--once acts alone; it cannot be used with ha (run it on a replica without ha, or use --dry-run)")
		}
		statuses, err := newDaemon(store, nil, nil).Once(ctx, f.onceMaxPasses)
		if err != nil {
			return err
		}
		var table bytes.Buffer
		if err := server.PrintStatus(&table, statuses, "table"); err != nil {
			return err
		}
		if _, err := env.stdout.Write(red.Bytes(table.Bytes())); err != nil {
			return err
		}
		for _, st := range statuses {
			if !st.InSync {
				return errReported
			}
		}
		return nil
	}

	if cfg.HA != nil {
		// Before the API serves: a follower's answers name the leader.
		el, err := ha.NewElector(*cfg.HA, ha.Identity(), log)
		if err != nil {
			return err
		}
		defer el.Close()
		cur.elector, cur.leader = el, el.Leader
	}
	srv := server.New(server.Options{
		Status: cur, Events: evlog, Actions: cur, Registry: reg, Token: token, GitWebhook: src.WebhookHandler(), Source: src, Log: log,
		Ready: cur.ready, ReadToken: readToken, MetricsRequireToken: cfg.API.MetricsRequireToken, AllowedHosts: server.AllowedHosts(cfg.Listen, cfg.API.AllowedHosts),
		MaxStreams: cfg.API.MaxStreams, Redactor: red,
	})
	serve := func() error { return srv.Serve(ctx, cfg.Listen) }
	if emb.listener != nil {
		serve = func() error { return srv.ServeListener(ctx, emb.listener) }
	}
	wg.Go(func() {
		if err := serve(); err != nil {
			log.Error("HTTP server stopped", "listen", cfg.Listen, "error", err)
			cancel()
		}
	})
	log.Info("tandem running", "config", f.config, "state_dir", cfg.StateDir, "listen", cfg.Listen, "dry_run", f.dryRun, "ha", cfg.HA != nil)

	if cfg.HA == nil {
		store, err := reconcile.NewFileStore(filepath.Join(cfg.StateDir, "journal"))
		if err != nil {
			return err
		}
		d := newDaemon(store, nil, nil)
		cur.set(d, "")
		return d.Run(ctx)
	}
	return cur.elector.Run(ctx, func(ctx context.Context, l *ha.Leadership) error {
		d := newDaemon(l.Store(), l, l.Context())
		cur.set(d, "")
		defer cur.set(nil, "lost the leadership")
		log.Info("leading: acting on live state")
		return d.Run(ctx)
	})
}

// current is what the HTTP API serves: the daemon acting now (the leader
// under ha), or none.
type current struct {
	d   atomic.Pointer[daemon.Daemon]
	why atomic.Pointer[string]
	// Under ha: the elector, and who leads. Set before the API serves.
	elector *ha.Elector
	leader  func(context.Context) (string, error)
}

var errNotActing = errors.New("this replica is not acting")

func (c *current) set(d *daemon.Daemon, why string) {
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
			return fmt.Errorf("%w: %s leads; ask it", errNotActing, who)
		}
	}
	if why := c.why.Load(); why != nil && *why != "" {
		return fmt.Errorf("%w: %s", errNotActing, *why)
	}
	return errNotActing
}

// notFound maps the daemon's unknown-service error to the API's.
func notFound(service string, err error) error {
	if errors.Is(err, daemon.ErrNotFound) {
		return fmt.Errorf("%s: %w", service, server.ErrNotFound)
	}
	return err
}
