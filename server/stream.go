package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tandemhq/tandem/events"
)

// Stream timing: statuses are compared this often and sent when they
// changed, and sent anyway at the refresh interval (the dashboard uses it to
// tell a live connection from a stale one).
const (
	streamPoll    = time.Second
	streamRefresh = 5 * time.Second
	streamBacklog = 200 // events sent when a stream opens
	writeTimeout  = 10 * time.Second
)

// stream serves GET /api/v1/stream, Server-Sent Events:
//
//	event: events    data: EventList, the newest events, once at the start
//	event: services  data: ServiceList, at the start, on change and every few seconds
//	event: event     data: one reconcile.Event, as it is recorded
//
// The stream ends when the client goes, when the server shuts down, or when
// the client falls far behind the events (EventSource then reconnects and
// starts over).
func (s *Server) stream(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no") // no buffering in an nginx in front
	ctx := r.Context()
	past, evs := s.opts.Events.Follow(ctx, events.Filter{Limit: streamBacklog})
	sse := &sseWriter{w: w, rc: rc}
	sse.raw("retry: 2000\n\n")
	sse.send("events", EventList{Events: past})
	var last []byte
	var sent time.Time
	services := func() {
		list := s.serviceList()
		at := list.Time
		list.Time = time.Time{} // compared without it
		b, err := json.Marshal(list)
		if err != nil {
			sse.err = fmt.Errorf("encoding statuses: %w", err)
			return
		}
		if bytes.Equal(b, last) && time.Since(sent) < streamRefresh {
			return
		}
		last, sent = b, time.Now()
		list.Time = at
		sse.send("services", list)
	}
	services()
	tick := time.NewTicker(streamPoll)
	defer tick.Stop()
	for sse.err == nil {
		select {
		case <-ctx.Done():
			return
		case <-s.stopping:
			return
		case e, ok := <-evs:
			if !ok {
				return
			}
			sse.send("event", e)
			services()
		case <-tick.C:
			services()
		}
	}
	s.log.Debug("stream ended", "remote", r.RemoteAddr, "error", sse.err)
}

// sseWriter writes Server-Sent Events, each flushed, with a write deadline
// so that a stuck client cannot hold a handler forever. The first error
// sticks.
type sseWriter struct {
	w   http.ResponseWriter
	rc  *http.ResponseController
	err error
}

func (s *sseWriter) send(event string, v any) {
	b, err := json.Marshal(v) // one line: JSON has no raw newlines
	if err != nil {
		s.err = fmt.Errorf("encoding %s: %w", event, err)
		return
	}
	s.raw("event: " + event + "\ndata: " + string(b) + "\n\n")
}

func (s *sseWriter) raw(msg string) {
	if s.err != nil {
		return
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(writeTimeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
		return
	}
	if _, err := s.w.Write([]byte(msg)); err != nil {
		s.err = err
		return
	}
	s.err = s.rc.Flush()
}
