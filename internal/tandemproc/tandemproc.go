// Package tandemproc runs `tandem run` as a child process, for the tests
// and benchmarks that need the daemon in a process of its own (its memory,
// its signals, its restarts): internal/scalebench and reliability.
package tandemproc

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/daemon"
)

// Options describe one run of the daemon.
type Options struct {
	Bin    string   // the tandem binary
	Config string   // its tandem.yaml
	Args   []string // added to `run --config Config --log-format json`
	Env    []string // added to this process's environment
	Out    io.Writer
	// StateDir is the configuration's state directory: Start removes an
	// api.addr a killed run left there, so that Addr reads this run's.
	StateDir string
}

// Proc is a running (or exited) `tandem run`.
type Proc struct {
	Cmd      *exec.Cmd
	stateDir string
	exited   chan struct{}
	err      error
}

// Start runs the daemon with its output (stdout and stderr) on o.Out.
func Start(o Options) (*Proc, error) {
	if o.StateDir != "" {
		if err := os.Remove(filepath.Join(o.StateDir, daemon.AddrFile)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, err
		}
	}
	cmd := exec.Command(o.Bin, append([]string{"run", "--config", o.Config, "--log-format", "json"}, o.Args...)...)
	cmd.Env = append(os.Environ(), o.Env...)
	cmd.Stdout, cmd.Stderr = o.Out, o.Out
	// Pdeathsig: a test binary killed by its timeout leaves no daemon behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", o.Bin, err)
	}
	p := &Proc{Cmd: cmd, stateDir: o.StateDir, exited: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.exited)
	}()
	return p, nil
}

// Exited is closed when the process has ended.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit status once Exited is closed.
func (p *Proc) Err() error {
	<-p.exited
	return p.err
}

// Running reports whether the process has not ended yet.
func (p *Proc) Running() bool {
	select {
	case <-p.exited:
		return false
	default:
		return true
	}
}

// addrPoll is how often Addr looks for the address file.
const addrPoll = 10 * time.Millisecond

// Addr waits until the daemon has bound its API and returns its host:port,
// as the daemon writes it in the state directory (daemon.AddrFile). It
// fails when the process exits first or ctx ends.
func (p *Proc) Addr(ctx context.Context) (string, error) {
	if p.stateDir == "" {
		return "", errors.New("tandemproc: Addr needs Options.StateDir")
	}
	path := filepath.Join(p.stateDir, daemon.AddrFile)
	t := time.NewTicker(addrPoll)
	defer t.Stop()
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			return strings.TrimSpace(string(b)), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		select {
		case <-p.exited:
			return "", fmt.Errorf("the daemon exited before it served its API (%v)", p.err)
		case <-ctx.Done():
			return "", fmt.Errorf("waiting for %s: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}

// Kill sends SIGKILL and waits for the process to end.
func (p *Proc) Kill() error {
	if err := p.Cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	<-p.exited
	return nil
}

// Stop sends SIGTERM and waits for the exit; after grace it kills the
// process and says so. It returns the exit status.
func (p *Proc) Stop(grace time.Duration) error {
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(grace):
		_ = p.Kill()
		return fmt.Errorf("the daemon did not stop within %s of SIGTERM and was killed", grace)
	}
}
