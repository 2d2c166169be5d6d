package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"
)

// Frontend is the data plane of an emulated listener: it forwards HTTP
// requests and WebSocket connections (any Upgrade) to the servers of one
// target — or, for an ALB listener (NewListenerFrontend), of the server
// group its first matching forwarding rule names, else its default group —
// choosing by smooth weighted round robin among the servers that get new
// requests (Emulator.Routable): the healthy servers with weight > 0, or all
// servers with weight > 0 when none is healthy or checks are off (see
// health.go). A server at weight 0 never gets a new request. A request
// forwarded to a server cut off by BlockServers fails with 504.
//
// Connections already established with a server that stops getting new
// requests (weight 0, failed health checks, left the group) continue until
// the drain timeout has passed, then they are closed: the connection-drain
// behaviour ALB documents for ConnectionDrainConfig.ConnectionDrainTimeout
// (0–900 s; on removal or failed health checks) and CLB for its TCP
// listeners' ConnectionDrainTimeout (SDK doc; ALB:
// https://www.alibabacloud.com/help/en/slb/application-load-balancer/user-guide/smooth-transition-of-alb-request-by-connection-graceful-interrupt).
// Whether the real ALB drains on weight 0 is UNVERIFIED; the emulator drains
// then too.
//
// A server's Port is where traffic goes; give servers of an SLB default
// server group the listener's backend port.
type Frontend struct {
	e         *Emulator
	route     func(*http.Request) (Target, error)
	drain     time.Duration
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	handlers  sync.WaitGroup

	mu       sync.Mutex
	current  map[session]int // smooth weighted round robin state
	sessions map[session]map[uint64]context.CancelFunc
	offSince map[session]time.Time
	nextID   uint64
	rr       map[string]int // round robin over the groups of a rule
}

// session names a server of a target.
type session struct {
	target Target
	server string // id:port
}

type backendKey struct{}

// NewFrontend returns the data plane of target with the given drain timeout.
func (e *Emulator) NewFrontend(target Target, drain time.Duration) *Frontend {
	return e.newFrontend(func(*http.Request) (Target, error) { return target, nil }, drain)
}

// NewListenerFrontend returns the data plane of an ALB listener: a request
// goes to the server groups of the listener's first forwarding rule (by
// priority) whose Header and Cookie conditions it meets, else to the
// listener's default server group. Rules are read per request, so rules
// added later apply.
func (e *Emulator) NewListenerFrontend(listenerID string, drain time.Duration) (*Frontend, error) {
	e.mu.Lock()
	l := e.state.listener(listenerID)
	e.mu.Unlock()
	if l == nil {
		return nil, fmt.Errorf("alb listener %s does not exist", listenerID)
	}
	var f *Frontend
	f = e.newFrontend(func(r *http.Request) (Target, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		l := e.state.listener(listenerID)
		if l == nil {
			return Target{}, fmt.Errorf("alb listener %s does not exist", listenerID)
		}
		for _, rule := range e.state.rules(listenerID) {
			if matches(rule, r) {
				return Target{ServerGroup: f.tuple(rule)}, nil
			}
		}
		return Target{ServerGroup: l.ServerGroup}, nil
	}, drain)
	return f, nil
}

// NewSLBListenerFrontend returns the data plane of an SLB (CLB) listener:
// a request goes to the vServer group the listener is associated with, or
// to the load balancer's default server group when it has none ("Different
// listeners can be bound to different server groups"; the default server
// group is shared by every listener of the instance:
// https://www.alibabacloud.com/help/en/slb/classic-load-balancer/user-guide/backend-server-overview).
// The listener is read per request. A second listener with a vServer group
// of its own is how a test listener (a preview route) reaches other
// servers than the main one.
func (e *Emulator) NewSLBListenerFrontend(lbID string, port int, drain time.Duration) (*Frontend, error) {
	route := func(*http.Request) (Target, error) {
		e.mu.Lock()
		defer e.mu.Unlock()
		lb := e.state.lb(lbID)
		if lb == nil {
			return Target{}, fmt.Errorf("slb %s does not exist", lbID)
		}
		for _, l := range lb.Listeners {
			if l.Port == port {
				return Target{LoadBalancer: lbID, VServerGroup: l.VServerGroup}, nil
			}
		}
		return Target{}, fmt.Errorf("slb %s has no listener on port %d", lbID, port)
	}
	if _, err := route(nil); err != nil {
		return nil, err
	}
	return e.newFrontend(route, drain), nil
}

// matches reports whether r meets every condition of rule: a Header
// condition when the header has one of the values, a Cookie condition when
// the cookie has one of them. Values compare exactly (UNVERIFIED: ALB's
// case rules for header values).
func matches(rule *Rule, r *http.Request) bool {
	for _, c := range rule.Conditions {
		var got []string
		switch c.Type {
		case "Header":
			got = r.Header.Values(c.Key)
		case "Cookie":
			for _, ck := range r.CookiesNamed(c.Key) {
				got = append(got, ck.Value)
			}
		}
		if !slices.ContainsFunc(got, func(v string) bool { return slices.Contains(c.Values, v) }) {
			return false
		}
	}
	return true
}

// tuple picks a server group of rule by the tuples' weights (weighted round
// robin; weight 0 in the state means 100). Called with e.mu held.
func (f *Frontend) tuple(rule *Rule) string {
	if len(rule.ServerGroups) == 1 {
		return rule.ServerGroups[0].ServerGroup
	}
	total := 0
	for _, t := range rule.ServerGroups {
		total += t.weight()
	}
	f.mu.Lock()
	n := f.rr[rule.ID] % total
	f.rr[rule.ID]++
	f.mu.Unlock()
	for _, t := range rule.ServerGroups {
		if n < t.weight() {
			return t.ServerGroup
		}
		n -= t.weight()
	}
	return rule.ServerGroups[0].ServerGroup
}

func (e *Emulator) newFrontend(route func(*http.Request) (Target, error), drain time.Duration) *Frontend {
	f := &Frontend{
		e:         e,
		route:     route,
		drain:     drain,
		transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		current:   map[session]int{},
		sessions:  map[session]map[uint64]context.CancelFunc{},
		offSince:  map[session]time.Time{},
		rr:        map[string]int{},
	}
	f.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: pr.In.Context().Value(backendKey{}).(string)})
			pr.SetXForwarded()
			pr.Out.Host = pr.In.Host
		},
		Transport: f.transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			http.Error(w, "bad gateway: "+err.Error(), http.StatusBadGateway)
		},
	}
	return f
}

// Serve accepts connections on ln until ctx ends, then closes every
// connection it forwards and returns once all of them are gone.
func (f *Frontend) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           f,
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	var wg sync.WaitGroup
	wg.Add(2)
	errc := make(chan error, 1)
	go func() {
		defer wg.Done()
		errc <- srv.Serve(ln)
	}()
	go func() {
		defer wg.Done()
		f.watch(ctx)
	}()
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	// Request contexts derive from ctx, so proxied requests and upgraded
	// connections end with it; Close ends idle and plain connections.
	_ = srv.Close()
	f.handlers.Wait()
	f.transport.CloseIdleConnections()
	wg.Wait()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// ServeHTTP forwards one request (or upgraded connection) to a server.
func (f *Frontend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.handlers.Add(1)
	defer f.handlers.Done()
	target, err := f.route(r)
	if err != nil {
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
		return
	}
	key, addr, ok := f.pick(target)
	if !ok {
		http.Error(w, "no backend server with weight > 0 in "+target.String(), http.StatusServiceUnavailable)
		return
	}
	if f.e.isBlocked(addr) {
		// The LB cannot reach the server (BlockServers): ALB answers 504
		// when it cannot connect in time; the emulator does not wait.
		http.Error(w, "gateway timeout: "+addr+" does not answer the load balancer", http.StatusGatewayTimeout)
		return
	}
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), backendKey{}, addr))
	defer cancel()
	id := f.track(key, cancel)
	defer f.untrack(key, id)
	f.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func serverKey(s Server) string { return s.ID + ":" + strconv.Itoa(s.Port) }

// pick chooses a routable server of target by smooth weighted round robin
// (each server gains its weight, the richest is chosen and pays the total).
func (f *Frontend) pick(target Target) (key session, addr string, ok bool) {
	servers, err := f.e.Routable(target)
	if err != nil {
		return session{}, "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	total, best := 0, -1
	for i, s := range servers {
		k := session{target, serverKey(s)}
		f.current[k] += s.Weight
		total += s.Weight
		if best < 0 || f.current[k] > f.current[session{target, serverKey(servers[best])}] {
			best = i
		}
	}
	if best < 0 {
		return session{}, "", false
	}
	s := servers[best]
	key = session{target, serverKey(s)}
	f.current[key] -= total
	return key, net.JoinHostPort(s.IP, strconv.Itoa(s.Port)), true
}

func (f *Frontend) track(key session, cancel context.CancelFunc) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	if f.sessions[key] == nil {
		f.sessions[key] = map[uint64]context.CancelFunc{}
	}
	f.sessions[key][f.nextID] = cancel
	return f.nextID
}

func (f *Frontend) untrack(key session, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions[key], id)
}

// watch closes the connections of servers that have not been routable
// (weight 0, failed checks, out of the group) for longer than the drain
// timeout.
func (f *Frontend) watch(ctx context.Context) {
	tick := min(max(f.drain/10, 10*time.Millisecond), 250*time.Millisecond)
	t := time.NewTicker(tick)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		f.mu.Lock()
		targets := map[Target]bool{}
		for key := range f.sessions {
			targets[key.target] = true
		}
		f.mu.Unlock()
		routable := map[session]bool{}
		for t := range targets {
			servers, _ := f.e.Routable(t)
			for _, s := range servers {
				routable[session{t, serverKey(s)}] = true
			}
		}
		now := time.Now()
		f.mu.Lock()
		for key, sessions := range f.sessions {
			if routable[key] {
				delete(f.offSince, key)
				continue
			}
			since, ok := f.offSince[key]
			if !ok {
				f.offSince[key] = now
				since = now
			}
			if now.Sub(since) >= f.drain {
				for _, cancel := range sessions {
					cancel()
				}
			}
		}
		for key := range f.offSince {
			if len(f.sessions[key]) == 0 {
				delete(f.offSince, key)
			}
		}
		f.mu.Unlock()
	}
}
