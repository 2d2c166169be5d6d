package gitsource

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

// BenchmarkCommitToGood measures commit-to-first-action latency: from the
// moment the branch ref changes (a push finished, or a local commit's ref
// update) until the source holds that commit as its good revision, which is
// when it notifies the reconcile loop. One op is one commit; besides ns/op
// it reports the median and the worst latency. The figures depend on the
// machine; nothing here asserts on time.
//
//	go test ./spec/gitsource -run '^$' -bench CommitToGood -benchtime 20x
func BenchmarkCommitToGood(b *testing.B) {
	b.Run("webhook", func(b *testing.B) {
		b.Setenv("T_HOOK_SECRET", hookSecret)
		f := newFixture(b)
		remote := serveHTTP(b, f.root, "", "")
		cfg := gitConfig(remote.url()) // polls hourly: only the webhook brings commits
		cfg.Webhook = &spec.GitWebhook{SecretEnv: "T_HOOK_SECRET"}
		s := benchSource(b, f, cfg)
		hooks := httptest.NewServer(s.WebhookHandler())
		b.Cleanup(hooks.Close)
		measure(b, s, func(i int) (string, func()) {
			hash := f.commit("bench", benchFile(i)) // the push has landed: the forge now sends the hook
			return hash, func() {
				body := `{"ref":"refs/heads/main","after":"` + hash + `"}`
				req, err := http.NewRequest(http.MethodPost, hooks.URL, strings.NewReader(body))
				require.NoError(b, err)
				req.Header.Set("X-Hub-Signature-256", "sha256="+sign(body))
				resp, err := hooks.Client().Do(req)
				require.NoError(b, err)
				_, _ = io.Copy(io.Discard, resp.Body)
				_ = resp.Body.Close()
				require.Equal(b, http.StatusAccepted, resp.StatusCode)
			}
		})
	})
	b.Run("fsnotify", func(b *testing.B) {
		f := newFixture(b)
		s := benchSource(b, f, gitConfig(f.work)) // a local repository, polled hourly
		measure(b, s, func(i int) (string, func()) {
			// Build the commit first; the ref update is the moment it lands.
			for name, content := range benchFile(i) {
				require.NoError(b, os.WriteFile(filepath.Join(f.work, name), []byte(content), 0o644))
			}
			runGit(b, f.work, "add", "-A")
			tree := runGit(b, f.work, "write-tree")
			hash := runGit(b, f.work, "commit-tree", tree, "-p", "HEAD", "-m", "bench")
			return hash, func() { runGit(b, f.work, "update-ref", "refs/heads/main", hash) }
		})
	})
	b.Run("poll-1s", func(b *testing.B) {
		f := newFixture(b)
		remote := serveHTTP(b, f.root, "", "")
		cfg := gitConfig(remote.url())
		cfg.Interval = spec.Duration(time.Second)
		s := benchSource(b, f, cfg)
		measure(b, s, func(i int) (string, func()) {
			// Commits arrive at any point of the poll cycle, not just after a poll.
			time.Sleep(rand.N(time.Second))
			return f.commit("bench", benchFile(i)), func() {}
		})
	})
}

func benchSource(b *testing.B, f *fixture, cfg spec.GitConfig) *Source {
	b.Helper()
	s, err := New(cfg, nil, b.TempDir(), nil)
	require.NoError(b, err)
	start(b, s)
	waitFor(b, s, "the first good revision", goodIs(f.head()))
	return s
}

func benchFile(i int) map[string]string {
	return map[string]string{"services/user.yaml": service("user", []string{"A", "B"}[i%2], fmt.Sprintf("1.%d.0", i+1), 1)}
}

// measure runs b.N commits. prepare makes commit i and returns it with
// what happens, timed, once it has landed (the webhook delivery, the ref
// update); the time until the source holds it as good is the latency.
func measure(b *testing.B, s *Source, prepare func(i int) (hash string, landed func())) {
	b.Helper()
	var lat []time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		hash, landed := prepare(i)
		b.StartTimer()
		t0 := time.Now()
		landed()
		waitFor(b, s, "the new commit", goodIs(hash))
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, "ms-p50")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "ms-max")
}
