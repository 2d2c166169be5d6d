package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/providers/all"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

type runFlags struct {
	config           string
	once, dryRun     bool
	logFormat, level string
	onceMaxPasses    int
	onceTimeout      time.Duration
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
			return runDaemon(ctx, env, cfg, f, log)
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

func runDaemon(ctx context.Context, env *cli, cfg *spec.Config, f runFlags, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return fmt.Errorf("creating state directory: %w", err)
	}
	ps, closeProviders, err := all.New(cfg, log)
	if err != nil {
		return err
	}
	defer closeProviders()
	src, err := gitsource.New(cfg.Git, cfg, cfg.StateDir, log)
	if err != nil {
		return fmt.Errorf("git source: %w", err)
	}
	store, err := reconcile.NewFileStore(filepath.Join(cfg.StateDir, "journal"))
	if err != nil {
		return err
	}
	d := daemon.New(daemon.Options{Config: cfg, Providers: ps, Source: src, Store: store, Log: log, DryRun: f.dryRun})
	if f.once {
		statuses, err := d.Once(ctx, f.onceMaxPasses)
		if err != nil {
			return err
		}
		inSync := true
		for _, st := range statuses {
			inSync = inSync && st.InSync
			fmt.Fprintf(env.stdout, "%-20s %-8t %s\n", st.Service, st.InSync, st.Summary)
		}
		if !inSync {
			return errReported
		}
		return nil
	}
	log.Info("tandem running", "config", f.config, "state_dir", cfg.StateDir, "dry_run", f.dryRun)
	return d.Run(ctx)
}
