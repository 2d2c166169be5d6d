package gitsource

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestACacheLeftByACrashIsRepairedAndFetchedAgain leaves in the cache what
// a daemon killed during a fetch leaves (a complete pack beside an index
// cut to nothing, a temporary pack, a ref truncated but not yet written):
// the next start must not fail, and the head is fetched again.
func TestACacheLeftByACrashIsRepairedAndFetchedAgain(t *testing.T) {
	f := newFixture(t)
	state := t.TempDir()
	first, err := New(gitConfig("file://"+f.bare), nil, state, nil)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- first.Run(ctx) }()
	waitFor(t, first, "the first good revision", goodIs(f.head()))
	cancel()
	require.NoError(t, <-done)

	caches, err := filepath.Glob(filepath.Join(state, "git", "*"))
	require.NoError(t, err)
	require.Len(t, caches, 1)
	packs, err := filepath.Glob(filepath.Join(caches[0], "objects", "pack", "pack-*.idx"))
	require.NoError(t, err)
	require.NotEmpty(t, packs)
	for _, idx := range packs {
		require.NoError(t, os.Truncate(idx, 0))
	}
	require.NoError(t, os.WriteFile(filepath.Join(caches[0], "objects", "pack", "tmp_pack_1234"), []byte("PACK"), 0o600))
	require.NoError(t, os.Truncate(filepath.Join(caches[0], "refs", "remotes", "origin", "main"), 0))

	var logs logBuffer
	second, err := New(gitConfig("file://"+f.bare), nil, state, logs.logger())
	require.NoError(t, err, "a restart after a crash does not fail on the cache")
	require.Nil(t, second.Current().Good, "the good revision's objects were in the broken pack: it is fetched again")
	require.Contains(t, logs.String(), "removed what an interrupted write left behind")
	head := f.commit("after the crash", map[string]string{"services/user.yaml": service("user", "B", "1.1.0", 1)})
	start(t, second)
	waitFor(t, second, "the head fetched again", goodIs(head))
	leftovers, err := filepath.Glob(filepath.Join(caches[0], "objects", "pack", "tmp_*"))
	require.NoError(t, err)
	require.Empty(t, leftovers)
	require.False(t, strings.Contains(logs.String(), "level=ERROR"), logs.String())
}
