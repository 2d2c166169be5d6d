// Package loadgen is the traffic and checking library of the demo and the
// end-to-end tests: what users of a service would notice during a release.
//
// It sends a steady rate of POST requests to /echo, each with a unique body
// the answer must echo. POST without an Idempotency-Key is not idempotent,
// so Go's transport never retries it silently on a reused connection (it
// would for GET: net/http transport.go shouldRetryRequest): every failure
// the service causes is seen and counted.
//
// It also runs WebSocket clients on /ws, each sending numbered messages and
// checking that every echo arrives, in order. A client treats a close with
// 1000 Normal or 1001 Going Away as the server's orderly request to
// reconnect: it reconnects (through the load balancer, usually to another
// instance) and re-sends the messages not yet echoed, which the server
// discarded after its close frame (RFC 6455 §5.5.1) — what a well-behaved
// client of such a service does. Any other end of a connection (a close
// with another code, or the TCP connection lost without a close frame, -1)
// is abnormal: the messages not yet echoed are counted lost, and the client
// reconnects. Failed connection attempts are counted too.
//
// A run is bounded by Config.Duration and ends early with its context or
// Stop; requests and echoes still outstanding then get RequestTimeout to
// complete.
package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Config describes the traffic.
type Config struct {
	// URL is the service's base URL, http://host:port; requests go to
	// /echo and WebSockets to ws://host:port/ws.
	URL string
	// Rate is POST requests per second (0: none).
	Rate int
	// WebSockets is the number of WebSocket clients (0: none).
	WebSockets int
	// MessageInterval is the time between two messages of one WebSocket
	// client (default 50ms).
	MessageInterval time.Duration
	// Duration bounds the run; required.
	Duration time.Duration
	// RequestTimeout bounds every request, connection attempt and, at the
	// end, the wait for outstanding echoes (default 5s).
	RequestTimeout time.Duration
	// MaxInFlight bounds concurrent requests (default 512); a request that
	// would exceed it is not sent and counts as failed.
	MaxInFlight int
	// Bucket is the timeline's resolution (default 100ms).
	Bucket time.Duration
	Log    *slog.Logger
}

// Report is what the traffic saw.
type Report struct {
	Elapsed time.Duration `json:"elapsed"`

	Requests int `json:"requests"` // POSTs sent (or refused by MaxInFlight)
	Failed   int `json:"failed"`   // no answer, non-2xx or a wrong echo

	Clients    int `json:"clients"`    // WebSocket clients
	Connected  int `json:"connected"`  // clients connected at the time of the report
	Messages   int `json:"messages"`   // distinct messages sent
	Echoed     int `json:"echoed"`     // messages echoed
	Resent     int `json:"resent"`     // messages re-sent after a 1000/1001 close
	Lost       int `json:"lost"`       // messages never echoed: pending at an abnormal close or at the end
	OutOfOrder int `json:"outOfOrder"` // echoes other than the next expected message

	Closes       map[int]int `json:"closes"`       // connection ends by close code; -1: no close frame
	Abnormal     int         `json:"abnormal"`     // closes other than 1000/1001
	Reconnects   int         `json:"reconnects"`   // successful connections after a close
	DialFailures int         `json:"dialFailures"` // failed connection attempts

	Errors   []string `json:"errors,omitempty"` // the first few failures, in order
	Timeline []Point  `json:"timeline,omitempty"`
}

// Point counts what one backend (X-Backend, X-Version) answered during one
// timeline bucket; failures have no backend.
type Point struct {
	At       time.Duration `json:"at"` // start of the bucket since the run began
	Backend  string        `json:"backend"`
	Version  string        `json:"version"`
	Requests int           `json:"requests"` // requests answered correctly
	Failed   int           `json:"failed"`
	Echoed   int           `json:"echoed"` // WebSocket messages echoed
}

// Clean reports whether users noticed nothing: no failed request, no lost
// or misordered message, no abnormal close and no failed connection attempt.
func (r Report) Clean() bool {
	return r.Failed == 0 && r.Lost == 0 && r.OutOfOrder == 0 && r.Abnormal == 0 && r.DialFailures == 0
}

func (r Report) String() string {
	codes := make([]int, 0, len(r.Closes))
	for c := range r.Closes {
		codes = append(codes, c)
	}
	sort.Ints(codes)
	closes := make([]string, len(codes))
	for i, c := range codes {
		closes[i] = fmt.Sprintf("%d×%d", c, r.Closes[c])
	}
	s := fmt.Sprintf("%s: requests %d sent, %d failed; websockets %d clients, messages %d sent, %d echoed, %d re-sent, %d lost, %d out of order; closes [%s], %d abnormal, %d reconnects, %d failed connection attempts",
		r.Elapsed.Round(time.Millisecond), r.Requests, r.Failed, r.Clients, r.Messages, r.Echoed, r.Resent, r.Lost, r.OutOfOrder,
		strings.Join(closes, " "), r.Abnormal, r.Reconnects, r.DialFailures)
	if len(r.Errors) > 0 {
		s += "; first errors: " + strings.Join(r.Errors, "; ")
	}
	return s
}

// WriteTimelineCSV writes the timeline as CSV: seconds,backend,version,requests,failed,echoed.
func (r Report) WriteTimelineCSV(w io.Writer) error {
	if _, err := io.WriteString(w, "seconds,backend,version,requests,failed,echoed\n"); err != nil {
		return err
	}
	for _, p := range r.Timeline {
		if _, err := fmt.Fprintf(w, "%.1f,%s,%s,%d,%d,%d\n", p.At.Seconds(), p.Backend, p.Version, p.Requests, p.Failed, p.Echoed); err != nil {
			return err
		}
	}
	return nil
}

// maxErrors is how many failures a report quotes.
const maxErrors = 10

// Generator is a running load.
type Generator struct {
	cfg    Config
	echo   string
	ws     string
	client *http.Client
	log    *slog.Logger
	start  time.Time
	stop   context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	r        Report
	timeline map[pointKey]*Point
}

type pointKey struct {
	bucket           int
	backend, version string
}

// Start validates cfg and starts the traffic.
func Start(ctx context.Context, cfg Config) (*Generator, error) {
	u, err := url.Parse(cfg.URL)
	switch {
	case err != nil || u.Scheme != "http" || u.Host == "":
		return nil, fmt.Errorf("loadgen: url must be http://host:port, got %q", cfg.URL)
	case cfg.Duration <= 0:
		return nil, errors.New("loadgen: duration must be positive")
	case cfg.Rate < 0 || cfg.WebSockets < 0:
		return nil, errors.New("loadgen: rate and websockets must not be negative")
	}
	setDefault(&cfg.MessageInterval, 50*time.Millisecond)
	setDefault(&cfg.RequestTimeout, 5*time.Second)
	setDefault(&cfg.MaxInFlight, 512)
	setDefault(&cfg.Bucket, 100*time.Millisecond)
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	g := &Generator{
		cfg:  cfg,
		echo: strings.TrimSuffix(cfg.URL, "/") + "/echo",
		ws:   "ws://" + u.Host + "/ws",
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: cfg.MaxInFlight,
			// Shorter than any server's or LB's keep-alive timeout, so the
			// client closes idle connections first and never races a
			// server closing one it is about to reuse.
			IdleConnTimeout:    10 * time.Second,
			DisableCompression: true,
		}},
		log:      cfg.Log,
		start:    time.Now(),
		done:     make(chan struct{}),
		timeline: map[pointKey]*Point{},
	}
	g.r.Clients = cfg.WebSockets
	g.r.Closes = map[int]int{}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Duration)
	g.stop = cancel
	var wg sync.WaitGroup
	if cfg.Rate > 0 {
		wg.Go(func() { g.posts(runCtx) })
	}
	for i := range cfg.WebSockets {
		c := &wsClient{g: g, id: i}
		wg.Go(func() { c.run(runCtx) })
	}
	go func() {
		wg.Wait()
		g.client.CloseIdleConnections()
		close(g.done)
	}()
	return g, nil
}

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Done is closed when the run has ended and everything outstanding was
// settled.
func (g *Generator) Done() <-chan struct{} { return g.done }

// Started is when the traffic started: a Point's At counts from it.
func (g *Generator) Started() time.Time { return g.start }

// Snapshot reports the counts so far.
func (g *Generator) Snapshot() Report {
	g.mu.Lock()
	defer g.mu.Unlock()
	r := g.r
	r.Elapsed = time.Since(g.start)
	r.Closes = make(map[int]int, len(g.r.Closes))
	for c, n := range g.r.Closes {
		r.Closes[c] = n
	}
	r.Errors = append([]string(nil), g.r.Errors...)
	r.Timeline = make([]Point, 0, len(g.timeline))
	for _, p := range g.timeline {
		r.Timeline = append(r.Timeline, *p)
	}
	sort.Slice(r.Timeline, func(i, j int) bool {
		a, b := r.Timeline[i], r.Timeline[j]
		if a.At != b.At {
			return a.At < b.At
		}
		return a.Backend+a.Version < b.Backend+b.Version
	})
	return r
}

// Stop ends the run: no new request or message is sent, outstanding ones
// get RequestTimeout to be answered, WebSockets are closed with 1000. It
// returns the final report.
func (g *Generator) Stop() Report {
	g.stop()
	<-g.done
	return g.Snapshot()
}

// posts sends cfg.Rate POSTs per second until ctx ends.
func (g *Generator) posts(ctx context.Context) {
	tick := time.NewTicker(time.Second / time.Duration(g.cfg.Rate))
	defer tick.Stop()
	sem := make(chan struct{}, g.cfg.MaxInFlight)
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		select {
		case sem <- struct{}{}:
		default:
			g.requestDone("", "", fmt.Errorf("request %d not sent: %d requests in flight", n, g.cfg.MaxInFlight))
			continue
		}
		inFlight.Go(func() {
			defer func() { <-sem }()
			g.post(context.WithoutCancel(ctx), n)
		})
	}
}

// post sends one request whose body is unique and must come back.
func (g *Generator) post(ctx context.Context, n int) {
	ctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	body := "req-" + strconv.Itoa(n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.echo, strings.NewReader(body))
	if err != nil {
		g.requestDone("", "", err)
		return
	}
	req.Header.Set("Content-Type", "text/plain")
	resp, err := g.client.Do(req)
	if err != nil {
		g.requestDone("", "", fmt.Errorf("POST %s: %w", body, err))
		return
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	backend, version := resp.Header.Get("X-Backend"), resp.Header.Get("X-Version")
	switch {
	case err != nil:
		err = fmt.Errorf("POST %s: reading the answer: %w", body, err)
	case resp.StatusCode != http.StatusOK:
		err = fmt.Errorf("POST %s: %s from %q", body, resp.Status, backend)
	case string(got) != body:
		err = fmt.Errorf("POST %s: echo %q from %q", body, got, backend)
	}
	g.requestDone(backend, version, err)
}

func (g *Generator) requestDone(backend, version string, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.r.Requests++
	if err != nil {
		g.r.Failed++
		g.errorf(err)
		g.point("", "").Failed++
		return
	}
	g.point(backend, version).Requests++
}

// point returns the current timeline point of a backend; g.mu is held.
func (g *Generator) point(backend, version string) *Point {
	k := pointKey{int(time.Since(g.start) / g.cfg.Bucket), backend, version}
	p := g.timeline[k]
	if p == nil {
		p = &Point{At: time.Duration(k.bucket) * g.cfg.Bucket, Backend: backend, Version: version}
		g.timeline[k] = p
	}
	return p
}

// errorf keeps the first failures; g.mu is held.
func (g *Generator) errorf(err error) {
	if len(g.r.Errors) < maxErrors {
		g.r.Errors = append(g.r.Errors, fmt.Sprintf("%.3fs %v", time.Since(g.start).Seconds(), err))
	}
	g.log.Debug("loadgen failure", "err", err)
}
