package ha

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"
)

// LockFile is the name of the lock file in the state directory.
const LockFile = "tandem.lock"

// holder is what the lock file says about the process that holds it.
type holder struct {
	PID     int       `json:"pid"`
	Host    string    `json:"host"`
	Started time.Time `json:"started"`
}

// Lock keeps a second daemon off stateDir when HA is off: it takes an
// exclusive, non-blocking flock(2) on <stateDir>/tandem.lock and writes this
// process's PID and host into it. The kernel drops the lock when the process
// dies, however it dies, so a stale file never blocks a restart. release
// unlocks; the file itself is left in place, because removing it would let
// a third process lock a new file while a second still holds the old one.
//
// The lock is advisory and local: it does not protect a state directory on
// a network filesystem shared by two hosts. Use ha: {etcd: [...]} for that.
func Lock(stateDir string) (release func() error, err error) {
	if err := os.MkdirAll(stateDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating state directory %s: %w", stateDir, err)
	}
	path := filepath.Join(stateDir, LockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, fmt.Errorf("opening lock file %s: %w", path, err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		defer f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("state directory %s is in use by another tandem daemon%s: stop it, or give this one another stateDir",
				stateDir, describeHolder(f))
		}
		return nil, fmt.Errorf("locking %s: %w", path, err)
	}
	host, _ := os.Hostname()
	data, _ := json.Marshal(holder{PID: os.Getpid(), Host: host, Started: time.Now().UTC().Truncate(time.Second)})
	if err := writeHolder(f, append(data, '\n')); err != nil {
		f.Close() // closing drops the lock
		return nil, fmt.Errorf("writing lock file %s: %w", path, err)
	}
	return func() error {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		return errors.Join(err, f.Close())
	}, nil
}

func writeHolder(f *os.File, data []byte) error {
	if err := f.Truncate(0); err != nil {
		return err
	}
	_, err := f.WriteAt(data, 0)
	return err
}

// describeHolder reads who holds the lock, for the error message. The
// holder may be writing the file at this moment; then it says nothing.
func describeHolder(f *os.File) string {
	data := make([]byte, 512)
	n, _ := f.ReadAt(data, 0)
	var h holder
	if err := json.Unmarshal(data[:n], &h); err != nil || h.PID <= 0 {
		return ""
	}
	return fmt.Sprintf(" (pid %d on host %q since %s)", h.PID, h.Host, h.Started.Format(time.RFC3339))
}
