// Package server is Tandem's HTTP face: health and readiness probes,
// Prometheus metrics, the JSON status and events API, the actions an
// operator may take (sync, suspend, promote and abort a release paused for
// approval), the signed approval links of chat messages, the Git webhook,
// and the embedded dashboard, which follows the daemon live over
// Server-Sent Events.
//
// Reads are open unless a read token is configured; then the API's GETs,
// the stream and the dashboard need it (or the write token, or the session
// cookie the dashboard's login form sets). Mutating endpoints (POST)
// require `Authorization: Bearer <token>` when a token is configured (an
// approval link's POST its signature instead), and refuse cross-origin
// browser requests in any case. Requests naming a host
// that is not allowed are refused (DNS rebinding), streams are limited in
// number, and every answer is redacted. docs/security.md has the
// policy, docs/api.md the JSON shapes.
package server

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemhq/tandem/events"
	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// StatusSource gives the last status of every service (the reconciler).
type StatusSource interface {
	Statuses() []reconcile.Status // by service name
	Status(name string) (reconcile.Status, bool)
}

// Actions are what an operator may ask of the daemon.
type Actions interface {
	// Sync asks for a pass now; with retry, a failed release is cleared and
	// tried again.
	Sync(ctx context.Context, service string, retry bool) error
	// Suspend stops (true) or resumes (false) acting on a service.
	Suspend(ctx context.Context, service string, suspend bool) error
	// Promote and Abort end the pause of a service's release at its
	// approval gate (gates.approval) or at a manual rollout step (pause:
	// manual): transition names the paused transition ("" for whichever is
	// paused), step the pause (0 the gate, n rollout step n,
	// reconcile.AnyPause whichever is open), by who asked, for the audit
	// trail. They return ErrNotPaused (wrapped) when nothing, or another
	// transition or pause, is paused.
	Promote(ctx context.Context, service, transition string, step int, by string) error
	Abort(ctx context.Context, service, transition string, step int, by string) error
}

// ErrNotFound is what Actions return (wrapped) for a service that is not in
// the desired state; the API answers 404.
var ErrNotFound = errors.New("no such service in the desired state")

// ErrNotPaused is what Promote and Abort return (wrapped) when the service
// has no release paused for approval, or not the one named; the API
// answers 409.
var ErrNotPaused = errors.New("no release of this service is paused for approval")

// Options configure a Server. Status, Events and Actions are required.
type Options struct {
	Status  StatusSource
	Events  *events.Log
	Actions Actions
	// Registry is served at /metrics (nil: no /metrics). The caller owns it;
	// NewMetrics registers Tandem's metrics on it.
	Registry *prometheus.Registry
	// Token protects the mutating endpoints (empty: they are open). It is
	// read from the variable api.tokenEnv names. It grants reading too.
	Token spec.Secret
	// ReadToken, when set, protects the reads: the GETs under /api/v1/,
	// the stream and the dashboard (api.readTokenEnv).
	ReadToken spec.Secret
	// MetricsRequireToken puts /metrics behind the read token as well.
	MetricsRequireToken bool
	// AllowedHosts are the Host names served besides IP addresses and
	// localhost; "*" allows any (api.allowedHosts).
	AllowedHosts []string
	// MaxStreams bounds the event streams open at once (0:
	// DefaultMaxStreams).
	MaxStreams int
	// Redactor removes secrets from every JSON answer and stream message
	// (nil: only the credential patterns of package redact).
	Redactor *redact.Redactor
	// GitWebhook is mounted at POST /hooks/git when non-nil. It checks its
	// own signatures; the bearer token does not apply.
	GitWebhook http.Handler
	// Source is the desired-state source, shown as the services list's
	// `source` (nil: not shown).
	Source interface{ Current() gitsource.Status }
	// Links checks the signed promote/abort links of approval pauses (nil:
	// api.linkKeyEnv is not set, and links are not served).
	Links *approvallink.Signer
	// Ready reports whether the daemon is ready (nil: always).
	Ready func() error
	Log   *slog.Logger
}

// Server serves the API and the dashboard.
type Server struct {
	opts    Options
	log     *slog.Logger
	now     func() time.Time // for tests
	tokens  *tokens
	streams *streamSlots
	nonces  usedNonces
	// writeTimeout bounds each write of a stream (for tests).
	writeTimeout time.Duration

	stopOnce sync.Once
	stopping chan struct{} // closed when Serve shuts down: ends the streams
}

// New builds a Server. It panics when a required option is missing (a
// wiring mistake, not an input).
func New(opts Options) *Server {
	if opts.Status == nil || opts.Events == nil || opts.Actions == nil {
		panic("server.New: Options.Status, Options.Events and Options.Actions are required")
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	maxStreams := opts.MaxStreams
	if maxStreams <= 0 {
		maxStreams = DefaultMaxStreams
	}
	return &Server{opts: opts, log: log, now: time.Now, stopping: make(chan struct{}),
		tokens: newTokens(opts), streams: &streamSlots{max: int64(maxStreams)}, writeTimeout: writeTimeout}
}

// Handler returns the routes:
//
//	GET  /healthz, /readyz, /metrics
//	GET  /api/v1/services, /api/v1/services/{name}, /api/v1/events, /api/v1/stream
//	POST /api/v1/services/{name}/sync[?retry=true], /api/v1/services/{name}/suspend
//	POST /api/v1/services/{name}/promote, /api/v1/services/{name}/abort
//	GET, POST /approval/{name}/{action} (signed links; approval.go)
//	POST /hooks/git
//	GET  / (the dashboard) and /static/
//	POST /login (the dashboard's login form, with a read token)
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { writeText(w, http.StatusOK, "ok") })
	mux.HandleFunc("GET /readyz", s.readyz)
	if s.opts.Registry != nil {
		var metrics http.Handler = promhttp.HandlerFor(s.opts.Registry, promhttp.HandlerOpts{Registry: s.opts.Registry})
		if s.opts.MetricsRequireToken {
			metrics = s.readable(metrics, s.credentialed) // the read or the write token, whichever is set
		}
		mux.Handle("GET /metrics", metrics)
	}
	mux.Handle("GET /api/v1/services", s.readable(http.HandlerFunc(s.services), s.canRead))
	mux.Handle("GET /api/v1/services/{name}", s.readable(http.HandlerFunc(s.service), s.canRead))
	mux.Handle("GET /api/v1/events", s.readable(http.HandlerFunc(s.events), s.canRead))
	mux.Handle("GET /api/v1/stream", s.readable(s.limitStreams(s.stream), s.canRead))
	csrf := http.NewCrossOriginProtection()
	csrf.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusForbidden, errors.New("cross-origin request refused: use the API from a tool, not from another web page"))
	}))
	mux.Handle("POST /api/v1/services/{name}/sync", csrf.Handler(s.authorized(s.sync)))
	mux.Handle("POST /api/v1/services/{name}/suspend", csrf.Handler(s.authorized(s.suspend)))
	mux.Handle("POST /api/v1/services/{name}/promote", csrf.Handler(s.authorized(s.decision(spec.ApprovalPromote))))
	mux.Handle("POST /api/v1/services/{name}/abort", csrf.Handler(s.authorized(s.decision(spec.ApprovalAbort))))
	s.linkRoutes(mux, csrf)
	if s.opts.GitWebhook != nil {
		mux.Handle("POST /hooks/git", s.opts.GitWebhook)
	}
	dash := s.dashboardGate(dashboard())
	mux.Handle("GET /{$}", dash)
	mux.Handle("GET /static/", dash)
	if s.tokens.hasRead {
		mux.Handle("POST /login", csrf.Handler(http.HandlerFunc(s.login)))
	}
	return s.checkHost(mux)
}

// authorized requires the bearer token when one is configured. Both sides
// are hashed first, so that the comparison takes the same time whatever the
// length of the guess.
func (s *Server) authorized(h http.HandlerFunc) http.Handler {
	if s.opts.Token.Empty() {
		return h
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		token, ok := bearer(r)
		if !ok || !equal(sha256.Sum256([]byte(token)), s.tokens.write) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			writeError(w, http.StatusUnauthorized, errors.New("a bearer token is required (Authorization: Bearer <the token api.tokenEnv names>)"))
			return
		}
		h(w, r)
	})
}

// bearer returns the token of an Authorization header (the scheme is
// case-insensitive, RFC 7235 section 2.1).
func bearer(r *http.Request) (string, bool) {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	return token, ok && strings.EqualFold(scheme, "Bearer")
}

func (s *Server) readyz(w http.ResponseWriter, _ *http.Request) {
	if s.opts.Ready != nil {
		if err := s.opts.Ready(); err != nil {
			writeText(w, http.StatusServiceUnavailable, "not ready: "+err.Error())
			return
		}
	}
	writeText(w, http.StatusOK, "ok")
}

// shutdownTimeout bounds how long Serve waits for requests in progress.
const shutdownTimeout = 10 * time.Second

// Serve listens on addr and serves until ctx ends, then shuts down
// gracefully: streams end at once, other requests may finish (bounded).
func (s *Server) Serve(ctx context.Context, addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	return s.ServeListener(ctx, ln)
}

// ServeListener is Serve on a listener the caller opened (to know the
// address of port 0 before serving, for example).
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error {
	// No ReadTimeout or WriteTimeout: either would cut the event streams.
	// Bodies are bounded by size, stream writes by a deadline each.
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if s.opts.Token.Empty() {
		s.log.Warn("api.tokenEnv is not set: sync, suspend, promote and abort are open to anyone who reaches the address", "address", ln.Addr().String())
	}
	if s.opts.ReadToken.Empty() {
		s.log.Info("api.readTokenEnv is not set: status, events and the dashboard are open to anyone who reaches the address", "address", ln.Addr().String())
	}
	s.log.Info("serving the API and the dashboard", "address", ln.Addr().String())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serving on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	s.stopOnce.Do(func() { close(s.stopping) })
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	<-errc
	if err != nil {
		return fmt.Errorf("shutting down the server on %s: %w", ln.Addr(), err)
	}
	return nil
}
