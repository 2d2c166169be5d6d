package reliability_test

import (
	"context"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/cgi"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// gitServer serves the stage's repository over smart HTTP with git
// http-backend (net/http/cgi). It can be stopped and started again on the
// same address, and can cut its fetch answers short.
type gitServer struct {
	*testkit.Server
	user, password string // basic auth required when set
	backend        *cgi.Handler

	mu        sync.Mutex
	cut       bool // answer fetches with half a pack, then drop the connection
	truncated int  // fetch answers cut short
}

// serveRepo serves repoDir as http://addr/<its name>, behind basic auth
// when user is set.
func serveRepo(t testing.TB, repoDir, user, password string) *gitServer {
	out, err := exec.Command("git", "--exec-path").Output()
	require.NoError(t, err)
	g := &gitServer{user: user, password: password, backend: &cgi.Handler{
		Path: filepath.Join(strings.TrimSpace(string(out)), "git-http-backend"),
		Root: "/",
		Env:  []string{"GIT_PROJECT_ROOT=" + filepath.Dir(repoDir), "GIT_HTTP_EXPORT_ALL=1"},
		// A fetch cut short is the point: no "copy error" lines.
		Logger: log.New(io.Discard, "", 0),
	}}
	g.Server = testkit.StartServer(t, g)
	return g
}

func (g *gitServer) url(repoDir string) string {
	return "http://" + g.Addr() + "/" + filepath.Base(repoDir)
}

func (g *gitServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if g.user != "" {
		if u, p, ok := r.BasicAuth(); !ok || u != g.user || p != g.password {
			w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	g.mu.Lock()
	cut := g.cut && strings.HasSuffix(r.URL.Path, "/git-upload-pack")
	g.mu.Unlock()
	if !cut {
		g.backend.ServeHTTP(w, r)
		return
	}
	// Half a fetch: the answer stops after its first bytes (inside the
	// pack) and the connection drops.
	g.backend.ServeHTTP(&cutWriter{ResponseWriter: w, left: 256}, r)
	g.mu.Lock()
	g.truncated++
	g.mu.Unlock()
	panic(http.ErrAbortHandler)
}

// cutWriter passes on the first left bytes of a body, then fails.
type cutWriter struct {
	http.ResponseWriter
	left int
}

func (c *cutWriter) Write(p []byte) (int, error) {
	if c.left <= 0 {
		return 0, errors.New("cut short")
	}
	n := min(len(p), c.left)
	n, err := c.ResponseWriter.Write(p[:n])
	c.left -= n
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
	return n, err
}

func (g *gitServer) setCut(cut bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.cut = cut
}

func (g *gitServer) truncatedFetches() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.truncated
}

// TestGitRemoteUnreachableOrCutShortKeepsTheLastGoodRevision follows the
// desired state over HTTP. While the remote is down, and then while it
// answers fetches with half a pack, a release committed meanwhile is not
// acted on: the last good revision stays in force, the outage is reported
// once, and nothing is deployed. Once the remote is back the release goes
// through. Users notice nothing throughout.
func TestGitRemoteUnreachableOrCutShortKeepsTheLastGoodRevision(t *testing.T) {
	var remote *gitServer
	e := newEnv(t, envOptions{services: []stage.Service{{Name: "web", LB: spec.KindALB, Nacos: true}}, timing: faultTiming,
		warmUp: 200 * time.Millisecond,
		config: func(s *stage.Stage, cfg *spec.Config) {
			remote = serveRepo(t, s.RepoDir(), "", "")
			cfg.Git.URL = remote.url(s.RepoDir())
			cfg.Git.Interval = spec.Duration(time.Second)
		}})
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	head, err := e.stage.Head()
	require.NoError(t, err)
	viaLB := e.startTraffic(e.stage.URL("web"), 100, 10)
	viaNacos := e.startTraffic(e.stage.ConsumerURL("web"), 30, 3)

	// The remote goes away; a release is committed there meanwhile.
	remote.Stop()
	rev, err := e.commit(ctx, "web", "1.1.0")
	require.NoError(t, err)
	var outage reconcile.Event
	require.NoError(t, poll(ctx, 20*time.Millisecond, func() bool {
		evs, err := e.daemon.events()
		if err == nil {
			if found := find(evs, reconcile.ReasonGitFetchFailed, ""); len(found) > 0 {
				outage = found[0]
				return true
			}
		}
		return false
	}), "the outage is reported")
	require.Contains(t, outage.Message, "stays in force")
	require.Contains(t, outage.Message, "connection refused")
	requireUntouched := func(what string) {
		t.Helper()
		list := e.daemon.services()
		require.Equal(t, head, list.Source.Revision, "%s: the status shows the revision in force", what)
		require.NotEmpty(t, list.Source.FetchError, "%s: the status shows the fetch error", what)
		st, err := e.daemon.status("web")
		require.NoError(t, err)
		require.Equal(t, head, st.Revision.Hash, "%s: the last good revision stays in force", what)
		require.True(t, st.InSync, "%s: %s", what, st.Summary)
		j, err := e.daemon.journal("web")
		require.NoError(t, err)
		require.Nil(t, j.Transition, "%s: no transition", what)
		require.Empty(t, e.deploy.requests(), "%s: nothing deployed", what)
		e.requireLiveIs("web", spec.GroupA, "1.0.0")
	}
	requireUntouched("remote down")

	// The remote comes back but cuts every fetch short: half a pack.
	remote.setCut(true)
	remote.Start()
	for n := 1; n <= 2; n++ {
		code, body, err := e.daemon.post("/api/v1/services/web/sync")
		require.NoError(t, err)
		require.Equal(t, http.StatusAccepted, code, "%s", body)
		require.NoError(t, poll(ctx, 20*time.Millisecond, func() bool { return remote.truncatedFetches() >= n }))
	}
	requireUntouched("fetches cut short")
	require.Len(t, find(mustEvents(t, e), reconcile.ReasonGitFetchFailed, ""), 1, "one outage, one report")

	// The remote is whole again: the release goes through.
	remote.setCut(false)
	code, body, err := e.daemon.post("/api/v1/services/web/sync")
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	e.requireOutcome(ctx, "web", rev, succeeded)
	require.NotEmpty(t, find(mustEvents(t, e), reconcile.ReasonGitFetchRecovered, ""))
	require.Empty(t, e.daemon.services().Source.FetchError)
	e.requireLiveIs("web", spec.GroupB, "1.1.0")
	rev, err = e.commit(ctx, "web", "")
	require.NoError(t, err)
	e.requireOutcome(ctx, "web", rev, succeeded)

	e.mon.requireNoViolation()
	requireUnnoticed(t, "load balancer", viaLB.Stop())
	requireUnnoticed(t, "nacos consumer", viaNacos.Stop())
	require.Len(t, e.deploy.requests(), 1)
	e.daemon.stop()
}

func mustEvents(t *testing.T, e *env) []reconcile.Event {
	t.Helper()
	evs, err := e.daemon.events()
	require.NoError(t, err)
	return evs
}
