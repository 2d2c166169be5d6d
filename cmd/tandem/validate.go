package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

func init() {
	var configFile *string
	register(&command{
		name: "validate",
		args: "DIR",
		summary: `Check a desired-state directory (and the daemon config) without touching anything.
Every problem is printed as FILE:LINE: field.path: message; exit 1 if there is any.`,
		flags: func(fs *flag.FlagSet) {
			configFile = fs.String("config", "", "daemon config (tandem.yaml); also checks that bindings name configured providers")
		},
		run: func(_ context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usagef("expected one directory, got %d arguments", len(args))
			}
			set, cfg, err := load(args[0], *configFile)
			if err != nil {
				return report(env, err)
			}
			warn(env, args[0], set)
			what := fmt.Sprintf("%d services", len(set.Services))
			if cfg != nil {
				what += " and " + *configFile
			}
			fmt.Fprintf(env.stdout, "ok: %s valid (%s)\n", what, strings.Join(set.Names(), ", "))
			return nil
		},
	})

	var planConfig, output string
	register(&command{
		name: "plan",
		args: "DIR",
		summary: `Show what Tandem would do to bring live state to the desired state in DIR:
for each service, the phases of the transition, the calls it makes and the waits with their bounds.
Nothing is changed. Live state is simulated: the group that is not desired is taken to serve the
current version (use a running daemon's /api/v1/services for the real one).`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&planConfig, "config", "", "daemon config (tandem.yaml)")
			fs.StringVar(&output, "output", "text", "text or json")
			fs.StringVar(&output, "o", "text", "shorthand for --output")
		},
		run: func(_ context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usagef("expected one directory, got %d arguments", len(args))
			}
			if output != "text" && output != "json" {
				return usagef("--output must be text or json, got %q", output)
			}
			set, _, err := load(args[0], planConfig)
			if err != nil {
				return report(env, err)
			}
			warn(env, args[0], set)
			pvs := simulatePlans(set)
			if output == "json" {
				enc := json.NewEncoder(env.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				return enc.Encode(pvs)
			}
			fmt.Fprint(env.stdout, reconcile.Render(pvs))
			return nil
		},
	})
}

// load reads the desired state of dir and, when given, the daemon config.
// dir may be the repository root (with a services/ directory) or the
// services directory itself.
func load(dir, configFile string) (*spec.Set, *spec.Config, error) {
	var cfg *spec.Config
	if configFile != "" {
		c, err := spec.LoadConfig(configFile)
		if err != nil {
			return nil, nil, err
		}
		cfg = c
	}
	root, sub := dir, "."
	if cfg != nil {
		if st, err := os.Stat(filepath.Join(dir, cfg.Git.Path)); err == nil && st.IsDir() {
			sub = cfg.Git.Path
		}
	} else if st, err := os.Stat(filepath.Join(dir, "services")); err == nil && st.IsDir() {
		sub = "services"
	}
	set, err := spec.Load(os.DirFS(root), sub, cfg)
	if ps, ok := spec.AsProblems(err); ok {
		// Name files as the operator typed them.
		for i := range ps {
			if ps[i].File != "" { // not "... and N more problems"
				ps[i].File = filepath.Join(root, ps[i].File)
			}
		}
		return nil, nil, ps
	}
	return set, cfg, err
}

// warn prints the set's warnings, located like problems, on stderr.
func warn(env *cli, dir string, set *spec.Set) {
	for _, w := range set.Warnings() {
		if !filepath.IsAbs(w.File) {
			w.File = filepath.Join(dir, w.File)
		}
		fmt.Fprintln(env.stderr, w.String())
	}
}

// report prints located problems one per line with a count.
func report(env *cli, err error) error {
	ps, ok := spec.AsProblems(err)
	if !ok {
		return err
	}
	for _, p := range ps {
		fmt.Fprintln(env.stderr, p.String())
	}
	noun := "problems"
	if ps.Count() == 1 {
		noun = "problem"
	}
	fmt.Fprintf(env.stderr, "%d %s; nothing was changed\n", ps.Count(), noun)
	return errReported
}
