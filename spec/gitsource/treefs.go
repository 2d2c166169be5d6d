package gitsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
)

// treeFS is a read-only fs.FS over one Git tree object, so that the desired
// state is read exactly as committed (pinned to the commit hash) without a
// checkout. edits replaces the content of existing regular files; Release
// and Rollback validate their result through it before writing anything.
//
// Symbolic links and submodules are listed but not followed: opening one
// is an error, which spec.Load reports against that file.
type treeFS struct {
	root  *object.Tree
	edits map[string][]byte
}

var (
	_ fs.ReadDirFS = treeFS{}
	_ fs.StatFS    = treeFS{}
)

func (t treeFS) Open(name string) (fs.File, error) {
	info, err := t.stat("open", name)
	if err != nil {
		return nil, err
	}
	if info.IsDir() {
		entries, err := t.ReadDir(name)
		if err != nil {
			return nil, err
		}
		return &treeDir{info: info, entries: entries}, nil
	}
	data, err := t.read(name)
	if err != nil {
		return nil, &fs.PathError{Op: "open", Path: name, Err: err}
	}
	return &treeFile{info: info, Reader: bytes.NewReader(data)}, nil
}

func (t treeFS) Stat(name string) (fs.FileInfo, error) {
	info, err := t.stat("stat", name)
	if err != nil {
		return nil, err
	}
	return info, nil
}

func (t treeFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrInvalid}
	}
	dir := t.root
	if name != "." {
		sub, err := t.root.Tree(name)
		if err != nil {
			return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
		}
		dir = sub
	}
	entries := make([]fs.DirEntry, 0, len(dir.Entries))
	for _, e := range dir.Entries {
		entries = append(entries, treeDirEntry{t: t, path: path.Join(name, e.Name), e: e})
	}
	// Git orders a directory "a" as "a/"; fs.FS lists by plain name.
	slices.SortFunc(entries, func(a, b fs.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
	return entries, nil
}

func (t treeFS) stat(op, name string) (treeInfo, error) {
	if !fs.ValidPath(name) {
		return treeInfo{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrInvalid}
	}
	if name == "." {
		return treeInfo{name: ".", mode: fs.ModeDir | 0o555}, nil
	}
	e, err := t.root.FindEntry(name)
	if err != nil {
		return treeInfo{}, &fs.PathError{Op: op, Path: name, Err: fs.ErrNotExist}
	}
	info, err := t.info(name, *e)
	switch {
	case err != nil:
		return treeInfo{}, &fs.PathError{Op: op, Path: name, Err: err}
	case info.mode&fs.ModeSymlink != 0:
		return treeInfo{}, &fs.PathError{Op: op, Path: name, Err: errors.New("a symbolic link; links are not followed in a commit")}
	case info.mode&fs.ModeIrregular != 0:
		return treeInfo{}, &fs.PathError{Op: op, Path: name, Err: fmt.Errorf("a submodule or an unsupported tree entry (mode %s)", e.Mode)}
	}
	return info, nil
}

// info describes one tree entry. The sizes of edited files are those of
// their new content. Links and submodules are listed, but opening one fails.
func (t treeFS) info(name string, e object.TreeEntry) (treeInfo, error) {
	switch e.Mode {
	case filemode.Dir:
		return treeInfo{name: e.Name, mode: fs.ModeDir | 0o555}, nil
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		if data, ok := t.edits[name]; ok {
			return treeInfo{name: e.Name, mode: 0o444, size: int64(len(data))}, nil
		}
		blob, err := t.root.File(name)
		if err != nil {
			return treeInfo{}, fmt.Errorf("reading blob %s: %w", e.Hash, err)
		}
		return treeInfo{name: e.Name, mode: 0o444, size: blob.Size}, nil
	case filemode.Symlink:
		return treeInfo{name: e.Name, mode: fs.ModeSymlink | 0o444}, nil
	default:
		return treeInfo{name: e.Name, mode: fs.ModeIrregular}, nil
	}
}

func (t treeFS) read(name string) ([]byte, error) {
	if data, ok := t.edits[name]; ok {
		return data, nil
	}
	f, err := t.root.File(name)
	if err != nil {
		return nil, err
	}
	r, err := f.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	return io.ReadAll(r)
}

type treeInfo struct {
	name string
	mode fs.FileMode
	size int64
}

func (i treeInfo) Name() string       { return i.name }
func (i treeInfo) Size() int64        { return i.size }
func (i treeInfo) Mode() fs.FileMode  { return i.mode }
func (i treeInfo) ModTime() time.Time { return time.Time{} }
func (i treeInfo) IsDir() bool        { return i.mode.IsDir() }
func (i treeInfo) Sys() any           { return nil }

// treeDirEntry reads the size of a file (its blob) only when Info asks:
// walking a tree (spec.Load's fs.WalkDir) then reads no blob it skips.
type treeDirEntry struct {
	t    treeFS
	path string
	e    object.TreeEntry
}

func (d treeDirEntry) Name() string { return d.e.Name }
func (d treeDirEntry) IsDir() bool  { return d.e.Mode == filemode.Dir }
func (d treeDirEntry) Type() fs.FileMode {
	switch d.e.Mode {
	case filemode.Dir:
		return fs.ModeDir
	case filemode.Regular, filemode.Executable, filemode.Deprecated:
		return 0
	case filemode.Symlink:
		return fs.ModeSymlink
	default:
		return fs.ModeIrregular
	}
}
func (d treeDirEntry) Info() (fs.FileInfo, error) {
	info, err := d.t.info(d.path, d.e)
	if err != nil {
		return nil, &fs.PathError{Op: "readdir", Path: d.path, Err: err}
	}
	return info, nil
}
func (d treeDirEntry) String() string { return fs.FormatDirEntry(d) }

type treeFile struct {
	info treeInfo
	*bytes.Reader
}

func (f *treeFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *treeFile) Close() error               { return nil }

type treeDir struct {
	info    treeInfo
	entries []fs.DirEntry
	offset  int
}

func (d *treeDir) Stat() (fs.FileInfo, error) { return d.info, nil }
func (d *treeDir) Close() error               { return nil }
func (d *treeDir) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: d.info.name, Err: fs.ErrInvalid}
}

// ReadDir follows the fs.ReadDirFile contract.
func (d *treeDir) ReadDir(n int) ([]fs.DirEntry, error) {
	rest := d.entries[d.offset:]
	if n <= 0 {
		d.offset = len(d.entries)
		return rest, nil
	}
	if len(rest) == 0 {
		return nil, io.EOF
	}
	rest = rest[:min(n, len(rest))]
	d.offset += len(rest)
	return rest, nil
}
