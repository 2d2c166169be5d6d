package events_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2025, 3, 1, 3, 0, 0, 0, time.UTC)

func ev(i int, service string) reconcile.Event {
	return reconcile.Event{Time: t0.Add(time.Duration(i) * time.Second), Service: service, Type: reconcile.EventNormal,
		Reason: reconcile.ReasonStepApplied, Message: fmt.Sprintf("step %d", i), Revision: "abc123", Phase: reconcile.PhaseShift,
		Duration: 1500 * time.Millisecond}
}

func open(t *testing.T, path string, max int, opts ...events.Option) *events.Log {
	t.Helper()
	l, err := events.Open(path, max, opts...)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, l.Close()) })
	return l
}

func messages(evs []reconcile.Event) []string {
	out := []string{}
	for _, e := range evs {
		out = append(out, e.Service+":"+e.Message)
	}
	return out
}

func TestListFiltersByServiceSinceAndLimitKeepingTheNewest(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "events.jsonl"), 100)
	for i := range 6 {
		l.Record(ev(i, []string{"gateway", "push"}[i%2]))
	}
	tests := []struct {
		name   string
		filter events.Filter
		want   []string
	}{
		{"zero filter lists everything oldest first", events.Filter{},
			[]string{"gateway:step 0", "push:step 1", "gateway:step 2", "push:step 3", "gateway:step 4", "push:step 5"}},
		{"service keeps only that service", events.Filter{Service: "push"}, []string{"push:step 1", "push:step 3", "push:step 5"}},
		{"since keeps events at or after the time", events.Filter{Since: t0.Add(4 * time.Second)}, []string{"gateway:step 4", "push:step 5"}},
		{"limit keeps the newest", events.Filter{Limit: 2}, []string{"gateway:step 4", "push:step 5"}},
		{"all three combine", events.Filter{Service: "gateway", Since: t0.Add(time.Second), Limit: 1}, []string{"gateway:step 4"}},
		{"unknown service lists nothing", events.Filter{Service: "nope"}, []string{}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, messages(l.List(tc.filter)))
		})
	}
}

func TestMemoryKeepsOnlyTheLastMax(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "events.jsonl"), 3)
	for i := range 7 {
		l.Record(ev(i, "gateway"))
	}
	require.Equal(t, []string{"gateway:step 4", "gateway:step 5", "gateway:step 6"}, messages(l.List(events.Filter{})))
}

func TestReopenReadsTheTailBackAndEqualEvents(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := events.Open(path, 10)
	require.NoError(t, err)
	var want []reconcile.Event
	for i := range 5 {
		e := ev(i, "gateway")
		want = append(want, e)
		l.Record(e)
	}
	require.NoError(t, l.Close())

	l2 := open(t, path, 3)
	require.Equal(t, want[2:], l2.List(events.Filter{}))
	l2.Record(ev(5, "push"))
	require.Equal(t, []string{"gateway:step 3", "gateway:step 4", "push:step 5"}, messages(l2.List(events.Filter{})))
}

func TestRotatesOnceAndReopenReadsBothFiles(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	line := len(mustLine(t, ev(0, "gateway")))
	// Room for three lines per file: the fourth rotates, the seventh rotates again.
	l, err := events.Open(path, 100, events.WithMaxBytes(int64(3*line)))
	require.NoError(t, err)
	for i := range 8 {
		l.Record(ev(i, "gateway"))
	}
	require.NoError(t, l.Close())

	require.Equal(t, []string{"step 3", "step 4", "step 5"}, fileMessages(t, path+".1"))
	require.Equal(t, []string{"step 6", "step 7"}, fileMessages(t, path))
	_, err = os.Stat(path + ".2")
	require.ErrorIs(t, err, os.ErrNotExist)

	l2 := open(t, path, 100)
	require.Equal(t, []string{"gateway:step 3", "gateway:step 4", "gateway:step 5", "gateway:step 6", "gateway:step 7"},
		messages(l2.List(events.Filter{})))
}

func TestTornLastLineIsSkippedAndTheNextEventStartsOnItsOwnLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	good := mustLine(t, ev(0, "gateway"))
	require.NoError(t, os.WriteFile(path, append(good, []byte(`{"time":"2025-03-01T03:00:01Z","serv`)...), 0o600))
	var logs bytes.Buffer
	l := open(t, path, 10, events.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.Equal(t, []string{"gateway:step 0"}, messages(l.List(events.Filter{})))
	require.Contains(t, logs.String(), "skipped unreadable lines")
	l.Record(ev(2, "push"))
	require.NoError(t, l.Close())

	l2 := open(t, path, 10)
	require.Equal(t, []string{"gateway:step 0", "push:step 2"}, messages(l2.List(events.Filter{})))
}

func TestOpenRefusesBadArguments(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name string
		path string
		max  int
		opts []events.Option
		want string
	}{
		{"max below one is refused", filepath.Join(dir, "a.jsonl"), 0, nil, "max must be at least 1, got 0"},
		{"non-positive max bytes is refused", filepath.Join(dir, "b.jsonl"), 10, []events.Option{events.WithMaxBytes(0)}, "max bytes must be positive"},
		{"a missing directory names the path", filepath.Join(dir, "missing", "c.jsonl"), 10, nil, "opening events log " + filepath.Join(dir, "missing", "c.jsonl")},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := events.Open(tc.path, tc.max, tc.opts...)
			require.ErrorContains(t, err, tc.want)
			_, statErr := os.Stat(tc.path)
			require.ErrorIs(t, statErr, os.ErrNotExist, "a refused open creates nothing")
		})
	}
}

func TestRecordStampsAnEventWithoutTime(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "events.jsonl"), 10)
	before := time.Now()
	l.Record(reconcile.Event{Service: "gateway", Reason: "Suspend"})
	got := l.List(events.Filter{})
	require.Len(t, got, 1)
	require.False(t, got[0].Time.Before(before))
}

func TestSubscribeReceivesLaterEventsAndClosesWhenContextEnds(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "events.jsonl"), 10)
	l.Record(ev(0, "gateway"))
	ctx, cancel := context.WithCancel(context.Background())
	ch := l.Subscribe(ctx)
	l.Record(ev(1, "push"))
	require.Equal(t, "step 1", (<-ch).Message)
	cancel()
	for range ch { // drains until closed
	}
}

func TestFollowListsAndSubscribesAtOneInstant(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "events.jsonl"), 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	const n = 200 // within the subscriber buffer: the reader may start late
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		<-start
		for i := range n {
			l.Record(ev(i, "gateway"))
		}
	})
	close(start)
	past, ch := l.Follow(ctx, events.Filter{})
	seen := messages(past)
	for len(seen) < n {
		seen = append(seen, "gateway:"+(<-ch).Message)
	}
	wg.Wait()
	want := make([]string, n)
	for i := range want {
		want[i] = fmt.Sprintf("gateway:step %d", i)
	}
	require.Equal(t, want, seen, "every event exactly once, in order")
}

func TestASubscriberThatFallsBehindIsDroppedAndRecordNeverBlocks(t *testing.T) {
	l := open(t, filepath.Join(t.TempDir(), "events.jsonl"), 10)
	ch := l.Subscribe(context.Background())
	for i := range 1000 {
		l.Record(ev(i, "gateway"))
	}
	n := 0
	for range ch {
		n++
	}
	require.Less(t, n, 1000, "the channel was closed once the subscriber fell behind")
}

func TestCloseEndsSubscriptionsAndLaterRecordsAreDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l, err := events.Open(path, 10)
	require.NoError(t, err)
	ch := l.Subscribe(context.Background())
	require.NoError(t, l.Close())
	_, ok := <-ch
	require.False(t, ok)
	l.Record(ev(1, "gateway"))
	require.Empty(t, fileMessages(t, path))
	_, ok = <-l.Subscribe(context.Background())
	require.False(t, ok, "a subscription after Close is closed at once")
	require.NoError(t, l.Close(), "closing twice is harmless")
}

func TestConcurrentRecordsAllReachTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	l := open(t, path, 10)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 50 {
				l.Record(ev(w*1000+i, "gateway"))
				l.List(events.Filter{Service: "gateway", Limit: 5})
			}
		})
	}
	wg.Wait()
	require.Len(t, fileMessages(t, path), 400)
}

func mustLine(t *testing.T, e reconcile.Event) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "one.jsonl")
	l, err := events.Open(path, 1)
	require.NoError(t, err)
	l.Record(e)
	require.NoError(t, l.Close())
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}

func fileMessages(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var out []string
	for line := range strings.SplitSeq(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		_, after, ok := strings.Cut(line, `"message":"`)
		require.True(t, ok, line)
		msg, _, _ := strings.Cut(after, `"`)
		out = append(out, msg)
	}
	return out
}

func TestAFailedRotationKeepsEveryEventAndIsLoggedOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "events.jsonl")
	line := len(mustLine(t, ev(0, "gateway")))
	var logs bytes.Buffer
	l := open(t, path, 100, events.WithMaxBytes(int64(2*line)), events.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	// A directory where the rotation goes makes the rename fail.
	require.NoError(t, os.MkdirAll(filepath.Join(path+".1", "blocker"), 0o755))
	for i := range 5 {
		l.Record(ev(i, "gateway"))
	}
	require.Equal(t, []string{"step 0", "step 1", "step 2", "step 3", "step 4"}, fileMessages(t, path), "nothing is lost")
	require.Equal(t, 1, strings.Count(logs.String(), "writing the events log"), logs.String())
	require.Contains(t, logs.String(), "rotating events log "+path)
	require.Len(t, l.List(events.Filter{}), 5)

	require.NoError(t, os.RemoveAll(path+".1"))
	l.Record(ev(5, "gateway"))
	require.Contains(t, logs.String(), "writing the events log again")
	require.Equal(t, []string{"step 0", "step 1", "step 2", "step 3", "step 4"}, fileMessages(t, path+".1"))
	require.Equal(t, []string{"step 5"}, fileMessages(t, path))
}

// BenchmarkRecord measures appending one event (file and memory) with a
// subscriber attached: go test -run - -bench Record ./events
func BenchmarkRecord(b *testing.B) {
	l, err := events.Open(filepath.Join(b.TempDir(), "events.jsonl"), 1000)
	require.NoError(b, err)
	defer l.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ch := l.Subscribe(ctx)
	go func() {
		for range ch {
		}
	}()
	e := ev(1, "user-service")
	b.ReportAllocs()
	for b.Loop() {
		l.Record(e)
	}
}

func TestEventsAreRedactedInTheFileTheMemoryAndTheStream(t *testing.T) {
	const planted = "planted-hook-secret-7Kd"
	path := filepath.Join(t.TempDir(), "events.jsonl")
	// An older file written before redaction holds the secret (and a line
	// torn by a crash).
	old, err := json.Marshal(reconcile.Event{Time: time.Now(), Service: "web", Message: "old " + planted})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, append(old, []byte("\n{\"time\":\"20")...), 0o600))
	l, err := events.Open(path, 10, events.WithRedactor(redact.New(planted)))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	sub := l.Subscribe(ctx)
	l.Record(reconcile.Event{Service: "web", Message: "deploy output:\n" + planted + "\npassword=hunter22", Subject: "release " + planted})
	got := <-sub
	require.Equal(t, "deploy output:\n<redacted>\npassword=<redacted>", got.Message)
	require.Equal(t, "release <redacted>", got.Subject)
	for _, e := range l.List(events.Filter{}) {
		require.NotContains(t, e.Message, planted)
	}
	require.NoError(t, l.Close())
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NotContains(t, string(data), planted, "the older line was rewritten when the log was opened")
	require.NotContains(t, string(data), "hunter22")
	require.Equal(t, 2, strings.Count(string(data), "\n"))
	require.Contains(t, string(data), `"message":"old \u003credacted\u003e"`)
}
