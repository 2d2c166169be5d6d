package gitsource

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// git runs the git CLI in dir, isolated from the machine's configuration.
func runGit(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return runGitEnv(t, dir, nil, args...)
}

func runGitEnv(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0",
		"GIT_AUTHOR_NAME=Alice Example", "GIT_AUTHOR_EMAIL=alice@example.com",
		"GIT_COMMITTER_NAME=Alice Example", "GIT_COMMITTER_EMAIL=alice@example.com")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "git %s: %s", strings.Join(args, " "), out)
	return strings.TrimSpace(string(out))
}

// service renders a valid service file. Services with different n use
// different addresses, so several can live in one repository.
func service(name, active, version string, n int) string {
	return fmt.Sprintf(`# %[1]s: a test service
service: %[1]s
active: %[2]s
version: "%[3]s"   # bumped by releases
groups:
  A:
    instances:
      - {ip: 10.0.%[4]d.1, port: 8080, id: %[1]s-a1}
  B:
    instances:
      - {ip: 10.1.%[4]d.1, port: 8080, id: %[1]s-b1}
traffic:
  - {haproxy: edge, backend: %[1]s_be}
deploy:
  exec: ["./deploy.sh"]
health:
  http: {path: /healthz}
  version: {http: /version}
`, name, active, version, n)
}

// fixture is a bare "server" repository and a clone where commits are
// made and pushed with the git CLI.
type fixture struct {
	t    testing.TB
	root string // GIT_PROJECT_ROOT of the http server
	bare string
	work string
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{t: t, root: root, bare: filepath.Join(root, "desired.git"), work: filepath.Join(root, "work")}
	runGit(t, root, "init", "-q", "--bare", "-b", "main", f.bare)
	runGit(t, root, "clone", "-q", f.bare, f.work)
	runGit(t, f.work, "checkout", "-q", "-b", "main")
	f.commit("add user service", map[string]string{"services/user.yaml": service("user", "A", "1.0.0", 1)})
	return f
}

// commit writes files (an empty content deletes one), commits and pushes,
// returning the new head.
func (f *fixture) commit(msg string, files map[string]string) string {
	f.t.Helper()
	return f.commitWith(nil, nil, msg, files)
}

// commitWith is commit with extra environment and git options (signing).
func (f *fixture) commitWith(env, options []string, msg string, files map[string]string) string {
	f.t.Helper()
	for name, content := range files {
		p := filepath.Join(f.work, name)
		if content == "" {
			require.NoError(f.t, os.Remove(p))
			continue
		}
		require.NoError(f.t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(f.t, os.WriteFile(p, []byte(content), 0o644))
	}
	runGit(f.t, f.work, "add", "-A")
	runGitEnv(f.t, f.work, env, append(options, "commit", "-q", "-m", msg)...)
	f.push()
	return f.head()
}

func (f *fixture) push(args ...string) {
	f.t.Helper()
	runGit(f.t, f.work, append([]string{"push", "-q", "origin", "HEAD"}, args...)...)
}

func (f *fixture) head() string {
	f.t.Helper()
	return runGit(f.t, f.work, "rev-parse", "HEAD")
}

// httpRemote serves the fixture's repositories with git http-backend
// (net/http/cgi) on loopback, optionally behind basic auth. It can be
// stopped and started again on the same address.
type httpRemote struct{ *testkit.Server }

func serveHTTP(t testing.TB, root, user, password string) *httpRemote {
	t.Helper()
	backend := &cgi.Handler{
		Path: filepath.Join(runGit(t, root, "--exec-path"), "git-http-backend"),
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + root, "GIT_HTTP_EXPORT_ALL=1"},
	}
	return &httpRemote{testkit.StartServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if user != "" {
			u, p, ok := r.BasicAuth()
			if !ok || u != user || p != password {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "unauthorized", http.StatusUnauthorized)
				return
			}
		}
		backend.ServeHTTP(w, r)
	}))}
}

func (h *httpRemote) url() string { return "http://" + h.Addr() + "/desired.git" }

// serveLoopback accepts connections on 127.0.0.1 and hands each to handle
// in a goroutine of wg, where handle may start more. When the test ends it
// closes the listener and every connection, and waits for all of them.
func serveLoopback(t testing.TB, handle func(c net.Conn, wg *sync.WaitGroup)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() { handle(c, &wg) })
		}
	})
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// serveGitDaemon serves root over the git:// protocol on loopback: each
// connection is handed to the real `git daemon --inetd`.
func serveGitDaemon(t testing.TB, root string) string {
	t.Helper()
	addr := serveLoopback(t, func(c net.Conn, _ *sync.WaitGroup) {
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			return
		}
		defer f.Close()
		cmd := exec.Command("git", "daemon", "--inetd", "--export-all", "--base-path="+root, root)
		cmd.Stdin, cmd.Stdout = f, f
		_ = cmd.Run()
	})
	return "git://" + addr + "/desired.git"
}

func gitConfig(url string) spec.GitConfig {
	return spec.GitConfig{URL: url, Branch: "main", Path: "services", Interval: spec.Duration(time.Hour)}
}

// logBuffer collects a source's log lines, for checks that nothing secret
// is logged.
type logBuffer struct{ testkit.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run starts s.Run until the test ends.
func start(t testing.TB, s *Source) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// waitFor waits until the status satisfies cond, woken by Subscribe.
func waitFor(t testing.TB, s *Source, what string, cond func(Status) bool) Status {
	t.Helper()
	changed := s.Subscribe()
	deadline := time.NewTimer(30 * time.Second)
	defer deadline.Stop()
	for {
		st := s.Current()
		if cond(st) {
			return st
		}
		select {
		case <-changed:
		case <-deadline.C:
			t.Fatalf("timed out waiting for %s; status: good=%v head=%v rejected=%v fetchErr=%v failures=%d",
				what, hashOf(st.Good), hashOf(st.Head), st.Rejected, st.FetchErr, st.Failures)
		}
	}
}

// pollFor polls an observable condition that has no notification.
func pollFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func goodIs(hash string) func(Status) bool {
	return func(st Status) bool { return st.Good != nil && st.Good.Hash == hash }
}

func hashOf(r *Revision) string {
	if r == nil {
		return "<nil>"
	}
	return r.Hash
}

func versionOf(t testing.TB, r *Revision, name string) string {
	t.Helper()
	require.NotNil(t, r)
	require.NotNil(t, r.Set, "revision %s has no desired state", r.Hash)
	svc, ok := r.Set.Get(name)
	require.True(t, ok, "service %s at %s", name, r.Hash)
	return svc.Version + "/" + string(svc.Active)
}
