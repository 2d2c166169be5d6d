package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/user"
	"time"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

// promote and abort end the approval pause of a release (gates.approval in
// the service's spec) through the running daemon's API.
func init() {
	for _, c := range []struct {
		action  spec.ApprovalDecision
		summary string
	}{
		{spec.ApprovalPromote, `Promote the release of SERVICE paused at its approval gate (gates.approval): the target group,
deployed and verified, gets its traffic; or paused at a manual rollout step (pause: manual): the
rollout goes on to its next step.`},
		{spec.ApprovalAbort, `Abort the release of SERVICE paused at its approval gate (gates.approval): it is undone; the target
group never got traffic and the serving group was never touched; or paused at a manual rollout step
(pause: manual): all traffic goes back to the serving group at once. Git keeps asking for the
release: commit a revert, or a fix, to move on.`},
	} {
		var url, tokenEnv, transition string
		var step int
		register(&command{
			name: string(c.action), args: "SERVICE", summary: c.summary,
			flags: func(fs *flag.FlagSet) {
				fs.StringVar(&url, "server", "http://127.0.0.1:8080", "URL of the daemon's HTTP API")
				fs.StringVar(&tokenEnv, "token-env", "TANDEM_API_TOKEN", "environment variable holding the API token (api.tokenEnv), sent when set")
				fs.StringVar(&transition, "transition", "", "the paused transition's id (tandem status -o json); refused when another one is paused. Default: whichever is paused")
				fs.IntVar(&step, "step", reconcile.AnyPause, "the pause: 0 the approval gate, N the manual pause of rollout step N; refused when another one is open. Default: whichever is open")
			},
			run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
				if len(args) != 1 {
					return usagef("%s takes one argument, the service, got %d", c.action, len(args))
				}
				ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
				defer cancel()
				req := server.DecisionRequest{Transition: transition, By: "cli " + whoami()}
				if step != reconcile.AnyPause {
					req.Step = &step
				}
				res, err := server.Decide(ctx, url, spec.Secret(os.Getenv(tokenEnv)), args[0], c.action, req)
				if err != nil {
					return err
				}
				_, err = fmt.Fprintf(env.stdout, "%s of %s accepted, by %s; the daemon journals it in the service's next pass (tandem status shows it).\n",
					res.Action, res.Service, res.By)
				return err
			},
		})
	}
}

// whoami names the person at the command line for the audit trail, as
// user@host (what the OS says; the API token is what authorizes).
func whoami() string {
	name := "unknown"
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if h, err := os.Hostname(); err == nil && h != "" {
		name += "@" + h
	}
	if len(name) > 60 {
		name = name[:60]
	}
	return name
}
