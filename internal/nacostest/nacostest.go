// Package nacostest starts real Nacos servers for tests: r-nacos (a
// Nacos-compatible server in Rust, v1 open API plus gRPC) and Nacos 3 (the
// official server code, v3 admin API plus gRPC). The project's own scripts
// install them into the cache (scripts/nacos/install-rnacos.sh and
// install-nacos3.sh, run by make test); this package only starts what is
// there. docs/nacos-servers.md lists what each server was found to do.
//
// Every server listens on 127.0.0.1 only, on free ports, with its own
// temporary data directory, and its output goes to a log file whose tail is
// printed when the test fails.
//
// A server that is not installed makes the test skip, with the command that
// installs it, unless TANDEM_REQUIRE_REAL_NACOS=1 (set by make test), when
// the test fails instead.
package nacostest

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
)

// The kinds of real server this package can start.
const (
	KindRNacos = "rnacos" // r-nacos 0.8.5: v1 open API, gRPC, no v2/v3 naming API
	KindNacos3 = "nacos3" // Nacos 3.1.0 (io.github.pig-mesh.nacos re-publish): v3 admin API, gRPC
)

// RequireEnv is the environment variable that turns "not installed" from a
// skip into a failure.
const RequireEnv = "TANDEM_REQUIRE_REAL_NACOS"

// Server is a running real Nacos server.
type Server struct {
	Kind        string // KindRNacos or KindNacos3
	HTTPAddr    string // 127.0.0.1:port of the HTTP API
	GRPCPort    int    // gRPC port the SDK must use (not always HTTP port + 1000)
	ContextPath string // "/nacos"
	API         string // operator API: "v1" (r-nacos) or "v3" (Nacos 3)
	// Username and Password of an administrator, set when started with
	// Options.Auth.
	Username, Password string

	proc  *process
	dir   string       // temporary directory of data and logs, removed by stop
	ready func() error // waits until proc serves, with the credentials working
}

// Options select how a server is started.
type Options struct {
	// Auth turns on authentication for the SDK and the open and admin APIs.
	// Without it no API asks for credentials (on Nacos 3 this also turns off
	// the admin-API login that a stock Nacos 3 keeps on; see
	// docs/nacos-servers.md).
	Auth bool
}

// Kinds returns the kinds of real server this package knows.
func Kinds() []string { return []string{KindRNacos, KindNacos3} }

// BaseURL returns the HTTP API's base URL, such as
// "http://127.0.0.1:8848/nacos".
func (s *Server) BaseURL() string { return "http://" + s.HTTPAddr + s.ContextPath }

// SDKServerConfig returns the nacos-sdk-go server entry for this server.
func (s *Server) SDKServerConfig() constant.ServerConfig {
	_, port, _ := net.SplitHostPort(s.HTTPAddr)
	p, _ := strconv.ParseUint(port, 10, 16)
	return constant.ServerConfig{
		IpAddr:      "127.0.0.1",
		Port:        p,
		GrpcPort:    uint64(s.GRPCPort),
		ContextPath: s.ContextPath,
	}
}

// LogPath returns the file that holds the server's output.
func (s *Server) LogPath() string { return s.proc.logPath }

// Start starts a fresh server of that kind on free loopback ports with its
// own temporary data directory and stops it in t.Cleanup. If the server is
// not installed it calls t.Skip with how to install it, unless
// TANDEM_REQUIRE_REAL_NACOS=1, in which case it fails the test.
//
// A Nacos 3 server takes seconds to start; packages with several tests may
// share one through Shared instead.
func Start(t testing.TB, kind string, opts Options) *Server {
	t.Helper()
	requireInstalled(t, kind)
	s, err := launch(kind, opts)
	if err != nil {
		t.Fatalf("starting %s: %v", kind, err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("%s server log %s, last lines:\n%s", kind, s.proc.logPath, s.proc.tail())
		}
		if err := s.stop(); err != nil {
			t.Errorf("stopping %s: %v", kind, err)
		}
	})
	return s
}

// requireInstalled skips or fails t when the kind cannot be started.
func requireInstalled(t testing.TB, kind string) {
	t.Helper()
	if _, ok := kinds[kind]; !ok {
		t.Fatalf("unknown Nacos server kind %q (known: %v)", kind, Kinds())
	}
	if err := Installed(kind); err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v (%s=1 makes this a failure)", err, RequireEnv)
		}
		t.Skip(err)
	}
}

// Installed returns nil when a server of that kind can be started, and
// otherwise why not and how to install it. Tests that can do without a real
// server use it to choose; Start and Shared skip or fail by themselves.
func Installed(kind string) error {
	k, ok := kinds[kind]
	if !ok {
		return fmt.Errorf("unknown Nacos server kind %q (known: %v)", kind, Kinds())
	}
	if err := k.installed(); err != nil {
		return fmt.Errorf("%s is not installed (%w); install it with scripts/nacos/%s", kind, err, k.script)
	}
	return nil
}

// cacheDir is where the install scripts put the servers.
func cacheDir() string {
	if d := os.Getenv("TANDEM_CACHE"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "tandem-cache")
	}
	return filepath.Join(home, ".cache", "tandem")
}
