// Package haproxytest starts a real HAProxy (the Debian 2.6 package that
// scripts/install-haproxy.sh installs) for a test: its own configuration and
// admin sockets in t.TempDir(), frontends on free 127.0.0.1 ports, stopped in
// t.Cleanup. When haproxy is missing the test is skipped, unless
// TANDEM_REQUIRE_HAPROXY=1 (make test sets it), which makes it fail.
// Launch does the same for programs that are not tests (internal/stage).
package haproxytest

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"text/template"
	"time"
)

// Server is one server line of a backend.
type Server struct {
	Name string
	Addr string // host:port
	// Weight is the initial weight, 0..256; 0 gives the server no
	// load-balanced traffic until the runtime API raises it.
	Weight int
}

// Backend is one backend with its servers; each gets its own frontend.
type Backend struct {
	Name    string
	Servers []Server
	Balance string // default roundrobin (static algorithms only accept weights 0 and 100%)
	Check   string // path of the servers' health check; default /healthz
	// Routes send requests that enter through this backend's frontend to
	// other backends of the Config by a header (a preview route).
	Routes []Route
}

// Route sends the requests whose header Header has the value Value to
// backend Backend instead of the frontend's default backend:
// `use_backend Backend if { req.hdr(Header) -m str Value }`
// (https://docs.haproxy.org/2.6/configuration.html#4.2-use_backend,
// https://docs.haproxy.org/2.6/configuration.html#7.3.6-req.hdr).
type Route struct {
	Header, Value, Backend string
}

// Config is what the test passes to Start.
type Config struct {
	Backends []Backend
	// CheckInterval is the health-check interval of every server (default
	// 100ms). Checks are `option httpchk GET /healthz` (Backend.Check), fall 2, rise 1.
	CheckInterval time.Duration
}

// HAProxy is a running instance.
type HAProxy struct {
	// Socket is the admin-level runtime API unix socket.
	Socket string
	// TCPSocket is the same API on a 127.0.0.1 TCP port (host:port).
	TCPSocket string
	frontends map[string]string
	cmd       *exec.Cmd
	done      chan struct{}
	logPath   string
}

// Frontend returns host:port of the frontend that routes to backend.
func (h *HAProxy) Frontend(backend string) string { return h.frontends[backend] }

// URL returns http://host:port of the frontend that routes to backend.
func (h *HAProxy) URL(backend string) string { return "http://" + h.frontends[backend] }

// Binary returns the haproxy executable, or "" when it is not installed.
func Binary() string {
	if _, err := os.Stat("/usr/sbin/haproxy"); err == nil {
		return "/usr/sbin/haproxy"
	}
	if p, err := exec.LookPath("haproxy"); err == nil {
		return p
	}
	return ""
}

// RequireEnv is the environment variable that turns "not installed" from a
// skip into a failure (make test sets it).
const RequireEnv = "TANDEM_REQUIRE_HAPROXY"

// SkipUnlessInstalled skips t when haproxy is not installed, or fails it
// when RequireEnv=1.
func SkipUnlessInstalled(t testing.TB) {
	t.Helper()
	if Binary() != "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatal("haproxy is not installed and " + RequireEnv + "=1: run scripts/install-haproxy.sh")
	}
	t.Skip("haproxy is not installed (scripts/install-haproxy.sh installs it)")
}

// Start writes the configuration, starts haproxy in the foreground
// (`haproxy -W -db -f cfg`), waits until its runtime API answers and
// registers its stop with t.Cleanup.
func Start(t testing.TB, cfg Config) *HAProxy {
	t.Helper()
	SkipUnlessInstalled(t)
	h, err := Launch(t.TempDir(), cfg)
	if err != nil {
		t.Fatalf("starting haproxy: %v", err)
	}
	t.Cleanup(h.Stop)
	return h
}

// ErrNotInstalled is returned by Launch when there is no haproxy binary.
var ErrNotInstalled = errors.New("haproxy is not installed (scripts/install-haproxy.sh installs it)")

// Launch is Start for programs that are not tests: it keeps its files in
// dir (which must exist) and the caller stops it with Stop.
func Launch(dir string, cfg Config) (*HAProxy, error) {
	bin := Binary()
	if bin == "" {
		return nil, ErrNotInstalled
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = 100 * time.Millisecond
	}
	// Free ports are picked before haproxy binds them; another process may
	// take one in between, so a start that fails is retried with new ports.
	var lastErr error
	for range 3 {
		h, err := start(bin, dir, cfg)
		if err == nil {
			return h, nil
		}
		lastErr = err
	}
	return nil, lastErr
}

func start(bin, dir string, cfg Config) (*HAProxy, error) {
	ports, err := freePorts(len(cfg.Backends) + 1)
	if err != nil {
		return nil, err
	}
	h := &HAProxy{
		Socket:    filepath.Join(dir, "admin.sock"),
		TCPSocket: ports[0],
		frontends: map[string]string{},
		done:      make(chan struct{}),
		logPath:   filepath.Join(dir, "haproxy.log"),
	}
	for i, b := range cfg.Backends {
		h.frontends[b.Name] = ports[i+1]
	}
	var conf bytes.Buffer
	if err := configTemplate.Execute(&conf, map[string]any{"H": h, "C": cfg, "F": h.frontends}); err != nil {
		return nil, fmt.Errorf("rendering haproxy.cfg: %w", err)
	}
	confPath := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(confPath, conf.Bytes(), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(h.logPath)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	_ = os.Remove(h.Socket)
	h.cmd = exec.Command(bin, "-W", "-db", "-f", confPath)
	h.cmd.Stdout, h.cmd.Stderr = logf, logf
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		return nil, fmt.Errorf("running %s: %w", bin, err)
	}
	go func() {
		_ = h.cmd.Wait()
		close(h.done)
	}()
	// Bounded poll until the runtime API answers (or haproxy exits).
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case <-h.done:
			return nil, fmt.Errorf("haproxy exited during start-up: %s", h.logTail())
		default:
		}
		if answers(h.Socket) {
			return h, nil
		}
		if time.Now().After(deadline) {
			h.Stop()
			return nil, fmt.Errorf("haproxy runtime API %s did not answer within 10s: %s", h.Socket, h.logTail())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop terminates haproxy (SIGTERM: hard stop) and waits for it; after 5s
// the whole process group is killed.
func (h *HAProxy) Stop() {
	pgid := h.cmd.Process.Pid
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-h.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
		<-h.done
	}
}

func (h *HAProxy) logTail() string {
	b, _ := os.ReadFile(h.logPath)
	if len(b) > 2000 {
		b = b[len(b)-2000:]
	}
	return strings.TrimSpace(string(b))
}

// answers reports whether the runtime API replies to "show info".
func answers(socket string) bool {
	c, err := net.DialTimeout("unix", socket, time.Second)
	if err != nil {
		return false
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("show info\n")); err != nil {
		return false
	}
	var buf bytes.Buffer
	_, err = buf.ReadFrom(c)
	return err == nil && bytes.Contains(buf.Bytes(), []byte("Name: HAProxy"))
}

func freePorts(n int) ([]string, error) {
	var lns []net.Listener
	defer func() {
		for _, ln := range lns {
			ln.Close()
		}
	}()
	var addrs []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, fmt.Errorf("finding a free port: %w", err)
		}
		lns = append(lns, ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return addrs, nil
}

var configTemplate = template.Must(template.New("haproxy.cfg").Funcs(template.FuncMap{
	"ms": func(d time.Duration) int64 { return d.Milliseconds() },
	"balance": func(b Backend) string {
		if b.Balance == "" {
			return "roundrobin"
		}
		return b.Balance
	},
}).Parse(`# written by internal/haproxytest
global
	stats socket {{.H.Socket}} level admin
	stats socket ipv4@{{.H.TCPSocket}} level admin
	stats timeout 10s

defaults
	mode http
	timeout connect 2s
	timeout client 30s
	timeout server 30s
	timeout http-keep-alive 30s
	# WebSockets are tunnels: without this the client/server timeouts apply.
	timeout tunnel 1h
	timeout client-fin 5s
	option redispatch
	retries 2
	option httpchk GET /healthz
	default-server check inter {{ms .C.CheckInterval}} fall 2 rise 1
{{range .C.Backends}}
frontend fe_{{.Name}}
	bind {{index $.F .Name}}
{{- range .Routes}}
	use_backend {{.Backend}} if { req.hdr({{.Header}}) -m str {{.Value}} }
{{- end}}
	default_backend {{.Name}}

backend {{.Name}}
	balance {{balance .}}
{{- with .Check}}
	option httpchk GET {{.}}
{{- end}}
{{- range .Servers}}
	server {{.Name}} {{.Addr}} weight {{.Weight}}
{{- end}}
{{end}}`))
