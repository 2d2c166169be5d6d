package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/reconcile"
)

// Stream timing: statuses are compared this often and what changed is
// sent; at the refresh interval a message goes out anyway (the dashboard
// uses it to tell a live connection from a stale one).
const (
	streamPoll    = time.Second
	streamRefresh = 5 * time.Second
	streamBacklog = 200              // events sent when a stream opens
	writeTimeout  = 10 * time.Second // default of Server.writeTimeout
)

// stream serves GET /api/v1/stream, Server-Sent Events:
//
//	event: events    data: EventList, the newest events, once at the start
//	event: services  data: ServiceList, at the start, and when most services changed at once
//	event: changes   data: ServiceChanges, what changed since (within a second), and every few seconds
//	event: event     data: one reconcile.Event, as it is recorded
//
// A dashboard over 1,000 services then receives the few statuses a
// transition changes, not megabytes each second.
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
	sse := &sseWriter{w: w, rc: rc, redact: s.opts.Redactor.Bytes, timeout: s.writeTimeout}
	sse.raw("retry: 2000\n\n")
	sse.send("events", EventList{Events: past})
	var (
		last     map[string][]byte // service -> its status as last sent; nil before the first list
		lastMeta []byte            // source and notReady as last sent
		sent     time.Time
	)
	services := func() {
		list := s.serviceList()
		cur := make(map[string][]byte, len(list.Services))
		all := make([]json.RawMessage, 0, len(list.Services))
		var changed []json.RawMessage
		for _, st := range list.Services {
			b, err := json.Marshal(st)
			if err != nil {
				sse.err = fmt.Errorf("encoding the status of %s: %w", st.Service, err)
				return
			}
			cur[st.Service], all = b, append(all, b)
			if !bytes.Equal(b, last[st.Service]) {
				changed = append(changed, b)
			}
		}
		var removed []string
		for name := range last {
			if _, ok := cur[name]; !ok {
				removed = append(removed, name)
			}
		}
		slices.Sort(removed)
		meta, err := json.Marshal(rawChanges{Source: list.Source, NotReady: list.NotReady})
		if err != nil {
			sse.err = fmt.Errorf("encoding the source status: %w", err)
			return
		}
		switch {
		case last == nil || len(changed)+len(removed) > len(cur)/2:
			sse.send("services", rawList{Time: list.Time, Source: list.Source, NotReady: list.NotReady, Services: all})
		case len(changed) > 0 || len(removed) > 0 || !bytes.Equal(meta, lastMeta) || time.Since(sent) >= streamRefresh:
			sse.send("changes", rawChanges{Time: list.Time, Source: list.Source, NotReady: list.NotReady, Changed: changed, Removed: removed})
		default:
			return
		}
		last, lastMeta, sent = cur, meta, time.Now()
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

// ServiceChanges is the `changes` message of the stream: the statuses that
// changed (or appeared) and the services that went away since the last
// message, with the list's time, source and notReady as in ServiceList.
// With nothing changed it is the stream's heartbeat.
type ServiceChanges struct {
	Time     time.Time          `json:"time,omitzero"`
	Source   *SourceStatus      `json:"source,omitempty"`
	NotReady string             `json:"notReady,omitempty"`
	Changed  []reconcile.Status `json:"changed,omitempty"`
	Removed  []string           `json:"removed,omitempty"` // service names
}

// rawList and rawChanges are ServiceList and ServiceChanges with statuses
// encoded once.
type rawList struct {
	Time     time.Time         `json:"time,omitzero"`
	Source   *SourceStatus     `json:"source,omitempty"`
	NotReady string            `json:"notReady,omitempty"`
	Services []json.RawMessage `json:"services"`
}

type rawChanges struct {
	Time     time.Time         `json:"time,omitzero"`
	Source   *SourceStatus     `json:"source,omitempty"`
	NotReady string            `json:"notReady,omitempty"`
	Changed  []json.RawMessage `json:"changed,omitempty"`
	Removed  []string          `json:"removed,omitempty"`
}

// sseWriter writes Server-Sent Events, each redacted and flushed, with a
// write deadline so that a stuck client cannot hold a handler (and the
// memory of its messages) for long. The first error sticks.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	redact  func([]byte) []byte // every message goes through it
	timeout time.Duration       // per write
	err     error
}

func (s *sseWriter) send(event string, v any) {
	b, err := json.Marshal(v) // one line: JSON has no raw newlines
	if err != nil {
		s.err = fmt.Errorf("encoding %s: %w", event, err)
		return
	}
	s.raw("event: " + event + "\ndata: " + string(s.redact(b)) + "\n\n")
}

func (s *sseWriter) raw(msg string) {
	if s.err != nil {
		return
	}
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		s.err = err
		return
	}
	if _, err := s.w.Write([]byte(msg)); err != nil {
		s.err = err
		return
	}
	s.err = s.rc.Flush()
}
