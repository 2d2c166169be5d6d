package scalebench

import (
	"bytes"
	"io"
	"maps"
	"net/http"
	"net/url"
	"sync"
	"time"
)

// call is one API action on one resource.
type call struct{ api, action, resource string }

// apis name the OpenAPI versions the emulator serves.
var apis = map[string]string{"2020-06-16": "ALB", "2014-05-15": "SLB"}

// calls counts the OpenAPI requests an http.Handler receives by action and
// by the resource they name, so that the benchmark can tell how often each
// server group was read (the emulator's own Calls counts by action only).
type calls struct {
	next http.Handler
	mu   sync.Mutex
	n    map[call]int
	// first and last are when each API (ALB, SLB) was first and last
	// called since the last take: the window in which it was busy.
	first, last map[string]time.Time
}

func countCalls(next http.Handler) *calls {
	return &calls{next: next, n: map[call]int{}, first: map[string]time.Time{}, last: map[string]time.Time{}}
}

// resourceParams name the resource of a request, in order of preference:
// the parameters of the actions the ALB and SLB providers call (SDK docs of
// the request models).
var resourceParams = []string{"ServerGroupId", "VServerGroupId", "ListenerId", "LoadBalancerId"}

// ServeHTTP reads the parameters as the OpenAPI does (query, then a
// form-encoded body, which is restored for the emulator) and counts the
// request before handing it on.
func (c *calls) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	params := r.URL.Query()
	if form, err := url.ParseQuery(string(body)); err == nil {
		for k, v := range form {
			params[k] = v
		}
	}
	k := call{action: r.Header.Get("x-acs-action"), api: apis[r.Header.Get("x-acs-version")]}
	if k.action == "" { // the legacy RPC signature
		k.action, k.api = params.Get("Action"), apis[params.Get("Version")]
	}
	for _, p := range resourceParams {
		if v := params.Get(p); v != "" {
			k.resource = v
			if p == "LoadBalancerId" && params.Get("ListenerPort") != "" {
				k.resource += ":" + params.Get("ListenerPort")
			}
			break
		}
	}
	now := time.Now()
	c.mu.Lock()
	c.n[k]++
	if _, ok := c.first[k.api]; !ok {
		c.first[k.api] = now
	}
	c.last[k.api] = now
	c.mu.Unlock()
	c.next.ServeHTTP(w, r)
}

// take returns the counts since the last take and starts again from zero.
func (c *calls) take() map[call]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := maps.Clone(c.n)
	clear(c.n)
	clear(c.first)
	clear(c.last)
	return out
}

// busy returns, per API, how long it was being called since the last take
// (from its first call to its last).
func (c *calls) busy() map[string]time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := map[string]time.Duration{}
	for api, first := range c.first {
		out[api] = c.last[api].Sub(first)
	}
	return out
}

// count returns the calls of action since the last take.
func (c *calls) count(action string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := 0
	for k, v := range c.n {
		if k.action == action {
			n += v
		}
	}
	return n
}
