package gitsource

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watchRefs starts a goroutine (counted in wg, ended by ctx) that triggers a
// fetch when the local repository's HEAD, packed-refs or a branch ref
// changes. Git writes a ref as <ref>.lock and renames it into place; lock
// files are ignored, and a burst of events is merged into one trigger.
func (s *Source) watchRefs(ctx context.Context, wg *sync.WaitGroup) error {
	gitDir, err := findGitDir(s.remote.local)
	if err != nil {
		return err
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching %s: %w", gitDir, err)
	}
	dirs := []string{gitDir, filepath.Join(gitDir, "refs", "heads")}
	if d := path.Dir(s.cfg.Branch); d != "." {
		dirs = append(dirs, filepath.Join(gitDir, "refs", "heads", filepath.FromSlash(d)))
	}
	for _, d := range dirs {
		if err := w.Add(d); err != nil {
			_ = w.Close()
			return fmt.Errorf("watching %s: %w", d, err)
		}
	}
	heads := filepath.Join(gitDir, "refs", "heads") + string(filepath.Separator)
	relevant := func(name string) bool {
		if strings.HasSuffix(name, ".lock") {
			return false
		}
		base := filepath.Base(name)
		return base == "HEAD" || base == "packed-refs" || strings.HasPrefix(name, heads)
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer w.Close()
		debounce := time.NewTimer(time.Hour)
		debounce.Stop()
		defer debounce.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case ev, ok := <-w.Events:
				if !ok {
					return
				}
				if relevant(ev.Name) {
					debounce.Reset(s.debounce)
				}
			case err, ok := <-w.Errors:
				if !ok {
					return
				}
				s.log.Warn("watching git refs", "error", err)
			case <-debounce.C:
				s.Trigger()
			}
		}
	}()
	return nil
}

// findGitDir returns the directory holding HEAD and refs: dir/.git for a
// repository with a working tree, dir itself for a bare one.
func findGitDir(dir string) (string, error) {
	for _, d := range []string{filepath.Join(dir, ".git"), dir} {
		if st, err := os.Stat(filepath.Join(d, "refs")); err == nil && st.IsDir() {
			return d, nil
		}
	}
	return "", fmt.Errorf("%s is not a git repository (no .git/refs or refs directory)", dir)
}
