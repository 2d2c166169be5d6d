package alibaba

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strings"
	"sync"
	"time"
)

// healthShareTTL is how long a health read's answer serves the same read
// again. Many services can share one listener (an ALB listener forwards
// to many server groups by rules; an SLB listener port reports every
// server behind it), and each of their bindings reads that listener's
// health in every pass: reads in flight at once are one call, and for
// healthShareTTL after it the answer is reused. 500 ms covers the bindings
// of one listener that a pass reads together, and is a quarter of an ALB
// server group's default health-check interval (HealthCheckInterval,
// 1–50 s, default 2, SDK doc of CreateServerGroupRequestHealthCheckConfig),
// so a reused answer is never much older than the load balancer's own view.
const healthShareTTL = 500 * time.Millisecond

// sharedCallTimeout bounds a shared call, which no caller's context does.
const sharedCallTimeout = time.Minute

// sharedActions are the reads whose answers are shared: the health of a
// whole listener, the same for every binding that reads it.
var sharedActions = map[string]bool{
	"GetListenerHealthStatus": true, // ALB, per listener (and page)
	"DescribeHealthStatus":    true, // SLB, per load balancer and listener port
}

// volatileParams differ between two sendings of the same request (the
// legacy RPC signature puts them in the query); they are left out of the
// key. ACS3 sends them as headers, which the key ignores.
var volatileParams = map[string]bool{
	"Signature": true, "SignatureNonce": true, "Timestamp": true,
	"SignatureMethod": true, "SignatureVersion": true, "SignatureType": true,
}

// shareable returns the key of a request whose answer can be shared: a
// sharedAction, keyed by host, action, version and its parameters (in the
// query for both signatures; the body, empty for these reads, by its
// hash). The client is per provider instance, so per account.
func shareable(req *http.Request) (string, bool) {
	q := req.URL.Query()
	action := header(req, "x-acs-action")
	if action == "" {
		action = q.Get("Action")
	}
	if !sharedActions[action] {
		return "", false
	}
	keys := make([]string, 0, len(q))
	for k := range q {
		if !volatileParams[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	var b strings.Builder
	b.WriteString(req.URL.Host + " " + action + " " + header(req, "x-acs-version") + " " + header(req, "x-acs-content-sha256"))
	for _, k := range keys {
		b.WriteString(" " + url.QueryEscape(k) + "=" + url.QueryEscape(strings.Join(q[k], ",")))
	}
	return b.String(), true
}

// header reads a request header as the SDK sets it: under its lower-case
// name, not canonicalized (tea/dara DoRequestWithCtx assigns Header[key]).
func header(req *http.Request, name string) string {
	if v := req.Header[name]; len(v) > 0 {
		return v[0]
	}
	return req.Header.Get(name)
}

// shared runs one call per key at a time and keeps a successful answer
// for ttl: callers of a key in flight wait for its answer (each bounded by
// its own context), later ones within ttl get the kept answer. A failed
// call or an error answer is shared with the callers that were waiting,
// and not kept.
type shared struct {
	ttl time.Duration
	now func() time.Time

	mu      sync.Mutex
	entries map[string]*sharedEntry
	// gen counts the writes of this instance that have finished. An answer
	// whose call started before a write finished is never handed to a
	// caller that comes after it: a health read that predates a weight
	// change would show a raised server as unused (weight 0).
	gen uint64
}

type sharedEntry struct {
	gen     uint64 // shared.gen when the call started
	done    chan struct{}
	status  int
	header  http.Header
	body    []byte
	err     error
	expires time.Time // set when done, for a 2xx answer
}

func newShared(ttl time.Duration) *shared {
	return &shared{ttl: ttl, now: time.Now, entries: map[string]*sharedEntry{}}
}

// do returns the answer of call for key, made at most once per ttl. The
// call runs on a goroutine of its own, detached from the cancellation of
// the caller that started it (others may be waiting for it) but bounded by
// sharedCallTimeout; every caller waits for it only as long as its own
// context allows.
func (s *shared) do(ctx context.Context, key string, call func(context.Context) (*http.Response, error)) (*http.Response, error) {
	s.mu.Lock()
	e, ok := s.entries[key]
	if ok && (e.gen != s.gen || isDone(e.done) && !s.now().Before(e.expires)) {
		ok = false // expired, or older than a write
	}
	if !ok {
		e = &sharedEntry{gen: s.gen, done: make(chan struct{})}
		s.sweepLocked()
		s.entries[key] = e
		s.mu.Unlock()
		go s.fill(ctx, key, e, call)
	} else {
		s.mu.Unlock()
	}
	select {
	case <-e.done:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	if e.err != nil {
		return nil, e.err
	}
	return &http.Response{
		StatusCode: e.status, Status: http.StatusText(e.status), Header: e.header.Clone(),
		Body: io.NopCloser(bytes.NewReader(e.body)), ContentLength: int64(len(e.body)),
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
	}, nil
}

func (s *shared) fill(ctx context.Context, key string, e *sharedEntry, call func(context.Context) (*http.Response, error)) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedCallTimeout)
	defer cancel()
	res, err := call(ctx)
	if err == nil {
		e.body, err = io.ReadAll(res.Body)
		res.Body.Close()
		e.status, e.header = res.StatusCode, res.Header
	}
	e.err = err
	s.mu.Lock()
	if err == nil && e.status/100 == 2 {
		e.expires = s.now().Add(s.ttl)
	} else if s.entries[key] == e {
		delete(s.entries, key)
	}
	close(e.done)
	s.mu.Unlock()
}

// wrote records that a write of this instance finished: answers of calls
// that started before it are not shared any more.
func (s *shared) wrote() {
	s.mu.Lock()
	s.gen++
	s.mu.Unlock()
}

// sweepLocked forgets expired answers once the map has grown.
func (s *shared) sweepLocked() {
	if len(s.entries) < 256 {
		return
	}
	now := s.now()
	for k, e := range s.entries {
		if isDone(e.done) && !now.Before(e.expires) {
			delete(s.entries, k)
		}
	}
}

// isWrite reports whether req changes the load balancer: every OpenAPI
// action of ALB and SLB that is not a read (List*, Describe*, Get*).
func isWrite(req *http.Request) bool {
	action := header(req, "x-acs-action")
	if action == "" {
		action = req.URL.Query().Get("Action")
	}
	for _, read := range []string{"List", "Describe", "Get"} {
		if strings.HasPrefix(action, read) {
			return false
		}
	}
	return action != ""
}

func isDone(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
