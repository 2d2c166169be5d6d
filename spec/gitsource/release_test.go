package gitsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/stretchr/testify/require"
)

var releaser = &object.Signature{Name: "Rel Easer", Email: "releaser@example.com", When: time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)}

func repoOptions(f *fixture) RepoOptions {
	return RepoOptions{RepoDir: f.work, Dir: "services", Author: releaser}
}

func readWork(t *testing.T, f *fixture, name string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(f.work, name))
	require.NoError(t, err)
	return string(data)
}

func commitMessage(t *testing.T, f *fixture, hash string) string {
	t.Helper()
	return runGit(t, f.work, "log", "-1", "--format=%B", hash)
}

// unchanged asserts that a refused operation left HEAD and the files alone.
func unchanged(t *testing.T, f *fixture, head string, files map[string]string) {
	t.Helper()
	require.Equal(t, head, f.head())
	for name, content := range files {
		require.Equal(t, content, readWork(t, f, name), name)
	}
}

func TestReleaseThenRollbackRestoresTheOriginalBytes(t *testing.T) {
	f := newFixture(t)
	original := readWork(t, f, "services/user.yaml")
	ctx := context.Background()

	rel, err := Release(ctx, ReleaseOptions{RepoOptions: repoOptions(f), Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
	require.Equal(t, rel, f.head())
	require.Equal(t, strings.Replace(strings.Replace(original, "active: A", "active: B", 1), `version: "1.0.0"`, `version: "1.1.0"`, 1),
		readWork(t, f, "services/user.yaml"), "only the two values change; comments and layout stay")
	require.Equal(t, "release user 1.1.0 to group B\n\n"+
		"Group B receives 1.1.0 and takes the traffic; group A keeps 1.0.0, warm, as the rollback target.\n\n"+
		"Tandem-Release: user 1.0.0->1.1.0", commitMessage(t, f, rel))
	require.Equal(t, "Rel Easer <releaser@example.com>", runGit(t, f.work, "log", "-1", "--format=%an <%ae>"))
	require.Empty(t, runGit(t, f.work, "status", "--porcelain"), "the git CLI sees a clean tree after the commit")

	back, err := Rollback(ctx, RollbackOptions{RepoOptions: repoOptions(f), Service: "user"})
	require.NoError(t, err)
	require.Equal(t, original, readWork(t, f, "services/user.yaml"))
	require.Equal(t, "Revert \"release user 1.1.0 to group B\"\n\nThis reverts commit "+rel+".", commitMessage(t, f, back))
	require.Empty(t, runGit(t, f.work, "diff", rel+"~1", back), "the revert's tree is the tree before the release")
}

func TestRollbackWalksBackThroughReleasesThatAreNotRevertedYet(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	versionNow := func() string {
		st := readWork(t, f, "services/user.yaml")
		for _, l := range strings.Split(st, "\n") {
			if strings.HasPrefix(l, "version:") || strings.HasPrefix(l, "active:") {
				st += "|" + l
			}
		}
		parts := strings.Split(st, "|")
		return strings.Join(parts[1:], " ")
	}
	for _, v := range []string{"1.1.0", "1.2.0"} {
		_, err := Release(ctx, ReleaseOptions{RepoOptions: repoOptions(f), Service: "user", Version: v})
		require.NoError(t, err)
	}
	require.Equal(t, `active: A version: "1.2.0"   # bumped by releases`, versionNow())
	_, err := Rollback(ctx, RollbackOptions{RepoOptions: repoOptions(f), Service: "user"})
	require.NoError(t, err)
	require.Equal(t, `active: B version: "1.1.0"   # bumped by releases`, versionNow())
	_, err = Rollback(ctx, RollbackOptions{RepoOptions: repoOptions(f), Service: "user"})
	require.NoError(t, err)
	require.Equal(t, `active: A version: "1.0.0"   # bumped by releases`, versionNow())
	head := f.head()
	_, err = Rollback(ctx, RollbackOptions{RepoOptions: repoOptions(f), Service: "user"})
	require.EqualError(t, err, "no release of service user to roll back: no commit with a Tandem-Release trailer for it that is not reverted yet")
	require.Equal(t, head, f.head())
}

func TestRollbackKeepsLaterChangesElsewhereInTheFile(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	rel, err := Release(ctx, ReleaseOptions{RepoOptions: repoOptions(f), Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
	later := strings.Replace(readWork(t, f, "services/user.yaml"), "health:\n", "drain: {quiet: 9s}\nhealth:\n", 1)
	f.commit("tune the drain", map[string]string{"services/user.yaml": later})

	_, err = Rollback(ctx, RollbackOptions{RepoOptions: repoOptions(f), Service: "user"})
	require.NoError(t, err)
	got := readWork(t, f, "services/user.yaml")
	require.Contains(t, got, "drain: {quiet: 9s}\n")
	require.Contains(t, got, "active: A\n")
	require.Contains(t, got, `version: "1.0.0"`)
	require.Contains(t, commitMessage(t, f, f.head()), "This reverts commit "+rel+".")
}

func TestReleaseAndRollbackRefuseAndChangeNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name    string
		prepare func(t *testing.T, f *fixture)
		do      func(f *fixture) error
		err     string
	}{
		{
			name:    "a modified file",
			prepare: func(t *testing.T, f *fixture) { appendTo(t, f, "services/user.yaml", "# wip\n") },
			do:      releaseUser("1.1.0"),
			err:     "working tree " + "%WORK%" + " is not clean (services/user.yaml): commit, stash or remove the changes first",
		},
		{
			name: "an untracked file",
			prepare: func(t *testing.T, f *fixture) {
				require.NoError(t, os.WriteFile(filepath.Join(f.work, "services/new.yaml"), []byte(service("new", "A", "1", 2)), 0o644))
			},
			do:  releaseUser("1.1.0"),
			err: "is not clean (services/new.yaml)",
		},
		{
			name: "a staged file",
			prepare: func(t *testing.T, f *fixture) {
				appendTo(t, f, "services/user.yaml", "# wip\n")
				runGit(t, f.work, "add", "services/user.yaml")
			},
			do:  rollbackUser,
			err: "is not clean (services/user.yaml)",
		},
		{name: "an unknown service", do: func(f *fixture) error {
			_, err := Release(ctx, ReleaseOptions{RepoOptions: repoOptions(f), Service: "billing", Version: "1.1.0"})
			return err
		}, err: "service billing is not defined under services (services: user)"},
		{name: "the version it already has", do: releaseUser("1.0.0"), err: "service user already has version 1.0.0 (active group A): nothing to release"},
		{name: "a version that does not validate", do: releaseUser("1.1.0 beta"), err: "the change would leave the desired state invalid; nothing was changed:\n" +
			`services/user.yaml:4: version: must be letters, digits and . _ + -, at most 128 characters, got "1.1.0 beta"`},
		{
			name: "an invalid HEAD",
			prepare: func(t *testing.T, f *fixture) {
				f.commit("break", map[string]string{"services/user.yaml": strings.Replace(readWork(t, f, "services/user.yaml"), "port: 8080, id: user-b1", "port: 0, id: user-b1", 1)})
			},
			do:  releaseUser("1.1.0"),
			err: "the desired state at HEAD (%HEAD%) is invalid; fix it first:\nservices/user.yaml:11: groups.B.instances[0].port: must be 1..65535",
		},
		{
			name:    "a detached HEAD",
			prepare: func(t *testing.T, f *fixture) { runGit(t, f.work, "checkout", "-q", "--detach") },
			do:      releaseUser("1.1.0"),
			err:     "is detached: check out the branch the daemon follows",
		},
		{name: "no release to roll back", do: rollbackUser, err: "no release of service user to roll back"},
		{
			name: "a rollback whose lines changed since",
			prepare: func(t *testing.T, f *fixture) {
				_, err := Release(ctx, ReleaseOptions{RepoOptions: repoOptions(f), Service: "user", Version: "1.1.0"})
				require.NoError(t, err)
				f.commit("hotfix", map[string]string{"services/user.yaml": strings.Replace(readWork(t, f, "services/user.yaml"), `"1.1.0"`, `"1.1.1"`, 1)})
			},
			do:  rollbackUser,
			err: "cannot revert %REL% cleanly: services/user.yaml, line 3: the lines the commit changed, or the 3 lines around them, have changed since; revert it by hand",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t)
			if tc.prepare != nil {
				tc.prepare(t, f)
			}
			head := f.head()
			files := map[string]string{"services/user.yaml": readWork(t, f, "services/user.yaml")}
			err := tc.do(f)
			want := strings.NewReplacer("%WORK%", f.work, "%HEAD%", head[:12]).Replace(tc.err)
			if strings.Contains(want, "%REL%") { // only these cases have a HEAD~1
				rel := runGit(t, f.work, "rev-parse", "HEAD~1")[:12]
				want = strings.Replace(want, "%REL%", rel, 1)
			}
			require.ErrorContains(t, err, want)
			unchanged(t, f, head, files)
		})
	}
}

func appendTo(t *testing.T, f *fixture, name, text string) {
	t.Helper()
	require.NoError(t, os.WriteFile(filepath.Join(f.work, name), []byte(readWork(t, f, name)+text), 0o644))
}

func releaseUser(version string) func(f *fixture) error {
	return func(f *fixture) error {
		_, err := Release(context.Background(), ReleaseOptions{RepoOptions: repoOptions(f), Service: "user", Version: version})
		return err
	}
}

func rollbackUser(f *fixture) error {
	_, err := Rollback(context.Background(), RollbackOptions{RepoOptions: repoOptions(f), Service: "user"})
	return err
}

func TestReleaseWithPushIsSeenByTheSource(t *testing.T) {
	f := newFixture(t)
	s, err := New(gitConfig("file://"+f.bare), nil, t.TempDir(), nil)
	require.NoError(t, err)
	start(t, s)
	waitFor(t, s, "the first good revision", goodIs(f.head()))

	opts := repoOptions(f)
	opts.Push = true
	rel, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
	require.Equal(t, rel, runGit(t, f.bare, "rev-parse", "main"))
	st := waitFor(t, s, "the pushed release", goodIs(rel))
	require.Equal(t, "release user 1.1.0 to group B", st.Good.Subject)
	require.Equal(t, "Rel Easer", st.Good.Author)
	require.Equal(t, "1.1.0/B", versionOf(t, st.Good, "user"))

	back, err := Rollback(context.Background(), RollbackOptions{RepoOptions: opts, Service: "user"})
	require.NoError(t, err)
	st = waitFor(t, s, "the pushed rollback", goodIs(back))
	require.Equal(t, "1.0.0/A", versionOf(t, st.Good, "user"))
}

func TestPushThatIsNotAFastForwardKeepsTheLocalCommit(t *testing.T) {
	f := newFixture(t)
	other := filepath.Join(t.TempDir(), "other")
	runGit(t, f.root, "clone", "-q", f.bare, other)
	require.NoError(t, os.WriteFile(filepath.Join(other, "NOTES"), []byte("elsewhere\n"), 0o644))
	runGit(t, other, "add", "NOTES")
	runGit(t, other, "commit", "-q", "-m", "someone else pushed first")
	runGit(t, other, "push", "-q", "origin", "main")

	opts := repoOptions(f)
	opts.Push = true
	rel, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.ErrorContains(t, err, "committed "+rel[:12]+" locally, but pushing main failed")
	require.Equal(t, rel, f.head())
}

func TestCommitAuthorComesFromTheGitConfig(t *testing.T) {
	t.Setenv("HOME", t.TempDir()) // no global git config
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	f := newFixture(t)
	opts := repoOptions(f)
	opts.Author = nil
	head := f.head()
	_, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.EqualError(t, err, "no commit author: set user.name and user.email with git config")
	require.Equal(t, head, f.head())

	runGit(t, f.work, "config", "user.name", "Configured Person")
	runGit(t, f.work, "config", "user.email", "configured@example.com")
	rel, err := Release(context.Background(), ReleaseOptions{RepoOptions: opts, Service: "user", Version: "1.1.0"})
	require.NoError(t, err)
	repo, err := gogit.PlainOpen(f.work)
	require.NoError(t, err)
	c, err := repo.CommitObject(plumbing.NewHash(rel))
	require.NoError(t, err)
	require.Equal(t, "Configured Person <configured@example.com>", c.Author.Name+" <"+c.Author.Email+">")
}
