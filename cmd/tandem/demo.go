package main

import (
	"context"
	"flag"
	"fmt"

	"github.com/tandemhq/tandem/reconcile"
)

func init() {
	var dir string
	register(&command{
		name: "demo",
		summary: `Show Tandem at work on the embedded default, with no external services.
Prints the release plan of the example desired state against a simulated fleet.`,
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&dir, "dir", "examples", "desired-state directory to show")
		},
		run: func(_ context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 0 {
				return usagef("demo takes no arguments")
			}
			set, _, err := load(dir, "")
			if err != nil {
				return report(env, err)
			}
			fmt.Fprintf(env.stdout, "Desired state in %s; live state simulated in memory.\n\n", dir)
			fmt.Fprint(env.stdout, reconcile.Render(simulatePlans(set)))
			return nil
		},
	})
}
