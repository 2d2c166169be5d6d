package gitsource

import (
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	gogit "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

// commitTree commits files (and symbolic links) with the git CLI and returns
// the commit's tree as go-git reads it.
func commitTree(t *testing.T, files, links map[string]string) *object.Tree {
	t.Helper()
	dir := t.TempDir()
	runGit(t, dir, "init", "-q", "-b", "main")
	for name, content := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	for name, target := range links {
		require.NoError(t, os.Symlink(target, filepath.Join(dir, name)))
	}
	runGit(t, dir, "add", "-A")
	runGit(t, dir, "commit", "-q", "-m", "tree")
	repo, err := gogit.PlainOpen(dir)
	require.NoError(t, err)
	head, err := repo.Head()
	require.NoError(t, err)
	c, err := repo.CommitObject(head.Hash())
	require.NoError(t, err)
	tree, err := c.Tree()
	require.NoError(t, err)
	return tree
}

func TestTreeFSIsAConformingFS(t *testing.T) {
	tree := commitTree(t, map[string]string{
		"README.md":               "# fleet\n",
		"services/a.yaml":         "a: 1\n",
		"services/nested/b.yml":   "b: 2\n",
		"services/z-last.yaml":    "z: 3\n",
		"services/nested-sibling": "not yaml\n",
	}, nil)
	require.NoError(t, fstest.TestFS(treeFS{root: tree},
		"README.md", "services/a.yaml", "services/nested/b.yml", "services/z-last.yaml", "services/nested-sibling"))

	edited := treeFS{root: tree, edits: map[string][]byte{"services/a.yaml": []byte("a: 100 # longer\n")}}
	require.NoError(t, fstest.TestFS(edited, "services/a.yaml", "services/nested/b.yml"))
	data, err := fs.ReadFile(edited, "services/a.yaml")
	require.NoError(t, err)
	require.Equal(t, "a: 100 # longer\n", string(data))
	info, err := fs.Stat(edited, "services/a.yaml")
	require.NoError(t, err)
	require.EqualValues(t, len(data), info.Size())
}

func TestTreeFSDoesNotFollowSymbolicLinks(t *testing.T) {
	tree := commitTree(t, map[string]string{
		"services/user.yaml": service("user", "A", "1.0.0", 1),
	}, map[string]string{"services/escape.yaml": "/etc/passwd"})
	_, err := spec.Load(treeFS{root: tree}, "services", nil)
	ps, ok := spec.AsProblems(err)
	require.True(t, ok, "%v", err)
	require.Len(t, ps, 1)
	require.Equal(t, "services/escape.yaml", ps[0].File)
	require.Contains(t, ps[0].Msg, "services/escape.yaml: a symbolic link; links are not followed in a commit")
}
