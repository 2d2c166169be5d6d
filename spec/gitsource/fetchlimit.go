package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/storage/filesystem"
)

// A fetch is bounded in bytes at the storage, since go-git v5.19.3 has no
// per-fetch limit and its transports are registered process-wide: fetch
// copies the pack it receives (every transport: http, ssh, git, file)
// into the storer's PackfileWriter when the storer has one
// (plumbing/format/packfile.UpdateObjectStorage), and the cache's
// filesystem storage does. limitedStorage hands out a writer that, once
// the pack passes the limit, stops writing and cancels the fetch's
// context. It does not fail the write itself: go-git would then close the
// session while the server (a git-upload-pack process for file:// and
// ssh) still writes, and wait for it forever; a cancelled context makes
// go-git's next read fail, which kills the session. go-git then abandons
// the pack (no index, refs not updated) and the fetch fails; the temporary
// pack it leaves is removed at once (removeTempPacks). The 5-minute fetch
// timeout bounds the time.

// errFetchTooLarge is returned by a fetch whose pack passes the limit.
var errFetchTooLarge = errors.New("the fetch brought more than git.maxFetchBytes")

// limitedStorage is the cache's filesystem storage with fetched packs
// limited to max bytes each. One fetch at a time (Source.Run's goroutine).
type limitedStorage struct {
	*filesystem.Storage
	max int64

	mu       sync.Mutex
	cancel   context.CancelFunc // of the fetch under way
	exceeded bool
}

// begin arms the limit for one fetch; end reports whether it was passed.
func (s *limitedStorage) begin(cancel context.CancelFunc) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancel, s.exceeded = cancel, false
}

func (s *limitedStorage) end() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cancel = nil
	return s.exceeded
}

func (s *limitedStorage) PackfileWriter() (io.WriteCloser, error) {
	w, err := s.Storage.PackfileWriter()
	if err != nil {
		return nil, err
	}
	return &limitedWriter{WriteCloser: w, left: s.max, storage: s}, nil
}

type limitedWriter struct {
	io.WriteCloser
	left    int64
	storage *limitedStorage
}

func (w *limitedWriter) Write(p []byte) (int, error) {
	if w.left < 0 {
		return len(p), nil // passed: discarded until the cancelled read ends the copy
	}
	if int64(len(p)) > w.left {
		w.left = -1
		s := w.storage
		s.mu.Lock()
		s.exceeded = true
		if s.cancel != nil {
			s.cancel()
		}
		s.mu.Unlock()
		return len(p), nil
	}
	w.left -= int64(len(p))
	return w.WriteCloser.Write(p)
}

// withFetchLimit reopens the cache repository over limitedStorage.
func withFetchLimit(repo *git.Repository, max int64) (*git.Repository, error) {
	fs, ok := repo.Storer.(*filesystem.Storage)
	if !ok {
		return nil, fmt.Errorf("git cache storage is %T, not the filesystem", repo.Storer)
	}
	return git.Open(&limitedStorage{Storage: fs, max: max}, nil)
}

// removeTempPacks removes the packs an abandoned fetch left in the cache.
func removeTempPacks(cache string) error {
	names, err := filepath.Glob(filepath.Join(cache, "objects", "pack", "tmp_pack_*"))
	if err != nil {
		return err
	}
	for _, n := range names {
		if err := os.Remove(n); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}
