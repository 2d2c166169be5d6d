// Package demoapp is the demo application of Tandem's demo fleet and
// end-to-end tests: an HTTP and WebSocket echo service that reports its
// version, health, in-flight work and open WebSockets, closes WebSockets
// with 1001 Going Away when asked to drain, and shuts down gracefully.
//
// Endpoints:
//
//	POST|GET /echo     echoes the request body; ?delay=300ms holds the request (at most 30s)
//	GET      /ws       WebSocket echo of every message, in order
//	GET      /version  {"version": ..., "name": ..., "group": ...}
//	GET      /healthz  200 "ok"; 503 once shutdown has begun (see Options.ShutdownDelay)
//	                   or after SetHealthy(false)
//	GET      /metrics  Prometheus text: tandem_demo_inflight_requests,
//	                   tandem_demo_websockets_open, tandem_demo_requests_total,
//	                   tandem_demo_http_requests_total{route,code,version,group} and
//	                   tandem_demo_http_request_duration_seconds{route,version,group}
//	                   (every HTTP route but /metrics and /ws; Prometheus adds instance)
//	POST     /drain    closes every open WebSocket with 1001 after a random
//	                   delay in [0, DrainJitter); new upgrades are still accepted
//
// Every response carries X-Backend (the instance name), X-Version and X-Group.
// Options.Faults make a version answer a route with an error status or
// slowly while /healthz stays green (Fleet.SetFault, the command's --fault).
package demoapp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tandemhq/tandem/spec"
)

// Metric names the app exports; providers/probe reads the first two as
// drain evidence.
const (
	MetricInFlight   = "tandem_demo_inflight_requests"
	MetricWebSockets = "tandem_demo_websockets_open"
	MetricRequests   = "tandem_demo_requests_total"
	// For metric analysis: responses by route and status code, and their
	// latency, labelled with the app's version and group.
	MetricHTTPRequests = "tandem_demo_http_requests_total"
	MetricHTTPDuration = "tandem_demo_http_request_duration_seconds"
)

// Options configures one instance.
type Options struct {
	Name    string // instance name, sent as X-Backend
	Version string
	Group   string
	// Listener to serve on; when nil the app listens on Listen (host:port).
	Listener net.Listener
	Listen   string
	// DrainJitter bounds the random delay before each WebSocket is closed
	// on POST /drain (default 500ms), so that clients do not all reconnect
	// at once.
	DrainJitter time.Duration
	// ShutdownDelay is how long the app keeps serving with /healthz at 503
	// before it stops accepting, so that load balancers' health checks take
	// it out first (default 0: stop accepting at once).
	ShutdownDelay time.Duration
	// ShutdownTimeout bounds the graceful shutdown after ShutdownDelay
	// (default 10s); what is left then is closed abruptly.
	ShutdownTimeout time.Duration
	// Register, when set, registers the app in a service registry (e.g.
	// Nacos through providers/nacos/nacosapp). Start calls it once the
	// listener is bound, before serving; the function it returns
	// deregisters the app and runs first when the app stops, as Spring
	// Cloud applications deregister at shutdown.
	Register func(ctx context.Context, a *App) (deregister func(), err error)
	// Faults make some versions misbehave while /healthz stays green (a
	// release that only smoke tests or metric analysis can catch), keyed by
	// version: an instance restarted at another version by Fleet.Restart
	// keeps the map.
	Faults map[string]Fault
	Log    *slog.Logger
}

// Fault is how one version misbehaves on one route.
type Fault struct {
	Path   string        // the route, e.g. /echo (default)
	Status int           // answer this status (e.g. 500) instead of serving; 0: serve
	Delay  time.Duration // hold every request this long first
}

// App is a running instance.
type App struct {
	opts    Options
	addr    *net.TCPAddr
	log     *slog.Logger
	cancel  context.CancelFunc
	stopped chan struct{}
	err     error
	// deregister undoes Options.Register (nil without it).
	deregister func()

	shuttingDown atomic.Bool
	failHealth   atomic.Bool // SetHealthy(false)
	sockets      sockets
	// connCtx bounds WebSocket I/O and drain timers; it ends only when the
	// shutdown gives up waiting.
	connCtx    context.Context
	cancelConn context.CancelFunc

	inFlight   prometheus.Gauge
	webSockets prometheus.Gauge
	requests   *prometheus.CounterVec
	httpReqs   *prometheus.CounterVec
	httpTime   *prometheus.HistogramVec
	registry   *prometheus.Registry
}

// Start listens and serves in the background until ctx ends or Stop is
// called; the listening address is bound when it returns.
func Start(ctx context.Context, o Options) (*App, error) {
	if o.DrainJitter <= 0 {
		o.DrainJitter = 500 * time.Millisecond
	}
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
	ln := o.Listener
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", o.Listen); err != nil {
			return nil, fmt.Errorf("demo app %s: %w", o.Name, err)
		}
	}
	a := &App{
		opts:    o,
		addr:    ln.Addr().(*net.TCPAddr),
		log:     o.Log.With("instance", o.Name, "version", o.Version, "group", o.Group),
		stopped: make(chan struct{}),
		sockets: sockets{conns: map[*websocket.Conn]struct{}{}},
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricInFlight, Help: "HTTP requests being served (WebSockets excluded).",
		}),
		webSockets: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: MetricWebSockets, Help: "Open WebSocket connections.",
		}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: MetricRequests, Help: "Echo requests and WebSocket upgrades served.",
		}, []string{"handler"}),
		registry: prometheus.NewRegistry(),
	}
	a.registry.MustRegister(a.inFlight, a.webSockets, a.requests)
	a.httpReqs = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: MetricHTTPRequests, Help: "HTTP responses by route and status code.",
	}, []string{"route", "code"})
	a.httpTime = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: MetricHTTPDuration, Help: "Time to answer HTTP requests, by route.",
		Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
	}, []string{"route"})
	prometheus.WrapRegistererWith(prometheus.Labels{"version": o.Version, "group": o.Group}, a.registry).
		MustRegister(a.httpReqs, a.httpTime)
	if o.Register != nil {
		// Connections wait in the listen backlog meanwhile.
		dereg, err := o.Register(ctx, a)
		if err != nil {
			_ = ln.Close()
			return nil, fmt.Errorf("demo app %s: registering: %w", o.Name, err)
		}
		a.deregister = dereg
	}
	a.connCtx, a.cancelConn = context.WithCancel(context.WithoutCancel(ctx))
	ctx, a.cancel = context.WithCancel(ctx)
	go func() {
		defer close(a.stopped)
		a.err = a.serve(ctx, ln)
	}()
	return a, nil
}

// Run serves until ctx ends, then shuts down gracefully (see Stop).
func Run(ctx context.Context, o Options) error {
	a, err := Start(ctx, o)
	if err != nil {
		return err
	}
	select {
	case <-ctx.Done():
	case <-a.Done():
	}
	return a.Stop()
}

// Addr is the address the app listens on.
func (a *App) Addr() string { return a.addr.String() }

// Version is the version the app runs.
func (a *App) Version() string { return a.opts.Version }

// Instance describes the app as an instance of the desired state: its
// listening IP and port, and its name as the id (the HAProxy server name of
// the demo fleet).
func (a *App) Instance() spec.Instance {
	return spec.Instance{IP: a.addr.IP.String(), Port: a.addr.Port, ID: a.opts.Name}
}

// Done is closed when the app has stopped: after Stop, when its context
// ended, or when serving failed (Stop then returns the error).
func (a *App) Done() <-chan struct{} { return a.stopped }

// Stop shuts the app down gracefully and waits: /healthz turns 503 (for
// ShutdownDelay the app keeps serving), the listener closes, every
// WebSocket is closed with 1001 Going Away, and Stop
// returns once in-flight requests and WebSocket handlers have finished (or
// ShutdownTimeout passed, when the rest is closed abruptly and reported).
func (a *App) Stop() error {
	a.cancel()
	<-a.stopped
	return a.err
}

func (a *App) serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           a.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		// Longer than any load balancer's idle keep-alive towards us, so
		// the LB, not the app, closes idle connections (no reuse race).
		IdleTimeout: 2 * time.Minute,
	}
	deregister := func() {
		if a.deregister != nil {
			a.deregister()
		}
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	a.log.Info("demo app serving", "addr", a.Addr())
	select {
	case err := <-served:
		deregister()
		a.cancelConn()
		a.sockets.closeAll(websocket.StatusInternalError)
		a.sockets.wg.Wait()
		return fmt.Errorf("demo app %s: serving %s: %w", a.opts.Name, a.Addr(), err)
	case <-ctx.Done():
	}

	deregister()
	a.shuttingDown.Store(true)
	if a.opts.ShutdownDelay > 0 {
		a.log.Info("demo app failing health checks before shutdown", "delay", a.opts.ShutdownDelay)
		time.Sleep(a.opts.ShutdownDelay)
	}
	sctx, cancel := context.WithTimeout(context.Background(), a.opts.ShutdownTimeout)
	defer cancel()
	// http.Server.Shutdown does not wait for hijacked connections: the
	// WebSocket handlers are counted in sockets.wg instead.
	closed := make(chan struct{})
	go func() {
		a.sockets.closeAll(websocket.StatusGoingAway)
		close(closed)
	}()
	err := srv.Shutdown(sctx)
	handlers := make(chan struct{})
	go func() {
		a.sockets.wg.Wait()
		close(handlers)
	}()
	select {
	case <-handlers:
	case <-sctx.Done():
		err = errors.Join(err, fmt.Errorf("websockets still open after %s", a.opts.ShutdownTimeout))
	}
	a.cancelConn() // ends whatever is left
	_ = srv.Close()
	<-handlers
	<-closed
	<-served
	if err != nil {
		a.log.Warn("demo app shutdown cut short", "err", err)
		return fmt.Errorf("demo app %s: shutting down: %w", a.opts.Name, err)
	}
	a.log.Info("demo app stopped")
	return nil
}

func (a *App) routes() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/echo", a.instrument("/echo", a.echo))
	mux.HandleFunc("GET /ws", a.ws)
	mux.Handle("GET /version", a.instrument("/version", a.version))
	mux.Handle("GET /healthz", a.instrument("/healthz", a.healthz))
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.registry, promhttp.HandlerOpts{}))
	mux.Handle("POST /drain", a.instrument("/drain", a.drain))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", a.opts.Name)
		w.Header().Set("X-Version", a.opts.Version)
		w.Header().Set("X-Group", a.opts.Group)
		mux.ServeHTTP(w, r)
	})
}

const maxEchoBody = 1 << 20

func (a *App) echo(w http.ResponseWriter, r *http.Request) {
	a.inFlight.Inc()
	defer a.inFlight.Dec()
	a.requests.WithLabelValues("echo").Inc()
	if r.Method != http.MethodGet && r.Method != http.MethodPost {
		http.Error(w, "use GET or POST", http.StatusMethodNotAllowed)
		return
	}
	if d := r.URL.Query().Get("delay"); d != "" {
		delay, err := time.ParseDuration(d)
		if err != nil || delay < 0 || delay > 30*time.Second {
			http.Error(w, "delay must be a duration between 0 and 30s", http.StatusBadRequest)
			return
		}
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-r.Context().Done():
			return
		}
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxEchoBody))
	if err != nil {
		http.Error(w, "reading body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if ct := r.Header.Get("Content-Type"); ct != "" {
		w.Header().Set("Content-Type", ct)
	}
	_, _ = w.Write(body)
}

func (a *App) ws(w http.ResponseWriter, r *http.Request) {
	drains, ok := a.sockets.enter()
	if !ok {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	defer a.sockets.wg.Done()
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return // Accept has answered the client
	}
	defer c.CloseNow()
	ok, missed := a.sockets.add(c, drains)
	if !ok {
		_ = c.Close(websocket.StatusGoingAway, "shutting down")
		return
	}
	defer a.sockets.remove(c)
	if missed { // a drain signal came while this connection was being set up
		a.closeLater(c)
	}
	a.requests.WithLabelValues("ws").Inc()
	a.webSockets.Inc()
	defer a.webSockets.Dec()
	for {
		typ, msg, err := c.Read(a.connCtx)
		if err != nil {
			return
		}
		if err := c.Write(a.connCtx, typ, msg); err != nil {
			return
		}
	}
}

func (a *App) version(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": a.opts.Version, "name": a.opts.Name, "group": a.opts.Group})
}

// SetHealthy(false) makes /healthz answer 503 while the app goes on
// serving everything else, as an app whose dependency failed does;
// SetHealthy(true) undoes it.
func (a *App) SetHealthy(healthy bool) { a.failHealth.Store(!healthy) }

// Healthy reports what /healthz answers: false once shutdown has begun or
// after SetHealthy(false).
func (a *App) Healthy() bool { return !a.shuttingDown.Load() && !a.failHealth.Load() }

func (a *App) healthz(w http.ResponseWriter, _ *http.Request) {
	if a.shuttingDown.Load() {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if a.failHealth.Load() {
		http.Error(w, "unhealthy (set by the operator)", http.StatusServiceUnavailable)
		return
	}
	_, _ = io.WriteString(w, "ok\n")
}

// drain closes every open WebSocket with 1001 Going Away, each after a
// random delay below DrainJitter, so that clients reconnect through the
// load balancer (to the new group) without arriving all at once. Upgrades
// under way when the signal comes are closed too (see ws); later ones are
// kept.
func (a *App) drain(w http.ResponseWriter, _ *http.Request) {
	conns := a.sockets.drain()
	for _, c := range conns {
		a.closeLater(c)
	}
	a.log.Info("demo app draining", "websockets", len(conns))
	writeJSON(w, http.StatusAccepted, map[string]int{"closing": len(conns)})
}

// closeLater closes c with 1001 after a random delay below DrainJitter.
// During a shutdown it does nothing: closeAll takes over.
func (a *App) closeLater(c *websocket.Conn) {
	if _, ok := a.sockets.enter(); !ok {
		return
	}
	delay := rand.N(a.opts.DrainJitter)
	go func() {
		defer a.sockets.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
			_ = c.Close(websocket.StatusGoingAway, "draining")
		case <-a.connCtx.Done():
		}
	}()
}

// sockets tracks WebSocket handlers and connections. wg counts handlers and
// drain timers; enter refuses new ones once closing began, so wg.Wait never
// races with wg.Add.
type sockets struct {
	mu      sync.Mutex
	conns   map[*websocket.Conn]struct{}
	closing bool
	drains  int // drain signals so far
	wg      sync.WaitGroup
}

// enter counts a handler or timer in wg. It returns the number of drain
// signals so far, and false once closing began.
func (s *sockets) enter() (int, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return 0, false
	}
	s.wg.Add(1)
	return s.drains, true
}

// add registers an accepted connection whose handler entered when drains
// signals had come. ok is false when shutdown has begun; missed is true
// when a drain signal came since (it did not list this connection).
func (s *sockets) add(c *websocket.Conn, drains int) (ok, missed bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		return false, false
	}
	s.conns[c] = struct{}{}
	return true, s.drains != drains
}

func (s *sockets) remove(c *websocket.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.conns, c)
}

// drain counts a drain signal and returns the open connections.
func (s *sockets) drain() []*websocket.Conn {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.drains++
	out := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

// closeAll refuses new WebSockets and closes the open ones with code, in
// parallel (each close waits for the peer's close frame).
func (s *sockets) closeAll(code websocket.StatusCode) {
	s.mu.Lock()
	s.closing = true
	conns := make([]*websocket.Conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Go(func() { _ = c.Close(code, "shutting down") })
	}
	wg.Wait()
}

// instrument counts and times route's responses, and applies the fault of
// the app's version on it, if any.
func (a *App) instrument(route string, h http.HandlerFunc) http.Handler {
	f, faulty := a.opts.Faults[a.opts.Version]
	if faulty && f.Path == "" {
		f.Path = "/echo"
	}
	faulty = faulty && f.Path == route
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		if faulty && f.Delay > 0 && !sleep(r.Context(), f.Delay) {
			return // the client went away
		}
		if faulty && f.Status != 0 {
			http.Error(sw, fmt.Sprintf("fault injected for version %s", a.opts.Version), f.Status)
		} else {
			h(sw, r)
		}
		a.httpReqs.WithLabelValues(route, strconv.Itoa(sw.code)).Inc()
		a.httpTime.WithLabelValues(route).Observe(time.Since(start).Seconds())
	})
}

// sleep waits d unless ctx ends first; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *statusWriter) WriteHeader(code int) {
	if !w.wrote {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	w.wrote = true
	return w.ResponseWriter.Write(b)
}

// ParseFault parses VERSION=status:CODE[@PATH] or VERSION=delay:DURATION[@PATH]
// (the demoapp command's --fault).
func ParseFault(s string) (version string, f Fault, err error) {
	version, rest, ok := strings.Cut(s, "=")
	if !ok || version == "" {
		return "", Fault{}, fmt.Errorf("fault %q: want VERSION=status:CODE[@PATH] or VERSION=delay:DURATION[@PATH]", s)
	}
	rest, f.Path, _ = strings.Cut(rest, "@")
	kind, arg, _ := strings.Cut(rest, ":")
	switch kind {
	case "status":
		if f.Status, err = strconv.Atoi(arg); err != nil || f.Status < 100 || f.Status > 599 {
			return "", Fault{}, fmt.Errorf("fault %q: status must be an HTTP status code, got %q", s, arg)
		}
	case "delay":
		if f.Delay, err = time.ParseDuration(arg); err != nil || f.Delay <= 0 {
			return "", Fault{}, fmt.Errorf("fault %q: delay must be a positive duration, got %q", s, arg)
		}
	default:
		return "", Fault{}, fmt.Errorf("fault %q: want status:CODE or delay:DURATION after the version", s)
	}
	if f.Path != "" && !strings.HasPrefix(f.Path, "/") {
		return "", Fault{}, fmt.Errorf("fault %q: the path must start with /", s)
	}
	return version, f, nil
}
