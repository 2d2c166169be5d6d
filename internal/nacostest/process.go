package nacostest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"syscall"
	"time"
)

// errStartFailed marks a start that failed in a way a fresh start may not:
// the process ended before it was ready (how a port taken since it was
// chosen shows up) or came up broken.
var errStartFailed = errors.New("server failed to start")

// process is one server process, in its own process group, with its output
// in a log file.
type process struct {
	cmd     *exec.Cmd
	logPath string
	exited  chan struct{} // closed when the process has ended
	waitErr error         // set before exited is closed
}

// startProcess starts cmd with its stdout and stderr appended to logPath.
func startProcess(cmd *exec.Cmd, logPath string) (*process, error) {
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("creating server log: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Own process group, so that stop reaches any children; Pdeathsig, so that
	// a test binary killed by a timeout does not leave servers behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return nil, fmt.Errorf("starting %s: %w", cmd.Path, err)
	}
	p := &process{cmd: cmd, logPath: logPath, exited: make(chan struct{})}
	go func() {
		p.waitErr = cmd.Wait()
		logFile.Close()
		close(p.exited)
	}()
	return p, nil
}

// stopGrace is how long stop waits after SIGTERM before it sends SIGKILL.
const stopGrace = 5 * time.Second

// stop ends the process group: SIGTERM, then SIGKILL if it lingers. It
// returns when the process has ended.
func (p *process) stop() error {
	select {
	case <-p.exited:
		return nil
	default:
	}
	pgid := p.cmd.Process.Pid
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("signalling process group %d: %w", pgid, err)
	}
	grace := time.NewTimer(stopGrace)
	defer grace.Stop()
	select {
	case <-p.exited:
		return nil
	case <-grace.C:
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("killing process group %d: %w", pgid, err)
	}
	<-p.exited
	return nil
}

// tailLines is how many lines of the log tail prints.
const tailLines = 40

// tail returns the last lines of the server's log.
func (p *process) tail() string {
	b, err := os.ReadFile(p.logPath)
	if err != nil {
		return fmt.Sprintf("(reading %s: %v)", p.logPath, err)
	}
	b = bytes.TrimRight(b, "\n")
	for i, n := len(b)-1, 0; i >= 0; i-- {
		if b[i] == '\n' {
			if n++; n == tailLines {
				return string(b[i+1:])
			}
		}
	}
	return string(b)
}

// httpClient makes the package's own requests. It keeps no idle
// connections: r-nacos (actix-web) delays its exit on SIGTERM while clients
// hold keep-alive connections open.
var httpClient = &http.Client{
	Timeout:   5 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true},
}

// readyPoll is how often poll checks.
const readyPoll = 100 * time.Millisecond

// waitReady polls url until it answers 200 OK.
func (p *process) waitReady(url string, timeout time.Duration) error {
	return p.poll(timeout, url+" ready", func() (bool, string) {
		resp, err := httpClient.Get(url)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// poll calls check until it reports done, the process ends
// (errStartFailed) or timeout passes; check also returns what it saw, for
// the error.
func (p *process) poll(timeout time.Duration, what string, check func() (done bool, saw string)) error {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(readyPoll)
	defer tick.Stop()
	for {
		done, saw := check()
		if done {
			return nil
		}
		select {
		case <-p.exited:
			return fmt.Errorf("%w: it exited (%v) while waiting for %s; last lines of %s:\n%s", errStartFailed, p.waitErr, what, p.logPath, p.tail())
		case <-deadline.C:
			return fmt.Errorf("no %s after %s (last: %s); last lines of %s:\n%s", what, timeout, saw, p.logPath, p.tail())
		case <-tick.C:
		}
	}
}

// freePorts returns n distinct ports that are free on 127.0.0.1 now.
func freePorts(n int) ([]int, error) {
	ports := make([]int, n)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		defer l.Close()
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports, nil
}

// portsFree reports whether every port can be listened on at 127.0.0.1 now.
func portsFree(ports ...int) bool {
	for _, p := range ports {
		if p <= 1024 || p > 65535 {
			return false
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			return false
		}
		l.Close()
	}
	return true
}
