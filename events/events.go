// Package events is Tandem's audit trail: every reconcile.Event, appended as
// one JSON line to a file in the state directory, with the most recent
// events kept in memory for the API and the dashboard, and pushed to live
// subscribers.
//
// The file is bounded: when the next line would take it over its maximum
// size, it is renamed to <path>.1 (replacing the previous one) and a new
// file is started. Reopening reads the newest events of both files back
// into memory.
package events

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
)

// DefaultMaxBytes bounds the file before it is rotated.
const DefaultMaxBytes = 10 << 20

// subscriberBuffer is how many events a subscriber may fall behind before it
// is dropped (its channel closed), so that a slow reader never blocks Record.
const subscriberBuffer = 256

// Log is the append-only audit log. It is safe for concurrent use.
type Log struct {
	path     string
	max      int
	maxBytes int64
	log      *slog.Logger
	redactor *redact.Redactor

	mu     sync.Mutex
	f      *os.File // nil after Close
	size   int64
	ring   []reconcile.Event                    // the last max events: a circular buffer
	next   int                                  // where the next event goes once the ring is full
	subs   map[chan reconcile.Event]func() bool // subscriber -> stop its context.AfterFunc
	failed bool                                 // the last write failed (logged once per failure streak)
}

var _ reconcile.Recorder = (*Log)(nil)

// Option tunes Open.
type Option func(*Log)

// WithLogger logs write failures (the audit file is never silently lost).
func WithLogger(log *slog.Logger) Option {
	return func(l *Log) {
		if log != nil {
			l.log = log
		}
	}
}

// WithRedactor removes the secrets r knows, and text that looks like a
// credential, from every event before it is written, kept or sent, and
// from the files read back at Open (rewritten when that changes them).
// Without it only the credential patterns of package redact apply.
func WithRedactor(r *redact.Redactor) Option { return func(l *Log) { l.redactor = r } }

// WithMaxBytes bounds the file (default DefaultMaxBytes).
func WithMaxBytes(n int64) Option { return func(l *Log) { l.maxBytes = n } }

// Open opens (or creates) the log at path, keeping the last max events in
// memory; a reopened log reads them back from the file and its rotation.
func Open(path string, max int, opts ...Option) (*Log, error) {
	if max < 1 {
		return nil, fmt.Errorf("opening events log %s: max must be at least 1, got %d", path, max)
	}
	l := &Log{path: path, max: max, maxBytes: DefaultMaxBytes, log: slog.New(slog.DiscardHandler),
		subs: map[chan reconcile.Event]func() bool{}}
	for _, o := range opts {
		o(l)
	}
	if l.maxBytes < 1 {
		return nil, fmt.Errorf("opening events log %s: max bytes must be positive, got %d", path, l.maxBytes)
	}
	for _, p := range []string{path + ".1", path} {
		if err := l.readBack(p); err != nil {
			return nil, err
		}
	}
	if err := l.openFile(); err != nil {
		return nil, err
	}
	return l, nil
}

// readBack appends the events of one file to the ring. Lines that do not
// decode (a line torn by a crash) are skipped. When redaction changes an
// event (a file written before the secret was known, or by an older
// version), the file is rewritten redacted, so that no secret stays on
// disk.
func (l *Log) readBack(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reading events log %s: %w", path, err)
	}
	defer f.Close()
	r := bufio.NewReader(f)
	skipped := 0
	var clean bytes.Buffer // the file redacted, as Record writes it
	redacted := false
	for {
		line, err := r.ReadBytes('\n')
		if len(bytes.TrimSpace(line)) > 0 {
			var e reconcile.Event
			if json.Unmarshal(line, &e) == nil {
				c := l.redactor.Event(e)
				redacted = redacted || c != e
				l.push(c)
				if b, err := json.Marshal(c); err == nil {
					clean.Write(append(b, '\n'))
				}
			} else {
				skipped++
			}
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading events log %s: %w", path, err)
		}
	}
	if skipped > 0 {
		l.log.Warn("skipped unreadable lines of the events log", "path", path, "lines", skipped)
	}
	if redacted {
		if err := replaceFile(path, clean.Bytes()); err != nil {
			return fmt.Errorf("rewriting events log %s redacted: %w", path, err)
		}
		l.log.Info("rewrote the events log without the secrets it held", "path", path)
	}
	return nil
}

// replaceFile replaces path with data at once (write, sync, rename).
func replaceFile(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o640)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
	}
	return err
}

// openFile opens the file for appending. A last line torn by a crash is
// ended, so that the next event starts on a line of its own.
func (l *Log) openFile() error {
	f, err := os.OpenFile(l.path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("opening events log %s: %w", l.path, err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("opening events log %s: %w", l.path, err)
	}
	l.f, l.size = f, st.Size()
	if l.size > 0 {
		last := make([]byte, 1)
		if _, err := f.ReadAt(last, l.size-1); err != nil && !errors.Is(err, io.EOF) {
			f.Close()
			return fmt.Errorf("opening events log %s: %w", l.path, err)
		}
		if last[0] != '\n' {
			if _, err := f.Write([]byte{'\n'}); err != nil {
				f.Close()
				return fmt.Errorf("opening events log %s: %w", l.path, err)
			}
			l.size++
		}
	}
	return nil
}

func (l *Log) push(e reconcile.Event) {
	if len(l.ring) < l.max {
		l.ring = append(l.ring, e)
		return
	}
	l.ring[l.next] = e
	l.next = (l.next + 1) % l.max
}

// at returns the i-th newest event in memory (0: the newest).
func (l *Log) at(i int) reconcile.Event {
	return l.ring[(l.next-1-i+2*len(l.ring))%len(l.ring)]
}

// Record appends e to the file and the memory, and sends it to every
// subscriber, redacted (a deploy's output may hold anything). An event
// without a time gets the current time. A failed write is logged; the
// event is still kept in memory and sent.
func (l *Log) Record(e reconcile.Event) {
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	e = l.redactor.Event(e)
	line, err := json.Marshal(e)
	if err != nil { // cannot happen: Event has only plain fields
		l.log.Error("encoding event", "target", e.Service, "error", err)
		return
	}
	line = append(line, '\n')
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return
	}
	err = l.write(line)
	switch {
	case err != nil && !l.failed:
		l.log.Error("writing the events log", "path", l.path, "target", e.Service, "error", err)
	case err == nil && l.failed:
		l.log.Info("writing the events log again", "path", l.path)
	}
	l.failed = err != nil
	l.push(e)
	for ch := range l.subs {
		select {
		case ch <- e:
		default: // fell behind: drop it, so that it reconnects and lists again
			l.unsubscribe(ch)
		}
	}
}

func (l *Log) write(line []byte) error {
	if l.failed { // a failed rotation may have left the file closed: open it again
		_ = l.f.Close()
		if err := l.openFile(); err != nil {
			return err
		}
	}
	var rotateErr error
	if l.size > 0 && l.size+int64(len(line)) > l.maxBytes {
		rotateErr = l.rotate() // on failure, the event still goes to the file we have
	}
	n, err := l.f.Write(line)
	l.size += int64(n)
	return errors.Join(rotateErr, err)
}

// rotate renames the file to <path>.1 and starts a new one.
func (l *Log) rotate() error {
	if err := l.f.Close(); err != nil {
		return fmt.Errorf("rotating events log %s: %w", l.path, err)
	}
	err := os.Rename(l.path, l.path+".1")
	if err != nil {
		err = fmt.Errorf("rotating events log %s: %w", l.path, err)
	}
	return errors.Join(err, l.openFile()) // after a failed rename: the same file again
}

// Filter selects events. The zero value selects every event in memory.
type Filter struct {
	Service string    // only this service ("" : all)
	Since   time.Time // only events at or after this time (zero: all)
	Limit   int       // at most this many, the newest (0: no limit)
}

func (f Filter) match(e reconcile.Event) bool {
	return (f.Service == "" || e.Service == f.Service) && !e.Time.Before(f.Since)
}

// List returns the events in memory that match f, oldest first.
func (l *Log) List(f Filter) []reconcile.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.list(f)
}

func (l *Log) list(f Filter) []reconcile.Event {
	out := []reconcile.Event{}
	for i := 0; i < len(l.ring) && (f.Limit <= 0 || len(out) < f.Limit); i++ {
		if e := l.at(i); f.match(e) {
			out = append(out, e)
		}
	}
	for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
		out[i], out[j] = out[j], out[i]
	}
	return out
}

// Subscribe returns a channel of the events recorded from now on. It is
// closed when ctx ends, when the log is closed, or when the subscriber
// falls more than a few hundred events behind (it should then list again).
func (l *Log) Subscribe(ctx context.Context) <-chan reconcile.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.subscribe(ctx)
}

// Follow lists the events that match f and subscribes to the later ones at
// the same instant, so that none is missed or seen twice. The subscription
// receives every service's events, as Subscribe's does.
func (l *Log) Follow(ctx context.Context, f Filter) ([]reconcile.Event, <-chan reconcile.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.list(f), l.subscribe(ctx)
}

func (l *Log) subscribe(ctx context.Context) chan reconcile.Event {
	ch := make(chan reconcile.Event, subscriberBuffer)
	if l.f == nil || ctx.Err() != nil {
		close(ch)
		return ch
	}
	l.subs[ch] = context.AfterFunc(ctx, func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if _, ok := l.subs[ch]; ok {
			l.unsubscribe(ch)
		}
	})
	return ch
}

// unsubscribe closes ch; l.mu is held.
func (l *Log) unsubscribe(ch chan reconcile.Event) {
	l.subs[ch]()
	delete(l.subs, ch)
	close(ch)
}

// Close closes the file and every subscription. Later events are dropped.
func (l *Log) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.f == nil {
		return nil
	}
	for ch := range l.subs {
		l.unsubscribe(ch)
	}
	err := l.f.Close()
	l.f = nil
	if err != nil {
		return fmt.Errorf("closing events log %s: %w", l.path, err)
	}
	return nil
}
