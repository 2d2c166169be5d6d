package emulator

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"time"
)

// Frontend is the data plane of an emulated listener: it forwards HTTP
// requests and WebSocket connections (any Upgrade) to the servers of one
// target, choosing among the servers with weight > 0 by smooth weighted
// round robin, so a server at weight 0 never gets a new request.
//
// Connections already established with a server whose weight drops to 0
// (or that leaves the group) continue until the drain timeout has passed,
// then they are closed: the connection-drain behaviour ALB documents for
// ConnectionDrainConfig.ConnectionDrainTimeout (0–900 s) and CLB for its
// TCP listeners' ConnectionDrainTimeout (ref §1, §2). Whether the real ALB
// drains on weight 0, rather than only on removal or failed health checks,
// is UNVERIFIED (ref §1); the emulator drains in both cases.
//
// A server's Port is where traffic goes; give servers of an SLB default
// server group the listener's backend port.
type Frontend struct {
	e         *Emulator
	target    Target
	drain     time.Duration
	proxy     *httputil.ReverseProxy
	transport *http.Transport
	handlers  sync.WaitGroup

	mu        sync.Mutex
	current   map[string]int // smooth weighted round robin state, by server key
	sessions  map[string]map[uint64]context.CancelFunc
	zeroSince map[string]time.Time
	nextID    uint64
}

type backendKey struct{}

// NewFrontend returns the data plane of target with the given drain timeout.
func (e *Emulator) NewFrontend(target Target, drain time.Duration) *Frontend {
	f := &Frontend{
		e:         e,
		target:    target,
		drain:     drain,
		transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second},
		current:   map[string]int{},
		sessions:  map[string]map[uint64]context.CancelFunc{},
		zeroSince: map[string]time.Time{},
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
	key, addr, ok := f.pick()
	if !ok {
		http.Error(w, "no backend server with weight > 0 in "+f.target.String(), http.StatusServiceUnavailable)
		return
	}
	ctx, cancel := context.WithCancel(context.WithValue(r.Context(), backendKey{}, addr))
	defer cancel()
	id := f.track(key, cancel)
	defer f.untrack(key, id)
	f.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func serverKey(s Server) string { return s.ID + ":" + strconv.Itoa(s.Port) }

// pick chooses a server with weight > 0 by smooth weighted round robin
// (each server gains its weight, the richest is chosen and pays the total).
func (f *Frontend) pick() (key, addr string, ok bool) {
	servers, err := f.e.Servers(f.target)
	if err != nil {
		return "", "", false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	total, best := 0, -1
	for i, s := range servers {
		if s.Weight <= 0 {
			continue
		}
		k := serverKey(s)
		f.current[k] += s.Weight
		total += s.Weight
		if best < 0 || f.current[k] > f.current[serverKey(servers[best])] {
			best = i
		}
	}
	if best < 0 {
		return "", "", false
	}
	s := servers[best]
	f.current[serverKey(s)] -= total
	return serverKey(s), net.JoinHostPort(s.IP, strconv.Itoa(s.Port)), true
}

func (f *Frontend) track(key string, cancel context.CancelFunc) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	if f.sessions[key] == nil {
		f.sessions[key] = map[uint64]context.CancelFunc{}
	}
	f.sessions[key][f.nextID] = cancel
	return f.nextID
}

func (f *Frontend) untrack(key string, id uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.sessions[key], id)
}

// watch closes the connections of servers that have been at weight 0 (or
// out of the group) for longer than the drain timeout.
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
		servers, err := f.e.Servers(f.target)
		if err != nil {
			continue
		}
		weight := map[string]int{}
		for _, s := range servers {
			weight[serverKey(s)] = s.Weight
		}
		now := time.Now()
		f.mu.Lock()
		for key, sessions := range f.sessions {
			if weight[key] > 0 {
				delete(f.zeroSince, key)
				continue
			}
			since, ok := f.zeroSince[key]
			if !ok {
				f.zeroSince[key] = now
				since = now
			}
			if now.Sub(since) >= f.drain {
				for _, cancel := range sessions {
					cancel()
				}
			}
		}
		for key := range f.zeroSince {
			if len(f.sessions[key]) == 0 {
				delete(f.zeroSince, key)
			}
		}
		f.mu.Unlock()
	}
}
