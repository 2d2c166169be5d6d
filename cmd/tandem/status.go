package main

import (
	"context"
	"flag"
	"os"
	"time"

	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

func init() {
	var url, output, tokenEnv string
	register(&command{
		name: "status",
		summary: `Show every service as the running daemon sees it: desired and live active group, versions of A and B,
weights per binding, phase, readiness, drift and revision.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&url, "server", "http://127.0.0.1:8080", "URL of the daemon's HTTP API")
			fs.StringVar(&output, "output", "table", "table or json")
			fs.StringVar(&output, "o", "table", "shorthand for --output")
			fs.StringVar(&tokenEnv, "token-env", "TANDEM_API_TOKEN", "environment variable holding the read (or write) token, sent when set")
		},
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 0 {
				return usagef("status takes no arguments")
			}
			if output != "table" && output != "json" {
				return usagef("--output must be table or json, got %q", output)
			}
			ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			defer cancel()
			// An unset variable sends no token: the daemon may not need one.
			list, err := server.FetchServices(ctx, url, spec.Secret(os.Getenv(tokenEnv)))
			if err != nil {
				return err
			}
			return server.PrintServices(env.stdout, list, output)
		},
	})
}
