package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
)

type frame struct{ event, data string }

type stream struct{ ch chan frame }

// openStream reads GET /api/v1/stream into frames until the test ends.
func openStream(t *testing.T, e *env) *stream {
	t.Helper()
	return openStreamAt(t, e.client, e.url)
}

func openStreamAt(t *testing.T, client *http.Client, base string) *stream {
	t.Helper()
	return openStreamCtx(t, context.Background(), client, base, nil)
}

// openStreamWith opens the stream with headers (a token, a cookie).
func openStreamWith(t *testing.T, client *http.Client, base string, header map[string]string) *stream {
	t.Helper()
	return openStreamCtx(t, context.Background(), client, base, header)
}

// openStreamCtx opens the stream until ctx or the test ends.
func openStreamCtx(t *testing.T, parent context.Context, client *http.Client, base string, header map[string]string) *stream {
	t.Helper()
	ctx, cancel := context.WithCancel(parent)
	req, err := http.NewRequestWithContext(ctx, "GET", base+"/api/v1/stream", nil)
	require.NoError(t, err)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	require.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	s := &stream{ch: make(chan frame)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer close(s.ch)
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(nil, 16<<20)
		var f frame
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "event: "):
				f.event = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				f.data = strings.TrimPrefix(line, "data: ")
			case line == "" && f.data != "":
				select {
				case s.ch <- f:
				case <-ctx.Done():
					return
				}
				f = frame{}
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
		<-done
	})
	return s
}

// next waits for the next frame (bounded: the server sends one at least
// every few seconds).
func (s *stream) next(t *testing.T) frame {
	t.Helper()
	select {
	case f, ok := <-s.ch:
		require.True(t, ok, "the stream ended")
		return f
	case <-time.After(20 * time.Second):
		t.Fatal("no message on the stream for 20s")
	}
	return frame{}
}

func TestStreamSendsEventsThenServicesThenWhatChanges(t *testing.T) {
	e := start(t, server.Options{})
	s := openStream(t, e)

	f := s.next(t)
	require.Equal(t, "events", f.event)
	var backlog server.EventList
	require.NoError(t, json.Unmarshal([]byte(f.data), &backlog))
	require.Equal(t, fixtureEvents(), backlog.Events)

	f = s.next(t)
	require.Equal(t, "services", f.event)
	var list server.ServiceList
	require.NoError(t, json.Unmarshal([]byte(f.data), &list))
	require.Equal(t, server.ServiceList{Time: t0, Services: fixtures()}, list)

	ev := reconcile.Event{Time: t0, Service: "user-service", Type: reconcile.EventNormal, Reason: reconcile.ReasonPhaseCompleted,
		Message: "phase drain completed", Phase: reconcile.PhaseDrain}
	e.events.Record(ev)
	f = s.next(t)
	require.Equal(t, "event", f.event)
	var got reconcile.Event
	require.NoError(t, json.Unmarshal([]byte(f.data), &got))
	require.Equal(t, ev, got)

	// One service changes: only its status is sent.
	changed := fixtures()
	changed[3].Transition.Phase, changed[3].Phase = reconcile.PhaseWatch, reconcile.PhaseWatch
	e.status.set(changed)
	c := s.nextChanges(t)
	require.Equal(t, server.ServiceChanges{Time: t0, Changed: []reconcile.Status{changed[3]}}, c, "only what changed")

	// A service goes away.
	e.status.set(changed[:3])
	c = s.nextChanges(t)
	require.Equal(t, server.ServiceChanges{Time: t0, Removed: []string{"user-service"}}, c)

	// Nothing changes: a heartbeat still comes, with nothing in it.
	f = s.next(t)
	require.Equal(t, "changes", f.event)
	require.JSONEq(t, `{"time": "2025-03-01T03:00:00Z"}`, f.data)

	// Most services change at once: the whole list instead.
	most := fixtures()[:3]
	for i := range most {
		most[i].Message = fmt.Sprintf("pass %d", i)
	}
	e.status.set(most)
	f = s.next(t)
	for f.event == "changes" && f.data == `{"time":"2025-03-01T03:00:00Z"}` { // heartbeats until the change is seen
		f = s.next(t)
	}
	require.Equal(t, "services", f.event, f.data)
	require.NoError(t, json.Unmarshal([]byte(f.data), &list))
	require.Equal(t, server.ServiceList{Time: t0, Services: most}, list)
}

// nextChanges returns the next `changes` message that carries a change,
// skipping heartbeats; any other message fails the test.
func (s *stream) nextChanges(t *testing.T) server.ServiceChanges {
	t.Helper()
	for {
		f := s.next(t)
		require.Equal(t, "changes", f.event, f.data)
		var c server.ServiceChanges
		require.NoError(t, json.Unmarshal([]byte(f.data), &c))
		if len(c.Changed) > 0 || len(c.Removed) > 0 {
			return c
		}
	}
}

func TestServeShutsDownGracefullyEndingStreams(t *testing.T) {
	log, err := events.Open(filepath.Join(t.TempDir(), "events.jsonl"), 10)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, log.Close()) })
	srv := server.New(server.Options{Status: &fakeStatus{list: fixtures()}, Events: log, Actions: &fakeActions{}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- srv.ServeListener(ctx, ln) }()

	client := &http.Client{}
	defer client.CloseIdleConnections()
	base := "http://" + ln.Addr().String()
	resp, err := client.Get(base + "/api/v1/stream")
	require.NoError(t, err)
	defer resp.Body.Close()
	r := bufio.NewReader(resp.Body)
	line, err := r.ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "retry: 2000\n", line)

	cancel()
	require.NoError(t, <-errc, "a stream in progress does not hold the shutdown")
	_, err = io.ReadAll(r)
	require.NoError(t, err, "the stream ended cleanly")
	_, err = client.Get(base + "/healthz")
	require.Error(t, err, "nothing listens any more")
}

func TestServeReportsAnAddressItCannotListenOn(t *testing.T) {
	log, err := events.Open(filepath.Join(t.TempDir(), "events.jsonl"), 10)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, log.Close()) })
	srv := server.New(server.Options{Status: &fakeStatus{}, Events: log, Actions: &fakeActions{}})
	err = srv.Serve(context.Background(), "127.0.0.1:not-a-port")
	require.ErrorContains(t, err, "listening on 127.0.0.1:not-a-port")
}
