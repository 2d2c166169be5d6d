package deploy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Exec runs a command to deploy a group. The command gets, of the daemon's
// environment, only PATH, HOME, LANG, TZ and what policy.hooks.env of
// tandem.yaml adds (never a credential a *Env field names, unless listed by
// name), plus:
//
//	TANDEM_SERVICE    the service name
//	TANDEM_GROUP      A or B
//	TANDEM_VERSION    the version to deploy
//	TANDEM_INSTANCES  the group's instances as comma-separated ip:port, e.g. 10.0.2.11:8080,10.0.2.12:8080
//
// Exit status 0 is success. Its stdout and stderr are captured together
// (the last 64 KiB) into DeployResult.Output, and their last lines into the
// error of a failed deploy. The command runs in its own process group; on
// timeout or cancellation the group gets SIGTERM, and once the command has
// exited (at most 2s later) whatever is left of the group gets SIGKILL.
// Background processes the hook leaves behind (e.g. a restarted app) are
// left alone when it succeeds; they should not keep its stdout/stderr open
// (redirect them), or the deploy waits 2s more for the output to end.
type Exec struct {
	Command []string      // argv; a relative path is resolved against Dir
	Dir     string        // working directory; "" is the daemon's
	Timeout time.Duration // 0: no limit but the caller's context
	// EnvAllowed says which of the daemon's variables the command gets;
	// nil: spec.BaseHookEnv.
	EnvAllowed func(name string) bool
	// Field names the hook in the spec for messages: "deploy" (the
	// default) or "gates.smoke.exec"; its timeout is Field + ".timeout".
	Field string
	log   *slog.Logger
}

var _ providers.Deployer = (*Exec)(nil)

// waitDelay is how long a command may take to exit after SIGTERM, and how
// long its output may stay open after it exited.
const waitDelay = 2 * time.Second

// Deploy runs the command for req and waits for it.
func (e *Exec) Deploy(ctx context.Context, req providers.DeployRequest) (providers.DeployResult, error) {
	addrs := make([]string, len(req.Instances))
	for i, in := range req.Instances {
		addrs[i] = in.Addr()
	}
	log := e.logger().With("target", req.Service, "revision", req.Revision, "action", "deploy")
	log.Info("deploy started", "group", req.Group, "version", req.Version, "command", e.command())
	start := time.Now()
	out, err := e.Run(ctx, describe(req),
		"TANDEM_SERVICE="+req.Service,
		"TANDEM_GROUP="+string(req.Group),
		"TANDEM_VERSION="+req.Version,
		"TANDEM_INSTANCES="+strings.Join(addrs, ","),
	)
	res := providers.DeployResult{Output: out}
	if err != nil {
		log.Warn("deploy failed", "group", req.Group, "version", req.Version, "duration", time.Since(start), "err", err)
		return res, err
	}
	log.Info("deploy finished", "group", req.Group, "version", req.Version, "duration", time.Since(start))
	return res, nil
}

// Run runs the command with vars (NAME=value) added to the part of the
// daemon's environment it may see, and waits for it. It returns the
// command's output (the last 64 KiB of stdout and stderr together) and,
// when it did not exit 0, an error that starts with what and ends with the
// last lines of the output.
func (e *Exec) Run(ctx context.Context, what string, vars ...string) (string, error) {
	if len(e.Command) == 0 || e.Command[0] == "" {
		return "", providers.Permanentf("InvalidHook", "%s: %s is empty", what, e.field())
	}
	if e.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, e.Timeout, errTimeout)
		defer cancel()
	}
	out := newTail()
	cmd := exec.CommandContext(ctx, e.Command[0], e.Command[1:]...)
	cmd.Dir = e.Dir
	cmd.Env = append(e.environ(), vars...)
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = waitDelay

	err := cmd.Run()
	if ctx.Err() != nil && cmd.Process != nil {
		// The command was cancelled: make sure nothing of its group survives.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	output := out.String()
	if errors.Is(err, exec.ErrWaitDelay) && ctx.Err() == nil {
		err = nil // exited 0; only a background process kept the output open
	}
	if err != nil {
		return output, e.failure(ctx, what, err, output)
	}
	return output, nil
}

// failure classifies a failed run.
func (e *Exec) failure(ctx context.Context, what string, err error, output string) error {
	what = fmt.Sprintf("%s: %s", what, e.Command[0])
	var exitErr *exec.ExitError
	switch {
	case timedOut(ctx):
		return providers.Permanent("DeployTimeout", fmt.Errorf("%s: killed after %s.timeout %s%s", what, e.field(), e.Timeout, lastLines(output)))
	case ctx.Err() != nil:
		return fmt.Errorf("%s: %w", what, context.Cause(ctx))
	case errors.As(err, &exitErr):
		return providers.Permanent("DeployFailed", fmt.Errorf("%s: %w%s", what, err, lastLines(output)))
	}
	// The command could not start: not found, not executable, bad directory.
	return providers.Permanent("DeployFailed", fmt.Errorf("%s: %w", what, err))
}

func (e *Exec) field() string {
	if e.Field == "" {
		return "deploy"
	}
	return e.Field
}

func (e *Exec) command() string {
	if len(e.Command) == 0 {
		return ""
	}
	return e.Command[0]
}

// environ is the part of the daemon's environment the command gets.
func (e *Exec) environ() []string {
	allowed := e.EnvAllowed
	if allowed == nil {
		allowed = func(name string) bool { return slices.Contains(spec.BaseHookEnv, name) }
	}
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		if allowed(name) {
			env = append(env, kv)
		}
	}
	return env
}

func (e *Exec) logger() *slog.Logger {
	if e.log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.log
}
