package gitsource

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
)

// repairCache removes what a crash (the daemon killed, the machine reset)
// can leave in the cache repository, which go-git would trip over on every
// later start; what it removes is fetched again. go-git v5.19.3 writes
// (storage/filesystem/dotgit):
//
//   - a fetched pack to objects/pack/tmp_pack_*, then pack-X.idx in place,
//     then renames the pack to pack-X.pack; and it keeps an existing .idx
//     when the same pack is fetched again, so an .idx cut short by a crash
//     would stay beside the next complete pack and fail every object read;
//   - loose objects to objects/pack/tmp_obj_* before renaming them;
//   - refs by truncating the file, then writing it: a crash in between
//     leaves an empty ref, which reads as no object at all.
//
// So: temporary files go; an .idx without its pack goes; a pack whose .idx
// is missing or does not decode goes with it; empty ref files go.
func repairCache(dir string, log *slog.Logger) error {
	packDir := filepath.Join(dir, "objects", "pack")
	entries, err := os.ReadDir(packDir)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("checking git cache %s: %w", dir, err)
	}
	var broken []string
	for _, e := range entries {
		name := e.Name()
		base, ext := strings.TrimSuffix(name, filepath.Ext(name)), filepath.Ext(name)
		switch {
		case strings.HasPrefix(name, "tmp_pack_") || strings.HasPrefix(name, "tmp_obj_"):
			broken = append(broken, name)
		case ext == ".idx" && !exists(filepath.Join(packDir, base+".pack")):
			broken = append(broken, name)
		case ext == ".pack" && !indexOK(filepath.Join(packDir, base+".idx")):
			broken = append(broken, name, base+".idx")
		}
	}
	for _, name := range broken {
		p := filepath.Join(packDir, name)
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("repairing git cache %s: %w", dir, err)
		}
		log.Warn("git cache: removed what an interrupted write left behind", "file", p)
	}
	refs := filepath.Join(dir, "refs")
	return filepath.WalkDir(refs, func(p string, d fs.DirEntry, err error) error {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil || d.IsDir() {
			return err
		}
		if info, err := d.Info(); err != nil || info.Size() > 0 {
			return err
		}
		log.Warn("git cache: removed a ref an interrupted write left empty", "file", p)
		return os.Remove(p)
	})
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// indexOK reports whether a pack index exists and decodes entirely
// (its trailing checksum is verified).
func indexOK(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	return idxfile.NewDecoder(f).Decode(idxfile.NewMemoryIndex()) == nil
}
