package stage

import (
	"context"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
)

// consumer is a Nacos consumer in front of one service, as a Spring Cloud
// Gateway route to lb://service is: an HTTP and WebSocket reverse proxy that
// calls the instances its Nacos subscription lists (nacosapp.Subscribe,
// pushed by the server), round robin. Like Spring Cloud LoadBalancer's
// CachingServiceInstanceListSupplier it keeps the list it took for ttl before
// it takes the subscription's current one again (spring-cloud-commons
// LoadBalancerCacheProperties: TTL 35 s there), so it keeps calling an
// instance for up to ttl plus the push delay after the instance went out of
// view: what drain.propagation must cover.
type consumer struct {
	service string
	ttl     time.Duration
	proxy   *httputil.ReverseProxy

	mu      sync.Mutex
	pushed  []string // ip:port of the instances of the last push
	cached  []string // the list in use
	fetched time.Time
	next    int
}

type backendKey struct{}

func newConsumer(service string, ttl time.Duration) *consumer {
	c := &consumer{service: service, ttl: ttl}
	c.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: pr.In.Context().Value(backendKey{}).(string)})
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		},
	}
	return c
}

// update is the subscription's callback.
func (c *consumer) update(in []nacosapp.Instance) {
	addrs := make([]string, len(in))
	for i, x := range in {
		addrs[i] = hostPort(x.IP, x.Port)
	}
	slices.Sort(addrs)
	c.mu.Lock()
	c.pushed = addrs
	c.mu.Unlock()
}

// ready reports whether a push listed some instance.
func (c *consumer) ready() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pushed) > 0
}

// pick chooses the next instance from the cached list, taking the
// subscription's list again when the cache expired (or is empty).
func (c *consumer) pick() (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now := time.Now(); len(c.cached) == 0 || now.Sub(c.fetched) >= c.ttl {
		c.cached, c.fetched = c.pushed, now
	}
	if len(c.cached) == 0 {
		return "", false
	}
	c.next++
	return c.cached[c.next%len(c.cached)], true
}

func (c *consumer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addr, ok := c.pick()
	if !ok {
		http.Error(w, "no instance of "+c.service+" in nacos", http.StatusServiceUnavailable)
		return
	}
	c.proxy.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), backendKey{}, addr)))
}

// serveConsumer serves c once its subscription lists an instance.
func (s *Stage) serveConsumer(ctx context.Context, c *consumer) (string, error) {
	if err := poll(ctx, func() (bool, error) { return c.ready(), nil }); err != nil {
		return "", err
	}
	return s.serve(c)
}
