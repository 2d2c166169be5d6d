package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// ServiceList is the answer of GET /api/v1/services, and the `services`
// message of the stream.
type ServiceList struct {
	Time   time.Time     `json:"time,omitzero"` // when the list was taken, by the server's clock
	Source *SourceStatus `json:"source,omitempty"`
	// NotReady says why this daemon does not act or has no desired state
	// yet (what /readyz answers): under ha, a follower names the leader.
	// Its services list is then empty, not a fleet without services.
	NotReady string             `json:"notReady,omitempty"`
	Services []reconcile.Status `json:"services"`
}

// SourceStatus is the state of the desired-state source: the revision in
// force and whether fetching works.
type SourceStatus struct {
	Revision   string    `json:"revision,omitempty"`   // the good revision in force ("" before the first)
	Head       string    `json:"head,omitempty"`       // the newest fetched head when it is not in force
	Rejected   string    `json:"rejected,omitempty"`   // why that head is not in force
	LastFetch  time.Time `json:"lastFetch,omitzero"`   // when the last fetch attempt ended
	FetchError string    `json:"fetchError,omitempty"` // the last fetch failure; "" once a fetch succeeds
	Failures   int       `json:"failures,omitempty"`   // consecutive failed fetches
}

func sourceStatus(st gitsource.Status) *SourceStatus {
	out := &SourceStatus{LastFetch: st.LastFetch.UTC(), Failures: st.Failures}
	if st.Good != nil {
		out.Revision = st.Good.Hash
	}
	if st.Head != nil && st.Head != st.Good {
		out.Head = st.Head.Hash
	}
	if st.Rejected != nil {
		out.Rejected = st.Rejected.Error()
	}
	if st.FetchErr != nil {
		out.FetchError = st.FetchErr.Error()
	}
	return out
}

// EventList is the answer of GET /api/v1/events, and the `events` message
// of the stream.
type EventList struct {
	Events []reconcile.Event `json:"events"` // oldest first
}

// SuspendRequest is the body of POST /api/v1/services/{name}/suspend.
type SuspendRequest struct {
	Suspend *bool `json:"suspend"` // required
}

// ActionResult is the answer of an accepted action.
type ActionResult struct {
	Service string `json:"service"`
	Action  string `json:"action"` // sync, suspend, resume, promote or abort
	Retry   bool   `json:"retry,omitempty"`
	By      string `json:"by,omitempty"` // promote, abort: who, as the audit trail records it
}

// ErrorBody is the answer of a refused or failed request.
type ErrorBody struct {
	Error string `json:"error"`
}

func (s *Server) serviceList() ServiceList {
	list := s.opts.Status.Statuses()
	if list == nil {
		list = []reconcile.Status{}
	}
	out := ServiceList{Time: s.now().UTC(), Services: list}
	if s.opts.Source != nil {
		out.Source = sourceStatus(s.opts.Source.Current())
	}
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			out.NotReady = err.Error()
		}
	}
	return out
}

func (s *Server) services(w http.ResponseWriter, _ *http.Request) {
	s.writeRedacted(w, http.StatusOK, s.serviceList())
}

func (s *Server) service(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	st, ok := s.opts.Status.Status(name)
	if !ok {
		writeError(w, http.StatusNotFound, fmt.Errorf("service %q: %w", name, ErrNotFound))
		return
	}
	s.writeRedacted(w, http.StatusOK, st)
}

// maxEventsLimit bounds ?limit= (the memory holds fewer anyway).
const maxEventsLimit = 100000

func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	f, err := eventFilter(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err)
		return
	}
	s.writeRedacted(w, http.StatusOK, EventList{Events: s.opts.Events.List(f)})
}

// eventFilter reads ?service=NAME&since=RFC3339&limit=N.
func eventFilter(r *http.Request) (events.Filter, error) {
	q := r.URL.Query()
	f := events.Filter{Service: q.Get("service")}
	if v := q.Get("since"); v != "" {
		t, err := time.Parse(time.RFC3339Nano, v)
		if err != nil {
			return f, fmt.Errorf("query parameter since: want an RFC 3339 time such as 2025-03-01T03:00:00Z, got %q", v)
		}
		f.Since = t
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxEventsLimit {
			return f, fmt.Errorf("query parameter limit: want an integer from 1 to %d, got %q", maxEventsLimit, v)
		}
		f.Limit = n
	}
	return f, nil
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	retry := false
	if v := r.URL.Query().Get("retry"); v != "" {
		b, err := strconv.ParseBool(v)
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf("query parameter retry: want true or false, got %q", v))
			return
		}
		retry = b
	}
	s.act(w, r, ActionResult{Service: name, Action: "sync", Retry: retry}, func() error {
		return s.opts.Actions.Sync(r.Context(), name, retry)
	})
}

// maxBody bounds request bodies.
const maxBody = 4 << 10

func (s *Server) suspend(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	var req SuspendRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(&req)
	if err == nil && dec.More() {
		err = errors.New("more than one JSON value")
	}
	if err == nil && req.Suspend == nil {
		err = errors.New(`field "suspend" is missing`)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf(`request body: want {"suspend": true} or {"suspend": false}: %w`, err))
		return
	}
	action := "resume"
	if *req.Suspend {
		action = "suspend"
	}
	s.act(w, r, ActionResult{Service: name, Action: action}, func() error {
		return s.opts.Actions.Suspend(r.Context(), name, *req.Suspend)
	})
}

// act runs an action and answers 202 with res, 404 for an unknown service,
// or 500.
func (s *Server) act(w http.ResponseWriter, r *http.Request, res ActionResult, do func() error) {
	err := do()
	switch {
	case errors.Is(err, ErrNotFound):
		writeError(w, http.StatusNotFound, err)
	case errors.Is(err, ErrNotPaused):
		writeError(w, http.StatusConflict, err)
	case err != nil:
		s.log.Error("action failed", "target", res.Service, "action", res.Action, "error", err)
		writeError(w, http.StatusInternalServerError, err)
	default:
		s.log.Info("action accepted", "target", res.Service, "action", res.Action, "retry", res.Retry, "remote", r.RemoteAddr)
		writeJSON(w, http.StatusAccepted, res)
	}
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	writeJSONWith(w, code, v, func(b []byte) []byte { return b })
}

// writeRedacted is writeJSON for what the daemon reports (statuses,
// events): whatever secret made its way into a message, a deploy's output
// or an error text is removed from the answer.
func (s *Server) writeRedacted(w http.ResponseWriter, code int, v any) {
	writeJSONWith(w, code, v, s.opts.Redactor.Bytes)
}

func writeJSONWith(w http.ResponseWriter, code int, v any, redact func([]byte) []byte) {
	b, err := marshalIndent(v)
	if err != nil { // cannot happen: the types have only plain fields
		http.Error(w, "encoding the answer failed", http.StatusInternalServerError)
		return
	}
	b = redact(b)
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(b)
}

// marshalIndent is indented JSON for people reading it with curl: no HTML
// escapes (the answers are never HTML), a final newline.
func marshalIndent(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	err := enc.Encode(v)
	return b.Bytes(), err
}

func writeError(w http.ResponseWriter, code int, err error) {
	writeJSON(w, code, ErrorBody{Error: err.Error()})
}

func writeText(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = fmt.Fprintln(w, msg)
}
