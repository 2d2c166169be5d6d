package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/internal/backoff"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

// shutdownGrace bounds the last attempt at queued messages once Run's
// context has ended.
const shutdownGrace = 5 * time.Second

// defaultEvents are the reasons a sink is told about when its events list
// is empty: what a person on call wants to see, not every step.
var defaultEvents = []string{
	reconcile.ReasonTransitionStarted, reconcile.ReasonTransitionSucceeded, reconcile.ReasonTransitionAborted,
	reconcile.ReasonSwappedBack, reconcile.ReasonAbortStarted, reconcile.ReasonSwapBackStarted,
	reconcile.ReasonDriftDetected, reconcile.ReasonDriftResolved, reconcile.ReasonStalled, reconcile.ReasonStallResolved,
	reconcile.ReasonRevisionRejected, reconcile.ReasonDrainCeiling, reconcile.ReasonGitFetchFailed, reconcile.ReasonGitFetchRecovered,
	reconcile.ReasonApprovalPending, reconcile.ReasonPromoted, reconcile.ReasonAborted,
}

// knownReasons are every reason the engine emits; an events list may name
// only these. Keep in step with the constants in reconcile/event.go.
var knownReasons = append(slices.Clone(defaultEvents),
	reconcile.ReasonPhaseCompleted, reconcile.ReasonStepApplied, reconcile.ReasonStepFailed, reconcile.ReasonAdopted,
	reconcile.ReasonRetryRequested, reconcile.ReasonSuspended, reconcile.ReasonResumed, reconcile.ReasonApprovalRefused)

// Notifier sends events to the configured sinks. It is a reconcile.Recorder.
type Notifier struct {
	sinks    []*sink
	redactor *redact.Redactor
}

var _ reconcile.Recorder = (*Notifier)(nil)

type options struct {
	client   *http.Client
	reg      prometheus.Registerer
	dedupe   time.Duration
	attempts int
	backoff  backoff.Policy
	timeout  time.Duration
	queue    int
	redactor *redact.Redactor
	links    *approvallink.Signer
}

// Option changes a default of New.
type Option func(*options)

// WithHTTPClient sets the client for every request. The default client
// does not follow redirects: a signed message goes only where configured.
func WithHTTPClient(c *http.Client) Option { return func(o *options) { o.client = c } }

// WithRegisterer registers the counter tandem_notifications_total
// {notifier, result="sent"|"failed"|"dropped"} on r.
func WithRegisterer(r prometheus.Registerer) Option { return func(o *options) { o.reg = r } }

// WithDedupeWindow sets how long an event identical to one already sent is
// held back (default one minute; 0 turns deduplication off).
func WithDedupeWindow(d time.Duration) Option { return func(o *options) { o.dedupe = d } }

// WithRetry sets the attempts per message and the backoff between them
// (default 4 attempts, 1s doubling to at most 30s, with jitter).
func WithRetry(attempts int, b backoff.Policy) Option {
	return func(o *options) { o.attempts, o.backoff = attempts, b }
}

// WithRequestTimeout bounds each HTTP request (default 10s).
func WithRequestTimeout(d time.Duration) Option { return func(o *options) { o.timeout = d } }

// WithRedactor removes the secrets r knows, and text that looks like a
// credential, from every event before it is formatted for a sink. Without
// it only the credential patterns of package redact apply.
func WithRedactor(r *redact.Redactor) Option { return func(o *options) { o.redactor = r } }

// WithApprovalLinks adds signed promote and abort links to the messages
// that announce an approval pause (nil: the messages say that there are
// none, and why).
func WithApprovalLinks(s *approvallink.Signer) Option { return func(o *options) { o.links = s } }

// WithQueueSize bounds the messages waiting per sink (default 100); when
// full, the oldest is dropped.
func WithQueueSize(n int) Option { return func(o *options) { o.queue = n } }

// New checks the notifier configurations, reads their URLs and secrets from
// the environment and returns a Notifier. Errors name each bad notifier by
// its position and name, never show a URL or secret, and are joined so all
// problems are reported at once. Log may be nil.
func New(cfgs []spec.Notifier, log *slog.Logger, opts ...Option) (*Notifier, error) {
	o := options{
		client: &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}},
		dedupe:   time.Minute,
		attempts: 4,
		backoff:  backoff.Policy{Base: time.Second, Max: 30 * time.Second},
		timeout:  10 * time.Second,
		queue:    100,
	}
	for _, opt := range opts {
		opt(&o)
	}
	switch {
	case o.client == nil:
		return nil, errors.New("notify: the HTTP client must not be nil")
	case o.attempts < 1:
		return nil, fmt.Errorf("notify: attempts must be at least 1, got %d", o.attempts)
	case o.timeout <= 0:
		return nil, fmt.Errorf("notify: the request timeout must be positive, got %s", o.timeout)
	case o.queue < 1:
		return nil, fmt.Errorf("notify: the queue size must be at least 1, got %d", o.queue)
	case o.dedupe < 0:
		return nil, fmt.Errorf("notify: the dedupe window must not be negative, got %s", o.dedupe)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	counts := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tandem_notifications_total",
		Help: "Notifications per notifier and result: sent, failed (gave up after retries) or dropped (queue full, or undelivered at shutdown).",
	}, []string{"notifier", "result"})

	n := &Notifier{redactor: o.redactor}
	var errs []error
	names := map[string]bool{}
	for i, c := range cfgs {
		s, err := newSink(i, c, &o, log, counts)
		if err == nil && names[s.name] {
			err = fmt.Errorf("notify[%d].name: %q is used by another notifier", i, c.Name)
		}
		if err != nil {
			if c.Name != "" {
				err = fmt.Errorf("notifier %q: %w", c.Name, err)
			}
			errs = append(errs, err)
			continue
		}
		names[s.name] = true
		n.sinks = append(n.sinks, s)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if o.reg != nil {
		if err := o.reg.Register(counts); err != nil {
			return nil, fmt.Errorf("registering notification metrics: %w", err)
		}
	}
	return n, nil
}

// Record queues e, redacted, for every sink that wants it. It never blocks
// on the network.
func (n *Notifier) Record(e reconcile.Event) {
	if len(n.sinks) == 0 {
		return
	}
	e = n.redactor.Event(e)
	for _, s := range n.sinks {
		s.offer(e)
	}
}

// Run delivers queued messages until ctx ends, then makes one last attempt
// at what is still queued, within a short grace, and returns. Call it once.
func (n *Notifier) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for _, s := range n.sinks {
		wg.Go(func() { s.run(ctx) })
	}
	wg.Wait()
	<-ctx.Done() // with no sinks too, Run lasts as long as its context
}

// sink is one configured notifier: its vendor format, where it posts, its
// filter, its queue and its deduplication memory.
type sink struct {
	name   string // the notifier's name, or notify[i]: for logs and metrics
	vendor vendor
	url    url.URL
	where  string // the URL as it may be shown: no query, no token
	secret spec.Secret
	events map[string]bool

	client   *http.Client
	attempts int
	backoff  backoff.Policy
	timeout  time.Duration
	capacity int
	log      *slog.Logger
	links    *approvallink.Signer

	sent, failed, dropped prometheus.Counter

	wake  chan struct{}
	mu    sync.Mutex
	queue []reconcile.Event
	dedup deduper
}

func newSink(i int, c spec.Notifier, o *options, log *slog.Logger, counts *prometheus.CounterVec) (*sink, error) {
	base := fmt.Sprintf("notify[%d]", i)
	v, ok := vendors[c.Type]
	if !ok {
		return nil, fmt.Errorf("%s.type: must be one of %s, got %q", base, strings.Join(spec.NotifierTypes, ", "), c.Type)
	}
	var errs []error
	raw := c.URL
	switch {
	case c.URL == "" && c.URLEnv == "":
		errs = append(errs, fmt.Errorf("%s.url: set url or urlEnv", base))
	case c.URL != "" && c.URLEnv != "":
		errs = append(errs, fmt.Errorf("%s.url: set only one of url and urlEnv", base))
	case c.URLEnv != "":
		sec, err := spec.SecretFromEnv(base+".urlEnv", c.URLEnv)
		if err != nil {
			errs = append(errs, err)
		}
		raw = sec.Reveal()
	}
	var u *url.URL
	if raw != "" {
		// The parse error would quote the URL and its token: say only what is wrong.
		var err error
		u, err = url.Parse(raw)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			field := ".url"
			if c.URLEnv != "" {
				field = ".urlEnv"
			}
			errs = append(errs, fmt.Errorf("%s%s: must be an http or https URL with a host", base, field))
		}
	}
	var secret spec.Secret
	if c.SecretEnv != "" && !v.signs {
		errs = append(errs, fmt.Errorf("%s.secretEnv: %s messages are not signed (the URL carries the key); remove secretEnv", base, c.Type))
	} else if sec, err := spec.SecretFromEnv(base+".secretEnv", c.SecretEnv); err != nil {
		errs = append(errs, err)
	} else {
		secret = sec
	}
	events := map[string]bool{}
	for j, r := range c.Events {
		if !slices.Contains(knownReasons, r) {
			errs = append(errs, fmt.Errorf("%s.events[%d]: unknown reason %q; known: %s", base, j, r, strings.Join(knownReasons, ", ")))
		}
		events[r] = true
	}
	if len(c.Events) == 0 {
		for _, r := range defaultEvents {
			events[r] = true
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	name := c.Name
	if name == "" {
		name = base
	}
	return &sink{
		name: name, vendor: v, url: *u, where: redactURL(u, v.tokenInPath), secret: secret, events: events,
		client: o.client, attempts: o.attempts, backoff: o.backoff, timeout: o.timeout, capacity: o.queue,
		log: log.With("notifier", name), links: o.links,
		sent: counts.WithLabelValues(name, "sent"), failed: counts.WithLabelValues(name, "failed"),
		dropped: counts.WithLabelValues(name, "dropped"),
		wake:    make(chan struct{}, 1),
		dedup:   newDeduper(o.dedupe),
	}, nil
}

// redactURL shows a URL without what may be a credential: the query (the
// DingTalk access_token, the WeCom key), user info, and the path where the
// vendor puts the token in it (Slack, Feishu).
func redactURL(u *url.URL, tokenInPath bool) string {
	path := u.EscapedPath()
	if tokenInPath {
		path = "/<redacted>"
	}
	return u.Scheme + "://" + u.Host + path
}

func (s *sink) offer(e reconcile.Event) {
	if !s.events[e.Reason] {
		return
	}
	s.mu.Lock()
	var dropped []reconcile.Event
	if s.dedup.admit(e, time.Now()) {
		dropped = s.push(e)
	}
	s.mu.Unlock()
	s.logDropped(dropped)
}

// push queues events, dropping the oldest beyond capacity, and returns
// those dropped. The caller holds mu.
func (s *sink) push(events ...reconcile.Event) []reconcile.Event {
	s.queue = append(s.queue, events...)
	var dropped []reconcile.Event
	if over := len(s.queue) - s.capacity; over > 0 {
		dropped = slices.Clone(s.queue[:over])
		s.queue = s.queue[over:]
	}
	if len(events) > 0 {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
	return dropped
}

func (s *sink) logDropped(dropped []reconcile.Event) {
	for _, e := range dropped {
		s.dropped.Inc()
		s.log.Warn("notification dropped: queue full", "target", e.Service, "reason", e.Reason)
	}
}

func (s *sink) pop() (reconcile.Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		return reconcile.Event{}, false
	}
	e := s.queue[0]
	s.queue = s.queue[1:]
	return e, true
}

// requeue puts back an event whose delivery shutdown interrupted, first in
// line for the last attempt.
func (s *sink) requeue(e reconcile.Event) {
	s.mu.Lock()
	s.queue = append([]reconcile.Event{e}, s.queue...)
	s.mu.Unlock()
}

// release queues the held events that are due at now.
func (s *sink) release(now time.Time) {
	s.mu.Lock()
	dropped := s.push(s.dedup.due(now)...)
	s.mu.Unlock()
	s.logDropped(dropped)
}

func (s *sink) run(ctx context.Context) {
	var tick <-chan time.Time
	if w := s.dedup.window; w > 0 {
		t := time.NewTicker(max(w/4, 10*time.Millisecond))
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			s.flush(ctx)
			return
		case <-s.wake:
		case <-tick:
			s.release(time.Now())
		}
		for ctx.Err() == nil {
			e, ok := s.pop()
			if !ok {
				break
			}
			if !s.deliver(ctx, e) {
				s.requeue(e)
			}
		}
	}
}

// deliver sends e, retrying with backoff, and gives up after the configured
// attempts or on an answer that retrying cannot change. It reports false
// when ctx ended first; the caller then leaves e to the last attempt. An
// attempt under way is not cut short by ctx, only bounded by the request
// timeout: cutting it would leave unknown whether the message arrived, and
// the last attempt might repeat it.
func (s *sink) deliver(ctx context.Context, e reconcile.Event) (finished bool) {
	for attempt := 1; ; attempt++ {
		err := s.send(context.WithoutCancel(ctx), e)
		switch {
		case err == nil:
			s.sent.Inc()
			s.log.Debug("notification sent", "target", e.Service, "reason", e.Reason, "attempt", attempt)
			return true
		case attempt >= s.attempts || providers.IsPermanent(err):
			s.failed.Inc()
			s.log.Error("notification failed", "target", e.Service, "reason", e.Reason, "attempts", attempt, "error", err)
			return true
		case ctx.Err() != nil:
			return false
		}
		s.log.Warn("notification attempt failed, retrying", "target", e.Service, "reason", e.Reason, "attempt", attempt, "error", err)
		t := time.NewTimer(s.backoff.Delay(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// flush makes one attempt at every queued and held message within the
// shutdown grace and counts what is left as dropped.
func (s *sink) flush(parent context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(parent), shutdownGrace)
	defer cancel()
	s.release(time.Now().Add(s.dedup.window))
	for {
		e, ok := s.pop()
		if !ok {
			return
		}
		if ctx.Err() != nil {
			s.dropped.Inc()
			s.log.Warn("notification dropped: shutting down", "target", e.Service, "reason", e.Reason)
			continue
		}
		if err := s.send(ctx, e); err != nil {
			s.failed.Inc()
			s.log.Error("notification failed at shutdown", "target", e.Service, "reason", e.Reason, "error", err)
			continue
		}
		s.sent.Inc()
	}
}

// send makes one attempt. Its errors show the URL redacted only.
func (s *sink) send(ctx context.Context, e reconcile.Event) error {
	if err := s.post(ctx, e); err != nil {
		return fmt.Errorf("posting to %s: %w", s.where, err)
	}
	return nil
}

func (s *sink) post(ctx context.Context, e reconcile.Event) error {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	sum := summarize(e)
	if err := sum.addLinks(s.links, e, time.Now()); err != nil {
		return err
	}
	u, header, body, err := s.vendor.build(sum, e, s.secret.Reveal(), time.Now(), s.url)
	if err != nil {
		return fmt.Errorf("building the message: %w", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return errors.New("building the request") // its error would quote the URL
	}
	req.Header = header
	resp, err := s.client.Do(req)
	if ue := (*url.Error)(nil); errors.As(err, &ue) {
		return ue.Err // without the URL it quotes
	} else if err != nil {
		return err
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	switch {
	case err != nil:
		return fmt.Errorf("reading the answer: %w", err)
	case resp.StatusCode/100 != 2:
		return answerError(resp, answer)
	case s.vendor.accept != nil:
		return s.vendor.accept(answer)
	}
	return nil
}

// deduper holds back an event identical (service, reason, message) to one
// let through less than window ago. The newest held-back event of a service
// is let through when its window ends, unless it repeats the last event let
// through for that service: repeats collapse, and the last word about a
// service always arrives.
type deduper struct {
	window time.Duration
	sent   map[dedupKey]time.Time     // when each distinct event was last let through
	last   map[string]dedupKey        // per service, the last event let through
	held   map[string]reconcile.Event // per service, the newest held-back event; never equal to last
	swept  time.Time
}

type dedupKey struct{ service, reason, message string }

func keyOf(e reconcile.Event) dedupKey { return dedupKey{e.Service, e.Reason, e.Message} }

func newDeduper(window time.Duration) deduper {
	return deduper{window: window, sent: map[dedupKey]time.Time{}, last: map[string]dedupKey{}, held: map[string]reconcile.Event{}}
}

// admit reports whether e goes out now.
func (d *deduper) admit(e reconcile.Event, now time.Time) bool {
	if d.window <= 0 {
		return true
	}
	k := keyOf(e)
	if at, ok := d.sent[k]; ok && now.Sub(at) < d.window {
		if d.last[e.Service] == k {
			delete(d.held, e.Service) // a repeat of what was said last
		} else {
			d.held[e.Service] = e
		}
		return false
	}
	d.let(k, now)
	d.sweep(now)
	return true
}

// due returns the held-back events whose window has ended at now, and lets
// them through.
func (d *deduper) due(now time.Time) []reconcile.Event {
	var out []reconcile.Event
	for _, e := range d.held {
		k := keyOf(e)
		if now.Sub(d.sent[k]) >= d.window {
			d.let(k, now)
			out = append(out, e)
		}
	}
	return out
}

func (d *deduper) let(k dedupKey, now time.Time) {
	d.sent[k] = now
	d.last[k.service] = k
	delete(d.held, k.service)
}

// sweep forgets, at most once per window, what is older than the window.
func (d *deduper) sweep(now time.Time) {
	if now.Sub(d.swept) < d.window {
		return
	}
	d.swept = now
	for k, at := range d.sent {
		if now.Sub(at) >= d.window {
			delete(d.sent, k)
		}
	}
	for svc, k := range d.last {
		if _, ok := d.sent[k]; !ok {
			delete(d.last, svc)
		}
	}
}
