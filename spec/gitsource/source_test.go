package gitsource

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

func TestSourceFetchesOverEveryLocalTransport(t *testing.T) {
	for _, tc := range []struct {
		name string
		url  func(f *fixture) string
		auth spec.GitAuth
		env  map[string]string
	}{
		{name: "file URL", url: func(f *fixture) string { return "file://" + f.bare }},
		{name: "local path of a working tree", url: func(f *fixture) string { return f.work }},
		{name: "http without auth", url: func(f *fixture) string { return serveHTTP(t, f.root, "", "").url() }},
		{name: "git protocol", url: func(f *fixture) string { return serveGitDaemon(t, f.root) }},
		{
			name: "http with basic auth from the environment",
			url:  func(f *fixture) string { return serveHTTP(t, f.root, "deployer", "s3cret-pw").url() },
			auth: spec.GitAuth{UsernameEnv: "T_GIT_USER", PasswordEnv: "T_GIT_PASSWORD"},
			env:  map[string]string{"T_GIT_USER": "deployer", "T_GIT_PASSWORD": "s3cret-pw"},
		},
		{
			name: "http with a token from the environment",
			url:  func(f *fixture) string { return serveHTTP(t, f.root, "git", "tok-123").url() },
			auth: spec.GitAuth{TokenEnv: "T_GIT_TOKEN"},
			env:  map[string]string{"T_GIT_TOKEN": "tok-123"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			f := newFixture(t)
			cfg := gitConfig(tc.url(f))
			cfg.Auth = tc.auth
			s, err := New(cfg, nil, t.TempDir(), nil)
			require.NoError(t, err)
			start(t, s)
			st := waitFor(t, s, "the first good revision", goodIs(f.head()))
			require.Same(t, st.Good, st.Head)
			require.Nil(t, st.Rejected)
			require.NoError(t, st.FetchErr)
			require.Equal(t, "Alice Example", st.Good.Author)
			require.Equal(t, "alice@example.com", st.Good.Email)
			require.Equal(t, "add user service", st.Good.Subject)
			require.Equal(t, "1.0.0/A", versionOf(t, st.Good, "user"))
		})
	}
}

func TestWrongPasswordIsAFetchErrorThatNamesNoSecret(t *testing.T) {
	f := newFixture(t)
	remote := serveHTTP(t, f.root, "deployer", "right-password")
	t.Setenv("T_GIT_USER", "deployer")
	t.Setenv("T_GIT_PASSWORD", "wrong-password-xyz")
	cfg := gitConfig(remote.url())
	cfg.Auth = spec.GitAuth{UsernameEnv: "T_GIT_USER", PasswordEnv: "T_GIT_PASSWORD"}
	var logs logBuffer
	s, err := New(cfg, nil, t.TempDir(), logs.logger())
	require.NoError(t, err)
	s.retryBase = time.Hour // one failure is enough
	start(t, s)
	st := waitFor(t, s, "a fetch failure", func(st Status) bool { return st.FetchErr != nil })
	require.Nil(t, st.Good)
	require.Contains(t, st.FetchErr.Error(), "authentication")
	require.NotContains(t, st.FetchErr.Error(), "wrong-password-xyz")
	require.Contains(t, logs.String(), "git fetch failed")
	require.NotContains(t, logs.String(), "wrong-password-xyz")
}

func TestBranchAndSubdirectoryAreFollowed(t *testing.T) {
	f := newFixture(t)
	runGit(t, f.work, "checkout", "-q", "-b", "prod")
	f.commit("prod services", map[string]string{
		"services/user.yaml":            "",
		"deploy/prod/services/api.yaml": service("api", "B", "3.1.0", 2),
	})
	prod := f.head()
	runGit(t, f.work, "checkout", "-q", "main")
	f.commit("main moves on", map[string]string{"services/user.yaml": service("user", "B", "1.1.0", 1)})

	cfg := gitConfig("file://" + f.bare)
	cfg.Branch, cfg.Path = "prod", "deploy/prod/services"
	s, err := New(cfg, nil, t.TempDir(), nil)
	require.NoError(t, err)
	start(t, s)
	st := waitFor(t, s, "the prod head", goodIs(prod))
	require.Equal(t, []string{"api"}, st.Good.Set.Names())
	svc, _ := st.Good.Set.Get("api")
	require.Equal(t, "deploy/prod/services/api.yaml", svc.Source.File)
}

func TestCacheSurvivesARestartAndKeepsTheGoodRevisionWhileTheRemoteIsDown(t *testing.T) {
	f := newFixture(t)
	remote := serveHTTP(t, f.root, "", "")
	state := t.TempDir()
	first, err := New(gitConfig(remote.url()), nil, state, nil)
	require.NoError(t, err)
	require.Nil(t, first.Current().Good, "nothing is known before the first fetch")
	good := f.head()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	waitFor(t, first, "the first good revision", goodIs(good))
	cancel()
	require.NoError(t, <-done)

	remote.Stop()
	second, err := New(gitConfig(remote.url()), nil, state, nil)
	require.NoError(t, err)
	st := second.Current()
	require.NotNil(t, st.Good, "the cache's good revision is in force before any fetch")
	require.Equal(t, good, st.Good.Hash)
	require.Equal(t, "1.0.0/A", versionOf(t, st.Good, "user"))
	entries, err := os.ReadDir(filepath.Join(state, "git"))
	require.NoError(t, err)
	require.Len(t, entries, 1, "the second source reuses the first one's cache")

	second.retryBase = time.Hour
	start(t, second)
	st = waitFor(t, second, "the fetch failure", func(st Status) bool { return st.FetchErr != nil })
	require.Equal(t, good, st.Good.Hash)
}

func TestInvalidCommitIsRejectedWithEveryProblemAndTheLastGoodStays(t *testing.T) {
	f := newFixture(t)
	s, err := New(gitConfig("file://"+f.bare), nil, t.TempDir(), nil)
	require.NoError(t, err)
	start(t, s)
	good := f.head()
	waitFor(t, s, "the first good revision", goodIs(good))

	broken := strings.Replace(service("user", "B", "1.1.0", 1), "port: 8080, id: user-b1", "port: 70000, id: user-b1", 1)
	broken = strings.Replace(broken, "deploy:", "colour: blue\ndeploy:", 1)
	bad := f.commit("break the user service", map[string]string{"services/user.yaml": broken})
	st := waitFor(t, s, "the rejection", func(st Status) bool { return st.Head != nil && st.Head.Hash == bad })

	require.Equal(t, good, st.Good.Hash, "the last good revision stays in force")
	require.NotNil(t, st.Rejected)
	require.Equal(t, ReasonInvalid, st.Rejected.Reason)
	require.Nil(t, st.Head.Set)
	require.Equal(t, "break the user service", st.Head.Subject)
	ps, ok := spec.AsProblems(st.Rejected)
	require.True(t, ok, "the rejection carries spec.Problems: %v", st.Rejected)
	var lines []string
	for _, p := range ps {
		lines = append(lines, p.String())
	}
	require.Contains(t, lines, "services/user.yaml:11: groups.B.instances[0].port: must be 1..65535")
	require.Contains(t, strings.Join(lines, "\n"), "services/user.yaml:14: colour: unknown field")

	fixed := f.commit("fix the user service", map[string]string{"services/user.yaml": service("user", "B", "1.1.0", 1)})
	st = waitFor(t, s, "the fix", goodIs(fixed))
	require.Nil(t, st.Rejected)
	require.Equal(t, "1.1.0/B", versionOf(t, st.Good, "user"))
}

func TestRevertOfAReleaseMakesThePreviousStateGoodAgain(t *testing.T) {
	f := newFixture(t)
	s, err := New(gitConfig("file://"+f.bare), nil, t.TempDir(), nil)
	require.NoError(t, err)
	start(t, s)
	bump := f.commit("release user 1.1.0", map[string]string{"services/user.yaml": service("user", "B", "1.1.0", 1)})
	st := waitFor(t, s, "the release", goodIs(bump))
	require.Equal(t, "1.1.0/B", versionOf(t, st.Good, "user"))

	runGit(t, f.work, "revert", "--no-edit", "HEAD")
	f.push()
	st = waitFor(t, s, "the revert", goodIs(f.head()))
	require.Equal(t, "1.0.0/A", versionOf(t, st.Good, "user"))
	require.True(t, strings.HasPrefix(st.Good.Subject, `Revert "release user 1.1.0"`), st.Good.Subject)
}

// A head that does not descend from the revision in force (a reset and
// force push) is refused, also after a restart, unless
// git.allowNonFastForward allows it.
func TestForcePushIsRefusedUnlessAllowed(t *testing.T) {
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("allowNonFastForward=%v", allow), func(t *testing.T) {
			f := newFixture(t)
			cfg := gitConfig("file://" + f.bare)
			cfg.AllowNonFastForward = allow
			state := t.TempDir()
			s, err := New(cfg, nil, state, nil)
			require.NoError(t, err)
			start(t, s)
			base := f.head()
			abandoned := f.commit("release user 2.0.0", map[string]string{"services/user.yaml": service("user", "B", "2.0.0", 1)})
			waitFor(t, s, "the commit to be rewritten", goodIs(abandoned))

			runGit(t, f.work, "reset", "-q", "--hard", base)
			require.NoError(t, os.WriteFile(filepath.Join(f.work, "services/user.yaml"), []byte(service("user", "B", "1.5.0", 1)), 0o644))
			runGit(t, f.work, "commit", "-q", "-am", "release user 1.5.0 instead")
			f.push("--force")
			rewritten := f.head()
			st := waitFor(t, s, "the rewritten head", func(st Status) bool { return st.Head != nil && st.Head.Hash == rewritten })
			if allow {
				require.Nil(t, st.Rejected)
				require.Equal(t, "1.5.0/B", versionOf(t, st.Good, "user"))
				return
			}
			require.Equal(t, abandoned, st.Good.Hash, "the revision in force stays")
			require.Equal(t, ReasonNonFastForward, st.Rejected.Reason)
			require.EqualError(t, st.Rejected, fmt.Sprintf("commit %s does not descend from %s, the revision in force: a reset and force push is refused, "+
				"since it could bring back an older desired state (even a signed one); to go back, commit the change on top (git revert, tandem rollback), "+
				"or set git.allowNonFastForward: true in the daemon config", rewritten[:12], abandoned[:12]))

			again, err := New(cfg, nil, state, nil) // a restart judges the cached head the same way
			require.NoError(t, err)
			st = again.Current()
			require.Equal(t, abandoned, st.Good.Hash)
			require.Equal(t, rewritten, st.Head.Hash)
			require.Equal(t, ReasonNonFastForward, st.Rejected.Reason)
		})
	}
}

func TestRemoteGoingAwayKeepsTheGoodRevisionAndBacksOff(t *testing.T) {
	f := newFixture(t)
	remote := serveHTTP(t, f.root, "", "")
	s, err := New(gitConfig(remote.url()), nil, t.TempDir(), nil)
	require.NoError(t, err)
	s.retryBase, s.retryMax = 20*time.Millisecond, time.Hour
	start(t, s)
	good := f.head()
	waitFor(t, s, "the first good revision", goodIs(good))

	remote.Stop()
	s.Trigger()
	delays := map[int]time.Duration{}
	st := waitFor(t, s, "four failed fetches", func(st Status) bool {
		if st.FetchErr != nil {
			delays[st.Failures] = st.NextFetch.Sub(st.LastFetch)
		}
		return st.Failures >= 4
	})
	require.Equal(t, good, st.Good.Hash, "the last good revision stays in force")
	require.Contains(t, st.FetchErr.Error(), "fetching branch main from "+remote.url())
	var seen []int
	for n := 1; n <= 4; n++ {
		if _, ok := delays[n]; ok {
			seen = append(seen, n)
		}
	}
	require.GreaterOrEqual(t, len(seen), 2, "observed failures: %v", delays)
	for i := 1; i < len(seen); i++ {
		require.Greater(t, delays[seen[i]], delays[seen[i-1]], "the retry delay grows: %v", delays)
	}

	// The commit lands while the server is down; the first fetch that
	// reaches the server again brings it.
	next := f.commit("release user 1.1.0", map[string]string{"services/user.yaml": service("user", "B", "1.1.0", 1)})
	remote.Start()
	s.Trigger()
	st = waitFor(t, s, "recovery", goodIs(next))
	require.NoError(t, st.FetchErr)
	require.Zero(t, st.Failures)
}

func TestLocalRepositoryChangeTriggersAFetchWithoutWaitingForThePoll(t *testing.T) {
	f := newFixture(t)
	s, err := New(gitConfig(f.work), nil, t.TempDir(), nil) // the poll interval is an hour
	require.NoError(t, err)
	start(t, s)
	waitFor(t, s, "the first good revision", goodIs(f.head()))
	require.NoError(t, os.WriteFile(filepath.Join(f.work, "services/user.yaml"), []byte(service("user", "B", "1.1.0", 1)), 0o644))
	runGit(t, f.work, "commit", "-q", "-am", "release user 1.1.0")
	st := waitFor(t, s, "the local commit", goodIs(f.head()))
	require.Equal(t, "1.1.0/B", versionOf(t, st.Good, "user"))
}

func TestSubscribeCoalescesAndIsQuietWhenNothingChanged(t *testing.T) {
	f := newFixture(t)
	s, err := New(gitConfig("file://"+f.bare), nil, t.TempDir(), nil)
	require.NoError(t, err)
	ch := s.Subscribe()
	start(t, s)
	waitFor(t, s, "the first good revision", goodIs(f.head()))
	<-ch // the first good revision was notified

	// A fetch that finds nothing new changes nothing worth a notification.
	before := s.Current().LastFetch
	s.Trigger()
	pollFor(t, "another fetch", func() bool { return s.Current().LastFetch.After(before) })
	select {
	case <-ch:
		t.Fatal("a fetch without news notified subscribers")
	default:
	}
}
