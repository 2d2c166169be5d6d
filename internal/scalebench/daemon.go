package scalebench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tandemhq/tandem/internal/tandemproc"
)

// daemonProc is `tandem run` running as a child process, so that its
// memory is its own.
type daemonProc struct {
	*tandemproc.Proc
	base string // http://host:port of its API
	hc   *http.Client
	log  *os.File
}

// startDaemon runs `bin run --config config --log-format json` with the
// emulators' AccessKey in its environment, its log in logPath, and waits
// (bounded by ctx) until its API listens: the address the daemon writes
// in stateDir.
func startDaemon(ctx context.Context, bin, config, stateDir, logPath string) (*daemonProc, error) {
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	p, err := tandemproc.Start(tandemproc.Options{Bin: bin, Config: config, StateDir: stateDir, Out: logFile,
		Env: []string{alibabaKeyIDEnv + "=" + alibabaKeyID, alibabaKeySecretEnv + "=" + alibabaKeySecret}})
	if err != nil {
		logFile.Close()
		return nil, err
	}
	d := &daemonProc{Proc: p, hc: &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 16}}, log: logFile}
	addr, err := p.Addr(ctx)
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%w; see %s", err, logPath), d.stop())
	}
	d.base = "http://" + addr
	return d, nil
}

// stop asks the daemon to stop (SIGTERM) and waits; after 30 s it kills it.
func (d *daemonProc) stop() error {
	defer d.log.Close()
	return d.Stop(30 * time.Second)
}

// memory reads the daemon's resident set size and its peak (kB) from
// /proc/PID/status.
func (d *daemonProc) memory() (rss, hwm int, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", d.Cmd.Process.Pid))
	if err != nil {
		return 0, 0, fmt.Errorf("reading the daemon's memory: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		name, val, _ := strings.Cut(sc.Text(), ":")
		kb, convErr := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(val), " kB"))
		switch {
		case name == "VmRSS" && convErr == nil:
			rss = kb
		case name == "VmHWM" && convErr == nil:
			hwm = kb
		}
	}
	if rss == 0 || hwm == 0 {
		return 0, 0, fmt.Errorf("no VmRSS/VmHWM in /proc/%d/status", d.Cmd.Process.Pid)
	}
	return rss, hwm, nil
}

// cpu reads the CPU time the daemon has used (user and system) from
// /proc/PID/stat, in clock ticks of 10 ms (USER_HZ is 100 on Linux).
func (d *daemonProc) cpu() (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", d.Cmd.Process.Pid))
	if err != nil {
		return 0, fmt.Errorf("reading the daemon's CPU time: %w", err)
	}
	// The command name (field 2) may hold spaces; the fields after it are
	// numbers. utime and stime are fields 14 and 15.
	_, rest, _ := bytes.Cut(b, []byte(") "))
	f := strings.Fields(string(rest))
	if len(f) < 13 {
		return 0, fmt.Errorf("reading the daemon's CPU time: short /proc/%d/stat", d.Cmd.Process.Pid)
	}
	user, err1 := strconv.Atoi(f[11])
	sys, err2 := strconv.Atoi(f[12])
	if err := errors.Join(err1, err2); err != nil {
		return 0, fmt.Errorf("reading the daemon's CPU time: %w", err)
	}
	return time.Duration(user+sys) * 10 * time.Millisecond, nil
}

// status is the part of the API's Status the benchmark reads.
type status struct {
	Service    string    `json:"service"`
	InSync     bool      `json:"inSync"`
	Summary    string    `json:"summary"`
	Message    string    `json:"message"`
	LastPass   time.Time `json:"lastPass"`
	Conditions []struct {
		Type   string `json:"type"`
		Status bool   `json:"status"`
	} `json:"conditions"`
}

func (s status) ready() bool {
	for _, c := range s.Conditions {
		if c.Type == "Ready" {
			return c.Status
		}
	}
	return false
}

// services reads GET /api/v1/services.
func (d *daemonProc) services(ctx context.Context) ([]status, error) {
	var list struct{ Services []status }
	if err := d.get(ctx, "/api/v1/services", func(r io.Reader) error { return json.NewDecoder(r).Decode(&list) }); err != nil {
		return nil, err
	}
	return list.Services, nil
}

// waitReady polls the service list until every one of want services is
// Ready with a pass at or after since; it fails when ctx ends or the
// daemon exits, naming a service that is not ready.
func (d *daemonProc) waitReady(ctx context.Context, want int, since time.Time, every time.Duration) error {
	t := time.NewTicker(every)
	defer t.Stop()
	last := "no status yet"
	for {
		list, err := d.services(ctx)
		if err == nil {
			n := 0
			for _, s := range list {
				if s.ready() && !s.LastPass.Before(since) {
					n++
				} else {
					last = fmt.Sprintf("%s: %s %s", s.Service, s.Summary, s.Message)
				}
			}
			if n == want {
				return nil
			}
			last = fmt.Sprintf("%d of %d ready; e.g. %s", n, want, last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %d services to be ready (%s): %w", want, last, ctx.Err())
		case <-d.Exited():
			return fmt.Errorf("the daemon exited (%v) while %s", d.Err(), last)
		case <-t.C:
		}
	}
}

// passCounter reads the daemon's count and summed duration of passes from
// its metrics (tandem_reconcile_duration_seconds).
func (d *daemonProc) passCounter(ctx context.Context) (count int, sum time.Duration, err error) {
	err = d.get(ctx, "/metrics", func(r io.Reader) error {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			name, val, ok := strings.Cut(sc.Text(), " ")
			if !ok {
				continue
			}
			switch name {
			case "tandem_reconcile_duration_seconds_count":
				count, _ = strconv.Atoi(val)
			case "tandem_reconcile_duration_seconds_sum":
				f, _ := strconv.ParseFloat(val, 64)
				sum = time.Duration(f * float64(time.Second))
			}
		}
		return sc.Err()
	})
	return count, sum, err
}

// readCost GETs path n times and returns the size of the answer and the
// daemon's CPU time per request.
func (d *daemonProc) readCost(ctx context.Context, path string, n int) (Read, error) {
	before, err := d.cpu()
	if err != nil {
		return Read{}, err
	}
	var size int64
	for range n {
		err := d.get(ctx, path, func(r io.Reader) (err error) {
			size, err = io.Copy(io.Discard, r)
			return err
		})
		if err != nil {
			return Read{}, err
		}
	}
	after, err := d.cpu()
	if err != nil {
		return Read{}, err
	}
	return Read{Path: path, Bytes: size, CPU: (after - before) / time.Duration(n)}, nil
}

// waitQuiet polls the daemon's pass count until it has not changed for
// quiet: the passes that follow the first ones (a look once more after
// adopting the live state, the Nacos subscriptions' first pushes) are
// over.
func (d *daemonProc) waitQuiet(ctx context.Context, quiet time.Duration) error {
	tick := time.NewTicker(quiet / 4)
	defer tick.Stop()
	last, since := -1, time.Now()
	for {
		n, _, err := d.passCounter(ctx)
		if err != nil {
			return err
		}
		if n != last {
			last, since = n, time.Now()
		} else if time.Since(since) >= quiet {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for the daemon's passes to stop: %w", ctx.Err())
		case <-d.Exited():
			return fmt.Errorf("the daemon exited: %v", d.Err())
		case <-tick.C:
		}
	}
}

// sync asks for a pass of every service (POST .../sync), from a few
// clients at once.
func (d *daemonProc) sync(ctx context.Context, names []string) error {
	return parallel(names, 8, func(name string) error { return d.post(ctx, "/api/v1/services/"+name+"/sync") })
}

func (d *daemonProc) get(ctx context.Context, path string, read func(io.Reader) error) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.base+path, nil)
	if err != nil {
		return err
	}
	res, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", path, res.Status)
	}
	return read(res.Body)
}

func (d *daemonProc) post(ctx context.Context, path string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+path, nil)
	if err != nil {
		return err
	}
	res, err := d.hc.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", path, err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	if res.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST %s: %s", path, res.Status)
	}
	return nil
}
