package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"path/filepath"
	"time"

	"github.com/tandemhq/tandem/check"
	"github.com/tandemhq/tandem/providers/all"
)

func init() {
	var configFile, output string
	var timeout time.Duration
	register(&command{
		name: "check",
		args: "DIR",
		summary: `Preflight against the real load balancers and registries of tandem.yaml, changing nothing:
credentials work; every binding's server group, load balancer and listener exist; the servers each
load balancer lists are exactly the instances of the files (id, ip, port) with the weights active
implies; health checks are on where the shift reads them; the Nacos services and instances exist.
Every finding names the file, the binding and what to fix. Exit 1 on any error.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&configFile, "config", "", "daemon config (tandem.yaml) naming the providers; required")
			fs.StringVar(&output, "output", "text", "text or json")
			fs.StringVar(&output, "o", "text", "shorthand for --output")
			fs.DurationVar(&timeout, "timeout", 2*time.Minute, "give up after this long")
		},
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 1 {
				return usagef("expected one directory, got %d arguments", len(args))
			}
			if configFile == "" {
				return usagef("--config is required: check reads the providers it names")
			}
			if output != "text" && output != "json" {
				return usagef("--output must be text or json, got %q", output)
			}
			set, cfg, err := load(args[0], configFile)
			if err != nil {
				return report(env, err)
			}
			ps, closeProviders, err := all.New(cfg, nil)
			if err != nil {
				return err
			}
			defer func() { _ = closeProviders() }()
			ctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			in := check.Input{ConfigFile: configFile, Config: cfg, Services: set}
			in.UseProviders(ps)
			rep, err := check.Run(ctx, in)
			if err != nil {
				return fmt.Errorf("checking %s against %s: %w", args[0], configFile, err)
			}
			for i, f := range rep.Findings {
				if f.Service != "" {
					rep.Findings[i].File = filepath.Join(args[0], f.File) // as the operator typed the directory
				}
			}
			if output == "json" {
				enc := json.NewEncoder(env.stdout)
				enc.SetIndent("", "  ")
				enc.SetEscapeHTML(false)
				if err := enc.Encode(rep); err != nil {
					return err
				}
			} else {
				fmt.Fprint(env.stdout, rep.Text())
			}
			if rep.Errors() > 0 {
				return errReported
			}
			return nil
		},
	})
}
