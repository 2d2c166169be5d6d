// Package deploy upgrades a service's idle group through the hook its spec
// names: a command (exec) or a deploy system spoken to over HTTP (http).
//
// Failures that retrying cannot fix are providers.Permanent: the command
// failed or could not start, the deploy system rejected the request or
// reported failure, or the deploy outlived deploy.timeout (the hook was
// killed, or the remote deploy may still be running: a person has to look).
// Errors of the daemon's own context (shutdown, lost lease) and failures to
// reach the deploy system before it accepted the request are returned as
// they are, so the reconciler retries them.
package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/internal/egress"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Policy is what tandem.yaml lets a deploy hook chosen in Git do (the
// policy section, spec.Policy). The zero Policy refuses every command,
// gives hooks only spec.BaseHookEnv of the daemon's environment, and lets
// HTTP deploys reach any host but the refused ranges (spec.Allowlist).
type Policy struct {
	CommandAllowed func(argv0 string) bool // policy.hooks.commands; nil: none
	EnvAllowed     func(name string) bool  // policy.hooks.env; nil: spec.BaseHookEnv
	Hosts          *spec.Allowlist         // policy.network.deploy; nil: any host but the refused ranges
	Resolver       egress.Resolver         // nil: the system resolver
}

// PolicyOf is the deploy policy of a configuration.
func PolicyOf(cfg *spec.Config) Policy {
	return Policy{CommandAllowed: cfg.Policy.Hooks.CommandAllowed, EnvAllowed: cfg.HookEnvAllowed, Hosts: cfg.DeployHosts()}
}

// New returns the deployer that d asks for, if the policy allows it. d
// must have been validated (exactly one of exec and http is set).
func New(d spec.Deploy, pol Policy, log *slog.Logger) (providers.Deployer, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	switch {
	case len(d.Exec) > 0 && d.HTTP == nil:
		return pol.Exec("deploy", d.Exec, d.Timeout.D(), log)
	case d.HTTP != nil && len(d.Exec) == 0:
		return newHTTP(*d.HTTP, d.Timeout.D(), pol, log)
	}
	return nil, errors.New("deploy: set exactly one of exec and http")
}

// Exec returns the hook that runs argv, if policy.hooks.commands allows
// argv[0]; field names the hook in the spec (deploy, gates.smoke.exec).
// Every exec hook a service file names is built here, so that each obeys
// the same policy: the allowed commands, and only the allowed part of the
// daemon's environment (policy.hooks.env).
func (pol Policy) Exec(field string, argv []string, timeout time.Duration, log *slog.Logger) (*Exec, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	argv0 := field + ".exec[0]"
	if field != "deploy" {
		argv0 = field + ".command[0]"
	}
	if len(argv) == 0 || argv[0] == "" {
		return nil, providers.Permanentf("InvalidHook", "%s: the command is empty", argv0)
	}
	if pol.CommandAllowed == nil || !pol.CommandAllowed(argv[0]) {
		return nil, providers.Permanentf("PolicyRefused", "%s: %q is not one of the commands policy.hooks.commands of the daemon config allows", argv0, argv[0])
	}
	return &Exec{Command: argv, Timeout: timeout, EnvAllowed: pol.EnvAllowed, Field: field, log: log}, nil
}

// errTimeout is the cause of a deploy's context when deploy.timeout passed.
var errTimeout = errors.New("deploy timeout passed")

// timedOut reports whether a deploy's context ended because deploy.timeout
// passed: its own deadline, or the caller's, which is the same
// deploy.timeout (the reconciler bounds the step by it) and, set first,
// passes first.
func timedOut(ctx context.Context) bool {
	return errors.Is(context.Cause(ctx), errTimeout) || errors.Is(ctx.Err(), context.DeadlineExceeded)
}

// maxOutput bounds the output kept from a deploy; the tail is kept.
const maxOutput = 64 << 10

// tail keeps the last max bytes written to it; it is safe for concurrent
// writers (a command's stdout and stderr).
type tail struct {
	mu        sync.Mutex
	buf       []byte
	max       int
	truncated bool
}

func newTail() *tail { return &tail{max: maxOutput} }

func (t *tail) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = t.buf[:copy(t.buf, t.buf[over:])]
		t.truncated = true
	}
	return len(p), nil
}

func (t *tail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.truncated {
		return "[output truncated]\n" + string(t.buf)
	}
	return string(t.buf)
}

// lastLines returns the end of a deploy's output for an error message:
// at most 5 lines and 500 bytes, or "" when there is no output.
func lastLines(out string) string {
	out = strings.TrimSpace(out)
	if out == "" {
		return ""
	}
	if len(out) > 500 {
		out = strings.ToValidUTF8(out[len(out)-500:], "")
	}
	lines := strings.Split(out, "\n")
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return ": " + strings.Join(lines, " | ")
}

func describe(req providers.DeployRequest) string {
	return fmt.Sprintf("deploying %s group %s to version %s", req.Service, req.Group, req.Version)
}
