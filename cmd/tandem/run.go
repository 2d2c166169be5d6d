package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
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

// runDaemon runs the daemon daemon.Assemble wires until ctx ends; with
// --once it makes its passes and prints the statuses.
func runDaemon(ctx context.Context, env *cli, cfg *spec.Config, f runFlags, log *slog.Logger) error {
	if f.once && cfg.HA != nil {
		return usagef("--once acts alone; it cannot be used with ha (run it on a replica without ha, or use --dry-run)")
	}
	a, err := daemon.Assemble(cfg, daemon.AssembleOptions{Log: log, DryRun: f.dryRun, Once: f.once, ConfigName: f.config})
	if err != nil {
		return err
	}
	if !f.once {
		return errors.Join(a.Run(ctx), a.Close())
	}
	statuses, err := a.Once(ctx, f.onceMaxPasses)
	if err = errors.Join(err, a.Close()); err != nil {
		return err
	}
	var table bytes.Buffer
	if err := server.PrintStatus(&table, statuses, "table"); err != nil {
		return err
	}
	if _, err := env.stdout.Write(a.Redactor().Bytes(table.Bytes())); err != nil {
		return err
	}
	for _, st := range statuses {
		if !st.InSync {
			return errReported
		}
	}
	return nil
}
