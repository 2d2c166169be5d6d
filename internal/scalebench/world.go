package scalebench

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/tandemhq/tandem/internal/nacosside"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

// Versions: the active group of every service runs the desired version,
// the idle group the one before (the warm rollback target).
const (
	desiredVersion = "2.0.0"
	oldVersion     = "1.0.0"
)

// perGroup is the number of instances in each group of a service.
const perGroup = 2

// slbGroupsPerLB is how many vServer groups (one listener each) share an
// SLB instance.
const slbGroupsPerLB = 10

// service is one service of the benchmark and where it lives.
type service struct {
	name   string
	lb     string // spec.KindALB, spec.KindSLB, or "" (Nacos only)
	nacos  bool
	active spec.Group
	groups map[spec.Group][]instance
	// ALB: server group and listener; SLB: load balancer, vServer group
	// and listener port.
	serverGroup, listener    string
	loadBalancer, vServerGrp string
	listenerPort             int
}

type instance struct {
	id      string
	ip      string
	port    int
	version string
}

// mix counts what a layout holds.
type mix struct {
	services, alb, slb, nacosOnly, nacos, instances int
}

func (m mix) String() string {
	return fmt.Sprintf("%d services: %d on ALB server groups, %d on SLB vServer groups, %d in Nacos only; %d registered in Nacos; %d instances",
		m.services, m.alb, m.slb, m.nacosOnly, m.nacos, m.instances)
}

// layout spreads n services: two fifths on ALB server groups, two fifths
// on SLB vServer groups, one fifth in Nacos only; half of the services
// behind a load balancer are registered in Nacos too. Active groups
// alternate in pairs, so that every kind has services active on A and
// on B. Instance ports are filled in by the fleet.
func layout(n int) ([]*service, mix) {
	var out []*service
	m := mix{services: n}
	slb := 0
	for i := range n {
		s := &service{name: fmt.Sprintf("svc-%04d", i), active: spec.GroupA, groups: map[spec.Group][]instance{}}
		if (i/2)%2 == 1 {
			s.active = spec.GroupB
		}
		switch {
		case i < n*2/5:
			s.lb, s.nacos = spec.KindALB, i%2 == 0
			s.serverGroup, s.listener = "sgp-"+s.name, "lsn-"+s.name
			m.alb++
		case i < n*4/5:
			s.lb, s.nacos = spec.KindSLB, i%2 == 0
			s.loadBalancer = fmt.Sprintf("lb-%04d", slb/slbGroupsPerLB)
			s.vServerGrp, s.listenerPort = "rsp-"+s.name, 80+slb%slbGroupsPerLB
			slb++
			m.slb++
		default:
			s.nacos = true
			m.nacosOnly++
		}
		if s.nacos {
			m.nacos++
		}
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			v := oldVersion
			if g == s.active {
				v = desiredVersion
			}
			for k := range perGroup {
				s.groups[g] = append(s.groups[g], instance{id: fmt.Sprintf("i-%s-%s%d", s.name, g, k+1), ip: "127.0.0.1", version: v})
			}
			m.instances += perGroup
		}
		out = append(out, s)
	}
	return out, m
}

// fleet stands in for the services' instances: one loopback listener per
// instance (its ip:port is what the load balancers and Nacos list and what
// Tandem probes), all served by one HTTP server that answers /healthz and
// /version with the version of the instance whose address was dialled.
type fleet struct {
	srv *http.Server
	wg  sync.WaitGroup

	mu    sync.Mutex
	calls map[string]int // probes answered, by "METHOD path"
}

// startFleet listens for every instance of services, fills in their ports
// and serves until close.
func startFleet(services []*service) (*fleet, error) {
	versions := map[string]string{}
	var lns []net.Listener
	fail := func(err error) (*fleet, error) {
		for _, ln := range lns {
			_ = ln.Close()
		}
		return nil, fmt.Errorf("starting the fleet: %w", err)
	}
	for _, s := range services {
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for i := range s.groups[g] {
				in := &s.groups[g][i]
				ln, err := net.Listen("tcp", net.JoinHostPort(in.ip, "0"))
				if err != nil {
					return fail(err)
				}
				lns = append(lns, ln)
				in.port = ln.Addr().(*net.TCPAddr).Port
				versions[ln.Addr().String()] = in.version
			}
		}
	}
	f := &fleet{calls: map[string]int{}}
	f.srv = &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		switch r.URL.Path {
		case "/healthz":
			_, _ = w.Write([]byte("ok\n"))
		case "/version":
			_, _ = w.Write([]byte(versions[local.String()]))
		default:
			// Not a probe: e.g. another process on the machine dialling a
			// port it used before (loopback ports are shared).
			http.NotFound(w, r)
			return
		}
		f.mu.Lock()
		f.calls[r.Method+" "+r.URL.Path]++
		f.mu.Unlock()
	})}
	for _, ln := range lns {
		f.wg.Go(func() { _ = f.srv.Serve(ln) })
	}
	return f, nil
}

// take returns the requests the instances answered since the last take.
func (f *fleet) take() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := maps.Clone(f.calls)
	clear(f.calls)
	return out
}

func (f *fleet) close() error {
	err := f.srv.Close() // closes every listener; each Serve returns
	f.wg.Wait()
	return err
}

// The AccessKey of the Alibaba emulator (it accepts no other) and the
// environment variables the providers read it from.
const (
	alibabaKeyID        = "LTAIscalebench"
	alibabaKeySecret    = "scalebench-secret"
	alibabaKeyIDEnv     = "TANDEM_SCALEBENCH_AK_ID"
	alibabaKeySecretEnv = "TANDEM_SCALEBENCH_AK_SECRET"
)

// alibaba is the ALB and SLB OpenAPI emulator, seeded through its own Seed
// (the OpenAPI subset it serves has no create calls), served behind the
// call counter.
type alibaba struct {
	emu      *emulator.Emulator
	calls    *calls
	endpoint string
	srv      *http.Server
	wg       sync.WaitGroup
}

func startAlibaba(services []*service, latency time.Duration) (*alibaba, error) {
	emu := emulator.New(emulator.Options{Keys: []emulator.Key{{ID: alibabaKeyID, Secret: alibabaKeySecret}},
		Faults: emulator.Faults{Latency: latency}})
	var st emulator.State
	lbs := map[string]*emulator.LoadBalancer{}
	for _, s := range services {
		var servers []*emulator.Server
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			w := 0
			if g == s.active {
				w = spec.DefaultWeight
			}
			for _, in := range s.groups[g] {
				servers = append(servers, &emulator.Server{ID: in.id, IP: in.ip, Port: in.port, Weight: w})
			}
		}
		switch s.lb {
		case spec.KindALB:
			st.ServerGroups = append(st.ServerGroups, &emulator.ServerGroup{ID: s.serverGroup, Name: s.name, Servers: servers})
			st.Listeners = append(st.Listeners, &emulator.Listener{ID: s.listener, Port: 80, ServerGroup: s.serverGroup})
		case spec.KindSLB:
			lb := lbs[s.loadBalancer]
			if lb == nil {
				lb = &emulator.LoadBalancer{ID: s.loadBalancer, Servers: []*emulator.Server{}}
				lbs[s.loadBalancer] = lb
				st.LoadBalancers = append(st.LoadBalancers, lb)
			}
			lb.VServerGroups = append(lb.VServerGroups, &emulator.VServerGroup{ID: s.vServerGrp, Name: s.name, Servers: servers})
			lb.Listeners = append(lb.Listeners, &emulator.SLBListener{Port: s.listenerPort, Protocol: "http", VServerGroup: s.vServerGrp})
		}
	}
	if err := emu.Seed(st); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("serving the alibaba emulator: %w", err)
	}
	a := &alibaba{emu: emu, calls: countCalls(emu), endpoint: ln.Addr().String()}
	a.srv = &http.Server{Handler: a.calls, ReadHeaderTimeout: 5 * time.Second}
	a.wg.Go(func() { _ = a.srv.Serve(ln) })
	return a, nil
}

func (a *alibaba) provider() spec.AlibabaProvider {
	return spec.AlibabaProvider{Name: providerName, Region: "cn-hangzhou", Endpoint: a.endpoint, Protocol: "http",
		AccessKeyIDEnv: alibabaKeyIDEnv, AccessKeySecretEnv: alibabaKeySecretEnv, RateLimit: unbudgeted}
}

func (a *alibaba) close() error {
	err := a.srv.Close()
	a.wg.Wait()
	return err
}

// providerName names every provider instance of the benchmark's config.
const providerName = "bench"

// nacosSide is the Nacos emulator with the services' instances registered
// the way applications register: through the official SDK, over gRPC, as
// ephemeral instances with their version in the metadata. One SDK
// connection per instance slot (group A's first, second, group B's ...)
// publishes that instance of every service: Nacos keeps one instance per
// service and connection, so four connections carry every instance instead
// of one connection per instance.
type nacosSide struct {
	*nacosside.Side
	publishers []*nacosapp.Publisher
}

func startNacos(ctx context.Context, services []*service) (*nacosSide, error) {
	side, err := nacosside.Start(ctx, nacosside.Options{Provider: providerName})
	if err != nil {
		return nil, err
	}
	n := &nacosSide{Side: side}
	type slot struct {
		p *nacosapp.Publisher
		g spec.Group
		i int
	}
	var slots []slot
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for i := range perGroup {
			p, err := nacosapp.NewPublisher(n.App)
			if err != nil {
				return nil, errors.Join(err, n.close())
			}
			n.publishers = append(n.publishers, p)
			slots = append(slots, slot{p, g, i})
		}
	}
	err = parallel(slots, len(slots), func(sl slot) error {
		for _, s := range services {
			if !s.nacos {
				continue
			}
			in := s.groups[sl.g][sl.i]
			if err := sl.p.Publish(s.name, in.ip, in.port, map[string]string{"version": in.version}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, errors.Join(err, n.close())
	}
	if err := n.disableIdleGroups(ctx, services); err != nil {
		return nil, errors.Join(err, n.close())
	}
	return n, nil
}

func (n *nacosSide) provider() spec.NacosProvider { return n.Provider }

// disableIdleGroups takes every idle group out of consumers' view through
// the Nacos provider, as the stage does (internal/nacosside).
func (n *nacosSide) disableIdleGroups(ctx context.Context, services []*service) error {
	p := n.provider()
	p.Timeout = spec.Duration(10 * time.Second)
	reg, err := nacos.New(p, nil)
	if err != nil {
		return err
	}
	defer reg.Close()
	var idle []nacosside.Idle
	for _, s := range services {
		if !s.nacos {
			continue
		}
		it := nacosside.Idle{Ref: spec.NacosRef{Provider: providerName, Namespace: "public", Group: "DEFAULT_GROUP", Service: s.name, Cluster: "DEFAULT"}}
		for _, in := range s.groups[s.active.Other()] {
			it.Addrs = append(it.Addrs, providers.Addr{IP: in.ip, Port: in.port})
		}
		idle = append(idle, it)
	}
	return nacosside.DisableIdleGroups(ctx, reg, idle, 32)
}

// parallel calls f for every item from n goroutines and returns the first
// error.
func parallel[T any](items []T, n int, f func(T) error) error {
	work := make(chan T)
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for range n {
		wg.Go(func() {
			for it := range work {
				if err := f(it); err != nil {
					once.Do(func() { first = err })
				}
			}
		})
	}
	for _, it := range items {
		work <- it
	}
	close(work)
	wg.Wait()
	return first
}

func (n *nacosSide) close() error {
	for _, p := range n.publishers {
		p.Close()
	}
	return n.Side.Close()
}
