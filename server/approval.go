package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// DecisionRequest is the optional body of POST
// /api/v1/services/{name}/promote and /abort.
type DecisionRequest struct {
	// Transition is the paused transition the caller decides on ("":
	// whichever is paused now); a decision for another one is refused.
	Transition string `json:"transition,omitempty"`
	// Step is the pause the caller decides on: 0 the approval gate, n the
	// manual pause of rollout step n (absent: whichever is open); a
	// decision for another one is refused.
	Step *int `json:"step,omitempty"`
	// By says who asks (e.g. "cli alice@host"), for the audit trail. The
	// server adds that the caller holds the API token and its address.
	By string `json:"by,omitempty"`
}

// maxByLen bounds what a caller may say about itself.
const maxByLen = 80

// decision serves POST /api/v1/services/{name}/promote and /abort.
func (s *Server) decision(action spec.ApprovalDecision) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		name := r.PathValue("name")
		var req DecisionRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxBody))
		dec.DisallowUnknownFields()
		err := dec.Decode(&req)
		if errors.Is(err, io.EOF) {
			err = nil // no body: whichever transition is paused, by an unnamed token holder
		} else if err == nil && dec.More() {
			err = errors.New("more than one JSON value")
		}
		if err == nil && req.Step != nil && *req.Step < 0 {
			err = fmt.Errorf(`field "step": 0 (the approval gate) or a rollout step from 1, got %d`, *req.Step)
		}
		if err == nil && (len(req.By) > maxByLen || strings.ContainsFunc(req.By, func(c rune) bool { return !unicode.IsPrint(c) })) {
			err = fmt.Errorf(`field "by": at most %d printable characters`, maxByLen)
		}
		if err != nil {
			writeError(w, http.StatusBadRequest, fmt.Errorf(`request body: want nothing or {"transition": "ID", "step": N, "by": "who"}: %w`, err))
			return
		}
		claim := req.By
		if claim == "" {
			claim = "api"
		}
		by := fmt.Sprintf("%s (API token holder from %s)", claim, remoteHost(r))
		step := reconcile.AnyPause
		if req.Step != nil {
			step = *req.Step
		}
		s.act(w, r, ActionResult{Service: name, Action: string(action), By: by}, func() error {
			if action == spec.ApprovalPromote {
				return s.opts.Actions.Promote(r.Context(), name, req.Transition, step, by)
			}
			return s.opts.Actions.Abort(r.Context(), name, req.Transition, step, by)
		})
	}
}

func remoteHost(r *http.Request) string {
	if h, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		return h
	}
	return r.RemoteAddr
}

// linkRoutes serves the signed links of the chat messages
// (internal/approvallink). Chat apps fetch the URLs they see to show a
// preview, so a GET only shows what the link would do and a button; the
// POST from that page acts. The signature, not the bearer token, protects
// the POST (whoever holds the link may use it once), and cross-origin
// browser POSTs are refused like on every other POST.
func (s *Server) linkRoutes(mux *http.ServeMux, csrf *http.CrossOriginProtection) {
	if s.opts.Links == nil {
		return
	}
	mux.HandleFunc("GET "+approvallink.PathPrefix+"{name}/{action}", s.linkPage)
	mux.Handle("POST "+approvallink.PathPrefix+"{name}/{action}", csrf.Handler(http.HandlerFunc(s.linkAct)))
}

// usedNonces are the link nonces this server accepted, until they expire.
// A decision made through a link ends the pause and is journaled with the
// nonce, so the nonce cannot decide anything again after a restart either;
// this set covers the moment before the service's pass journals it.
type usedNonces struct {
	mu   sync.Mutex
	seen map[string]time.Time // nonce -> its link's expiry
}

// take reports whether nonce was unused, and marks it used.
func (u *usedNonces) take(nonce string, expires, now time.Time) bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	for n, exp := range u.seen {
		if !now.Before(exp) {
			delete(u.seen, n)
		}
	}
	if _, ok := u.seen[nonce]; ok {
		return false
	}
	if u.seen == nil {
		u.seen = map[string]time.Time{}
	}
	u.seen[nonce] = expires
	return true
}

func (u *usedNonces) release(nonce string) {
	u.mu.Lock()
	defer u.mu.Unlock()
	delete(u.seen, nonce)
}

// linkView is what the link page shows.
type linkView struct {
	Service, Action, Transition, Expires string
	Pause                                string // "the approval gate" or "rollout step n"
	Problem                              string // why nothing can be done; "" shows the button
	Done                                 string // the outcome of the POST
	Form                                 url.Values
}

func (s *Server) linkPage(w http.ResponseWriter, r *http.Request) {
	l, err := s.opts.Links.Check(r.PathValue("name"), r.PathValue("action"), r.URL.Query(), s.now())
	v := linkView{Service: l.Service, Action: string(l.Action), Transition: l.Transition, Pause: reconcile.PauseName(l.Step), Form: r.URL.Query()}
	code := http.StatusOK
	switch {
	case err != nil:
		code, v.Problem = http.StatusForbidden, err.Error()
	case !s.paused(l.Service, l.Transition, l.Step):
		code, v.Problem = http.StatusConflict, fmt.Sprintf("transition %s of %s is not paused for approval any more at %s: someone decided, or the pause ended", l.Transition, l.Service, reconcile.PauseName(l.Step))
	default:
		v.Expires = l.Expires.UTC().Format(time.RFC3339)
	}
	s.linkAnswer(w, code, v)
}

func (s *Server) linkAct(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		s.linkAnswer(w, http.StatusBadRequest, linkView{Problem: "the form could not be read"})
		return
	}
	now := s.now()
	l, err := s.opts.Links.Check(r.PathValue("name"), r.PathValue("action"), r.PostForm, now)
	v := linkView{Service: l.Service, Action: string(l.Action), Transition: l.Transition, Pause: reconcile.PauseName(l.Step)}
	if err != nil {
		s.log.Warn("approval link refused", "target", l.Service, "action", l.Action, "error", err, "remote", r.RemoteAddr)
		v.Problem = err.Error()
		s.linkAnswer(w, http.StatusForbidden, v)
		return
	}
	if !s.nonces.take(l.Nonce, l.Expires, now) {
		s.log.Warn("approval link used again refused", "target", l.Service, "action", l.Action, "nonce", l.Nonce, "remote", r.RemoteAddr)
		v.Problem = "this link was already used"
		s.linkAnswer(w, http.StatusConflict, v)
		return
	}
	by := fmt.Sprintf("link (nonce %s, from %s)", l.Nonce, remoteHost(r))
	if l.Action == spec.ApprovalPromote {
		err = s.opts.Actions.Promote(r.Context(), l.Service, l.Transition, l.Step, by)
	} else {
		err = s.opts.Actions.Abort(r.Context(), l.Service, l.Transition, l.Step, by)
	}
	code := http.StatusAccepted
	switch {
	case errors.Is(err, ErrNotPaused), errors.Is(err, ErrNotFound):
		code, v.Problem = http.StatusConflict, err.Error()
	case err != nil:
		s.nonces.release(l.Nonce) // nothing was decided: the link may be tried again
		code, v.Problem = http.StatusServiceUnavailable, err.Error()
	default:
		v.Done = fmt.Sprintf("%s of transition %s accepted; it is journaled by the service's next pass (see the events of %s)", l.Action, l.Transition, l.Service)
	}
	s.log.Info("approval link used", "target", l.Service, "action", l.Action, "nonce", l.Nonce, "remote", r.RemoteAddr, "code", code, "error", err)
	s.linkAnswer(w, code, v)
}

// paused reports whether the status shows transition paused at step (0
// the approval gate, n rollout step n).
func (s *Server) paused(service, transition string, step int) bool {
	st, ok := s.opts.Status.Status(service)
	if !ok {
		return false
	}
	a, open := st.Transition.OpenPause()
	return a != nil && st.Transition.ID == transition && open == step
}

var linkTemplate = template.Must(template.New("link").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Tandem: {{.Action}} {{.Service}}</title></head>
<body>
<h1>Tandem approval</h1>
{{if .Service}}<p>Service <b id="service">{{.Service}}</b>, transition <code id="transition">{{.Transition}}</code>, paused at <span id="pause">{{.Pause}}</span></p>{{end}}
{{if .Done}}<p id="done" role="status">{{.Done}}</p>
{{else if .Problem}}<p id="problem" role="alert">Nothing was done: {{.Problem}}</p>
{{else}}<form method="post">
{{range $k, $vs := .Form}}{{range $vs}}<input type="hidden" name="{{$k}}" value="{{.}}">{{end}}{{end}}
<p>This link expires at {{.Expires}} and works once.</p>
<p><button id="confirm" type="submit">{{.Action}} the release of {{.Service}}</button></p>
</form>{{end}}
</body>
</html>
`))

func (s *Server) linkAnswer(w http.ResponseWriter, code int, v linkView) {
	writePage(w, code, linkTemplate, v) // no referrer: the page's URL carries the signature
}
