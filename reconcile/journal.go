package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
)

// Store keeps each service's State. Save must be atomic: after a crash,
// Load returns either the previous or the new state, never a mix.
type Store interface {
	Load(ctx context.Context, service string) (State, error)
	Save(ctx context.Context, st State) error
}

// Fence is asked before every side effect whether this process may still
// act (design invariant 6). A nil Fence always allows.
type Fence interface {
	Check(ctx context.Context) error
}

// FileStore journals states as JSON files in a directory, one per service,
// written with write-to-temp, fsync, rename, fsync-dir.
type FileStore struct {
	dir string
}

var serviceFileRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)

// NewFileStore returns a store under dir (created if missing).
func NewFileStore(dir string) (*FileStore, error) {
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return nil, fmt.Errorf("creating journal directory %s: %w", dir, err)
	}
	return &FileStore{dir: dir}, nil
}

func (s *FileStore) path(service string) (string, error) {
	if !serviceFileRE.MatchString(service) {
		return "", fmt.Errorf("journal: invalid service name %q", service)
	}
	return filepath.Join(s.dir, service+".json"), nil
}

// Load returns the journaled state, or an empty state for a new service.
func (s *FileStore) Load(_ context.Context, service string) (State, error) {
	p, err := s.path(service)
	if err != nil {
		return State{}, err
	}
	data, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return State{Service: service}, nil
	}
	if err != nil {
		return State{}, fmt.Errorf("reading journal of %s: %w", service, err)
	}
	var st State
	if err := json.Unmarshal(data, &st); err != nil {
		return State{}, Stalled("CorruptJournal", "journal %s is not valid JSON (%v); inspect it, then fix or remove it", p, err)
	}
	return st, nil
}

// Save writes the state atomically and durably.
func (s *FileStore) Save(_ context.Context, st State) error {
	p, err := s.path(st.Service)
	if err != nil {
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding journal of %s: %w", st.Service, err)
	}
	tmp, err := os.CreateTemp(s.dir, "."+st.Service+".*.tmp")
	if err != nil {
		return fmt.Errorf("writing journal of %s: %w", st.Service, err)
	}
	defer os.Remove(tmp.Name()) // no-op after the rename
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("writing journal of %s: %w", st.Service, err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("syncing journal of %s: %w", st.Service, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("writing journal of %s: %w", st.Service, err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return fmt.Errorf("replacing journal of %s: %w", st.Service, err)
	}
	d, err := os.Open(s.dir)
	if err != nil {
		return fmt.Errorf("syncing journal directory: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing journal directory: %w", err)
	}
	return nil
}
