package reliability_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tandemhq/tandem/internal/tandemproc"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

// daemon is `tandem run` as a subprocess. Its output (stdout and stderr of
// every run) is appended to one log file; its state directory outlives it.
type daemon struct {
	t       testing.TB
	config  string // tandem.yaml
	cfg     *spec.Config
	logPath string
	env     []string // added to the test process's environment
	args    []string // added to `run --config ...`
	runs    int

	proc *tandemproc.Proc // the last run
}

// newDaemon writes cfg (with a free loopback port to listen on) to
// dir/tandem.yaml; start runs it.
func newDaemon(t testing.TB, dir string, cfg *spec.Config) *daemon {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	cfg.Listen = ln.Addr().String()
	require.NoError(t, ln.Close())
	d := &daemon{t: t, config: filepath.Join(dir, "tandem.yaml"), cfg: cfg, logPath: filepath.Join(dir, "daemon.log")}
	d.writeConfig()
	t.Cleanup(func() {
		if d.running() {
			d.kill()
		}
		if t.Failed() {
			d.keepLog()
		}
	})
	return d
}

// writeConfig writes d.cfg, checking that the daemon's own loader accepts it.
func (d *daemon) writeConfig() {
	d.t.Helper()
	data, err := yaml.Marshal(d.cfg)
	require.NoError(d.t, err)
	_, err = spec.ParseConfig(d.config, data)
	require.NoError(d.t, err, "the generated tandem.yaml:\n%s", data)
	require.NoError(d.t, os.WriteFile(d.config, data, 0o600))
}

// start runs the daemon and waits until it serves its API (bounded).
func (d *daemon) start() {
	d.t.Helper()
	d.spawn()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err := poll(ctx, 10*time.Millisecond, func() bool {
		if !d.proc.Running() {
			return true
		}
		resp, err := http.Get(d.url("/healthz"))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	if !d.proc.Running() {
		d.t.Fatalf("the daemon exited at start (%s); its log:\n%s", d.proc.Cmd.ProcessState, d.tail(40))
	}
	require.NoError(d.t, err, "the daemon's API did not come up; its log:\n%s", d.tail(40))
}

// runToExit runs the daemon until it exits by itself (bounded) and
// returns its exit code.
func (d *daemon) runToExit() int {
	d.t.Helper()
	d.spawn()
	select {
	case <-d.proc.Exited():
	case <-time.After(30 * time.Second):
		d.kill()
		d.t.Fatalf("the daemon did not exit by itself; its log:\n%s", d.tail(40))
	}
	return d.proc.Cmd.ProcessState.ExitCode()
}

// spawn starts the process with its output appended to the log.
func (d *daemon) spawn() {
	d.t.Helper()
	require.False(d.t, d.running(), "the daemon runs already")
	out, err := os.OpenFile(d.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	require.NoError(d.t, err)
	defer out.Close()
	d.runs++
	fmt.Fprintf(out, "=== run %d at %s\n", d.runs, time.Now().Format(time.RFC3339Nano))
	p, err := tandemproc.Start(tandemproc.Options{Bin: tandemBin, Config: d.config, Args: d.args, Env: d.env, Out: out})
	require.NoError(d.t, err)
	d.proc = p
}

func (d *daemon) running() bool { return d.proc != nil && d.proc.Running() }

// kill sends SIGKILL and waits for the process to end.
func (d *daemon) kill() {
	d.t.Helper()
	require.NoError(d.t, d.proc.Kill())
}

// stop sends SIGTERM and waits (bounded) for a clean exit.
func (d *daemon) stop() {
	d.t.Helper()
	err := d.proc.Stop(time.Minute)
	require.NoError(d.t, err, "exit status %s; log:\n%s", d.proc.Cmd.ProcessState, d.tail(40))
}

func (d *daemon) url(path string) string { return "http://" + d.cfg.Listen + path }

// get fetches an API path and returns the body (any status), with the read
// token when the configuration names one; header holds name, value pairs
// ("Authorization", "" sends none).
func (d *daemon) get(path string, header ...string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodGet, d.url(path), nil)
	if err != nil {
		return 0, nil, err
	}
	if name := d.cfg.API.ReadTokenEnv; name != "" {
		req.Header.Set("Authorization", "Bearer "+os.Getenv(name))
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// post sends an empty POST to an API path; header holds name, value pairs.
func (d *daemon) post(path string, header ...string) (int, []byte, error) {
	return d.postBody(path, "", header...)
}

// postBody sends a POST with a body.
func (d *daemon) postBody(path, body string, header ...string) (int, []byte, error) {
	req, err := http.NewRequest(http.MethodPost, d.url(path), strings.NewReader(body))
	if err != nil {
		return 0, nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

// status returns a service's status from the API.
func (d *daemon) status(name string) (reconcile.Status, error) {
	code, body, err := d.get("/api/v1/services/" + name)
	if err != nil {
		return reconcile.Status{}, err
	}
	if code != http.StatusOK {
		return reconcile.Status{}, fmt.Errorf("GET status of %s: %d %s", name, code, body)
	}
	var st reconcile.Status
	return st, json.Unmarshal(body, &st)
}

// services returns the services list of the API.
func (d *daemon) services() server.ServiceList {
	d.t.Helper()
	code, body, err := d.get("/api/v1/services")
	require.NoError(d.t, err)
	require.Equal(d.t, http.StatusOK, code, "%s", body)
	var l server.ServiceList
	require.NoError(d.t, json.Unmarshal(body, &l))
	require.NotNil(d.t, l.Source, "the services list shows the source")
	return l
}

// events returns the events the API serves.
func (d *daemon) events() ([]reconcile.Event, error) {
	code, body, err := d.get("/api/v1/events?limit=100000")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, fmt.Errorf("GET events: %d %s", code, body)
	}
	var l server.EventList
	return l.Events, json.Unmarshal(body, &l)
}

// journal reads the daemon's journal of a service from its state
// directory, as the daemon would after a restart.
func (d *daemon) journal(service string) (reconcile.State, error) {
	store, err := reconcile.NewFileStore(filepath.Join(d.cfg.StateDir, "journal"))
	if err != nil {
		return reconcile.State{}, err
	}
	return store.Load(context.Background(), service)
}

// eventsFile reads the events log file of the state directory.
func (d *daemon) eventsFile() []reconcile.Event {
	d.t.Helper()
	data, err := os.ReadFile(filepath.Join(d.cfg.StateDir, "events.jsonl"))
	require.NoError(d.t, err)
	var out []reconcile.Event
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var e reconcile.Event
		if json.Unmarshal([]byte(line), &e) == nil {
			out = append(out, e)
		}
	}
	return out
}

// keepLog copies the daemon's log and state directory out of the test's
// temporary directory, for the post-mortem of a failed test.
func (d *daemon) keepLog() {
	dst, err := os.MkdirTemp("", "tandem-reliability-"+strings.ReplaceAll(d.t.Name(), "/", "-")+"-")
	if err != nil {
		return
	}
	_ = exec.Command("cp", "-r", d.logPath, d.cfg.StateDir, dst).Run()
	d.t.Logf("the daemon's log and state directory are kept in %s", dst)
}

// tail returns the last n lines of the daemon's log.
func (d *daemon) tail(n int) string {
	data, err := os.ReadFile(d.logPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(data), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// waitStatus polls the API (bounded by ctx) until cond holds for the
// service's status, and returns it.
func (d *daemon) waitStatus(ctx context.Context, service string, what string, cond func(reconcile.Status) bool) reconcile.Status {
	d.t.Helper()
	var st reconcile.Status
	var lastErr error
	err := poll(ctx, 20*time.Millisecond, func() bool {
		st, lastErr = d.status(service)
		return lastErr == nil && cond(st)
	})
	require.NoError(d.t, err, "waiting for %s: %s (last status: %s %+v, error %v); daemon log:\n%s",
		service, what, st.Summary, st.Conditions, lastErr, d.tail(30))
	return st
}

// poll checks cond every interval until it holds or ctx ends.
func poll(ctx context.Context, interval time.Duration, cond func() bool) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if cond() {
			return nil
		}
		select {
		case <-ctx.Done():
			return errors.New("condition not met in time")
		case <-t.C:
		}
	}
}
