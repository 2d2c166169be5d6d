// Package promtest starts a real Prometheus server (the Debian 2.42 package
// that scripts/install-prometheus.sh installs) for a test: a generated
// configuration scraping the given targets at a short interval, its storage
// in t.TempDir(), the web API on a free 127.0.0.1 port, stopped in
// t.Cleanup. When prometheus is missing the test is skipped, unless
// TANDEM_REQUIRE_PROMETHEUS=1 (make test sets it), which makes it fail.
package promtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	pmodel "github.com/prometheus/common/model"
)

// RequireEnv turns "not installed" from a skip into a failure.
const RequireEnv = "TANDEM_REQUIRE_PROMETHEUS"

// Binary returns the prometheus executable, or "" when it is not installed.
func Binary() string {
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	return ""
}

// SkipUnlessInstalled skips t when prometheus is not installed, or fails it
// when RequireEnv=1.
func SkipUnlessInstalled(t testing.TB) {
	t.Helper()
	if Binary() != "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal("prometheus is not installed and " + RequireEnv + "=1: run scripts/install-prometheus.sh")
	}
	t.Skip("prometheus is not installed (scripts/install-prometheus.sh installs it)")
}

// Options configure a server.
type Options struct {
	// Targets are host:port of the apps to scrape (GET /metrics), in one
	// job named "apps"; SetTargets changes them.
	Targets []string
	// ScrapeInterval is also the scrape timeout and the rule evaluation
	// interval (default 500ms).
	ScrapeInterval time.Duration
}

// Server is a running Prometheus.
type Server struct {
	addr      string
	cmd       *exec.Cmd
	done      chan struct{}
	logPath   string
	transport *http.Transport // of the test's own requests
	// targetsFile lists the targets (file_sd_configs).
	targetsFile string
	api         v1.API
}

// URL is the server's base URL (http://127.0.0.1:PORT).
func (s *Server) URL() string { return "http://" + s.addr }

// API is a client of the server's HTTP API.
func (s *Server) API() v1.API { return s.api }

// Start writes the configuration, starts prometheus, waits until /-/ready
// answers 200 (at most 60s) and registers its stop with t.Cleanup.
func Start(t testing.TB, o Options) *Server {
	t.Helper()
	SkipUnlessInstalled(t)
	if o.ScrapeInterval <= 0 {
		o.ScrapeInterval = 500 * time.Millisecond
	}
	dir := t.TempDir()
	var lastErr error
	for range 3 { // the free port may be taken between choosing and binding
		s, err := launch(dir, o)
		if err == nil {
			t.Cleanup(s.stop)
			return s
		}
		lastErr = err
	}
	t.Fatalf("starting prometheus: %v", lastErr)
	return nil
}

func config(o Options, targetsFile string) string {
	iv := model(o.ScrapeInterval)
	return fmt.Sprintf(`global:
  scrape_interval: %s
  scrape_timeout: %s
  evaluation_interval: %s
scrape_configs:
  - job_name: apps
    file_sd_configs:
      - files: [%q]
        refresh_interval: 1s
`, iv, iv, iv, targetsFile)
}

// SetTargets replaces the scraped targets (host:port); Prometheus picks the
// file up on change (file_sd_configs).
func (s *Server) SetTargets(targets []string) error { return writeTargets(s.targetsFile, targets) }

func writeTargets(path string, targets []string) error {
	data, err := json.Marshal([]map[string][]string{{"targets": append([]string{}, targets...)}})
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path) // whole, never half-written
}

// model writes d as a Prometheus duration (whole milliseconds).
func model(d time.Duration) string { return strconv.FormatInt(d.Milliseconds(), 10) + "ms" }

func launch(dir string, o Options) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	cfgPath := filepath.Join(dir, "prometheus.yml")
	targetsFile := filepath.Join(dir, "targets.json")
	if err := writeTargets(targetsFile, o.Targets); err != nil {
		return nil, err
	}
	if err := os.WriteFile(cfgPath, []byte(config(o, targetsFile)), 0o600); err != nil {
		return nil, err
	}
	data := filepath.Join(dir, "data-"+strconv.Itoa(os.Getpid())+"-"+strings.ReplaceAll(addr, ":", "-"))
	cmd := exec.Command(Binary(),
		"--config.file="+cfgPath,
		"--storage.tsdb.path="+data,
		"--web.listen-address="+addr,
		"--storage.tsdb.retention.time=1h",
		"--log.level=warn",
	)
	logPath := filepath.Join(dir, "prometheus-"+strings.ReplaceAll(addr, ":", "-")+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	defer logFile.Close() // the child has its own descriptor
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &Server{addr: addr, cmd: cmd, done: make(chan struct{}), logPath: logPath, targetsFile: targetsFile}
	go func() { _ = cmd.Wait(); close(s.done) }()
	s.transport = &http.Transport{}
	client, err := api.NewClient(api.Config{Address: s.URL(), RoundTripper: s.transport})
	if err != nil {
		s.stop()
		return nil, err
	}
	s.api = v1.NewAPI(client)
	if err := s.waitReady(60 * time.Second); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w\n%s", err, s.logTail())
	}
	return s, nil
}

func (s *Server) waitReady(bound time.Duration) error {
	deadline := time.Now().Add(bound)
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := (&http.Client{Transport: s.transport}).Get(s.URL() + "/-/ready")
		if err == nil {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-s.done:
			return errors.New("prometheus exited before it was ready")
		case <-tick.C:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("prometheus at %s not ready after %s", s.addr, bound)
		}
	}
}

// Version is the server's version (GET /api/v1/status/buildinfo).
func (s *Server) Version(ctx context.Context) (string, error) {
	b, err := s.api.Buildinfo(ctx)
	if err != nil {
		return "", err
	}
	return b.Version, nil
}

// WaitScraped waits until Prometheus scrapes n targets and every one was
// scraped up (at most bound), so that a test's queries find series. A
// target's health turns good before its scrape is committed to the TSDB
// (scrapeLoop.report runs before the appender's Commit), so it waits until
// the up series of the n targets can be queried: they are committed with
// the samples of the same scrape.
func (s *Server) WaitScraped(ctx context.Context, n int, bound time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, bound)
	defer cancel()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		res, err := s.api.Targets(ctx)
		if err == nil && len(res.Active) == n {
			var v pmodel.Value
			v, _, _, err = s.api.Query(ctx, "count(up == 1)", time.Now())
			if vec, ok := v.(pmodel.Vector); err == nil && ok && len(vec) == 1 && int(vec[0].Value) == n {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("prometheus targets not all up: %w (last error: %v)", ctx.Err(), err)
		case <-tick.C:
		}
	}
}

func (s *Server) logTail() string {
	b, _ := os.ReadFile(s.logPath)
	out := string(b)
	if len(out) > 2000 {
		out = out[len(out)-2000:]
	}
	return out
}

// stop terminates prometheus (SIGTERM) and waits; after 5s it is killed.
func (s *Server) stop() {
	if s.transport != nil {
		s.transport.CloseIdleConnections()
	}
	pgid := s.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-s.done
	}
}
