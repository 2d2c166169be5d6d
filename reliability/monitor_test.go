package reliability_test

import (
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/spec"
)

// sampleInterval is how often the monitor looks at the live state.
const sampleInterval = 5 * time.Millisecond

// monitor samples the live state of the environment continuously, straight
// from the systems (the Alibaba emulator's weights, the Nacos emulator's
// enabled flags, the apps' health and versions), and checks invariants 1-4
// of the README ("The transition") at every sample:
//
//  1. every binding has weight on a healthy instance that the load
//     balancer itself reports healthy (the emulator's own health checks:
//     Healthy, or Unavailable when its checks are off);
//  2. the registry never has all of a service's instances disabled (an
//     instance's enabled flag is the operator override Tandem writes, which
//     outlives re-registrations and Nacos restarts; an instance without one
//     is enabled as it registers);
//  3. no group is deployed while it has weight anywhere or is enabled;
//  4. an instance gains weight (or is enabled) only when it is healthy and
//     runs the version its group must run: the version of the last commit
//     that made that group active (what a release or revert verified).
type monitor struct {
	t        testing.TB
	stage    *stage.Stage
	services []*spec.Service

	sampling   sync.Mutex // one sample at a time, so that each is compared with the one before
	mu         sync.Mutex
	expected   map[string]map[spec.Group]string // service -> group -> version
	deploying  map[string]map[spec.Group]int
	exempt     map[string]bool // addr: an injected health failure, not counted against invariant 1
	prev       map[string]instanceLive
	samples    int
	gains      int
	violations []string
	done       chan struct{}
	stopped    chan struct{}
}

// instanceLive is what one sample saw of one instance.
type instanceLive struct {
	weights    map[string]int    // by binding key
	lbStatus   map[string]string // by binding key: the emulator's health-check status
	registered bool
	enabled    bool // in the registry (see invariant 2); false without one
	running    bool
	healthy    bool
	version    string
}

// startMonitor samples until the test ends (or stop). Every service starts
// with both groups expected at its initial version.
func startMonitor(t testing.TB, s *stage.Stage, names ...string) *monitor {
	m := &monitor{t: t, stage: s, expected: map[string]map[spec.Group]string{}, deploying: map[string]map[spec.Group]int{},
		exempt: map[string]bool{}, done: make(chan struct{}), stopped: make(chan struct{})}
	for _, name := range names {
		svc, ok := s.Service(name)
		require.True(t, ok, name)
		for _, b := range svc.Traffic {
			require.Contains(t, []string{spec.KindALB, spec.KindSLB}, b.Kind(), "the monitor reads weights from the Alibaba emulator")
		}
		if svc.Registry != nil {
			require.NotNil(t, s.NacosEmulator(), "the monitor reads enabled flags from the Nacos emulator")
		}
		m.services = append(m.services, svc)
		m.expected[name] = map[spec.Group]string{spec.GroupA: svc.Version, spec.GroupB: svc.Version}
		m.deploying[name] = map[spec.Group]int{}
	}
	m.sample()
	go func() {
		defer close(m.stopped)
		tick := time.NewTicker(sampleInterval)
		defer tick.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-tick.C:
				m.sample()
			}
		}
	}()
	t.Cleanup(m.stop)
	return m
}

func (m *monitor) stop() {
	select {
	case <-m.done:
	default:
		close(m.done)
	}
	<-m.stopped
}

// committed tells the monitor that Git now asks for group g at version.
func (m *monitor) committed(service string, g spec.Group, version string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.expected[service][g] = version
}

// exemptHealth stops counting an injected health failure of addr against
// invariant 1 (the fault makes the serving group unhealthy; Tandem's part
// is to swap back).
func (m *monitor) exemptHealth(addr string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.exempt[addr] = true
}

// deployStarted checks invariant 3 at the moment a deploy arrives and
// marks the group as being deployed until deployEnded.
func (m *monitor) deployStarted(service string, g spec.Group) {
	m.mu.Lock()
	m.deploying[service][g]++
	m.mu.Unlock()
	m.sample()
}

func (m *monitor) deployEnded(service string, g spec.Group) {
	m.sample()
	m.mu.Lock()
	m.deploying[service][g]--
	m.mu.Unlock()
}

// requireNoViolation asserts that no sample broke an invariant.
func (m *monitor) requireNoViolation() {
	m.t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	require.Empty(m.t, m.violations, "invariant violations seen by the monitor (%d samples)", m.samples)
	require.Positive(m.t, m.samples)
}

// stats returns how many samples were taken and how many weight or enable
// gains were checked against invariant 4.
func (m *monitor) stats() (samples, gains int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.samples, m.gains
}

// live returns the last sample of every instance of a service, by address.
func (m *monitor) live(service string) map[string]instanceLive {
	m.sample()
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]instanceLive{}
	for _, svc := range m.services {
		if svc.Name != service {
			continue
		}
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range svc.Instances(g) {
				out[in.Addr()] = m.prev[svc.Name+"/"+in.Addr()]
			}
		}
	}
	return out
}

// sample reads the live state once and checks the invariants.
func (m *monitor) sample() {
	m.sampling.Lock()
	defer m.sampling.Unlock()
	now, err := m.read()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.samples++
	at := time.Now().Format("15:04:05.000")
	bad := func(format string, args ...any) {
		if len(m.violations) < 50 {
			m.violations = append(m.violations, at+" "+fmt.Sprintf(format, args...))
		}
	}
	if err != nil {
		bad("reading the live state: %v", err)
		return
	}
	for _, svc := range m.services {
		enabled := 0
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range svc.Instances(g) {
				key := svc.Name + "/" + in.Addr()
				cur, before := now[key], m.prev[key]
				if cur.enabled {
					enabled++
				}
				carrying := cur.enabled
				for _, w := range cur.weights {
					carrying = carrying || w > 0
				}
				if m.deploying[svc.Name][g] > 0 && carrying {
					bad("invariant 3: %s group %s is being deployed while %s carries traffic (%s)", svc.Name, g, in, cur)
				}
				gained := cur.enabled && !before.enabled
				for b, w := range cur.weights {
					gained = gained || (w > 0 && before.weights[b] == 0)
				}
				if gained && m.prev != nil {
					m.gains++
					if want := m.expected[svc.Name][g]; !cur.running || !cur.healthy || cur.version != want {
						bad("invariant 4: %s %s (group %s) gained traffic but is not verified at %s: %s", svc.Name, in, g, want, cur)
					}
				}
			}
		}
		if svc.Registry != nil && enabled == 0 {
			bad("invariant 2: every instance of %s is disabled: %s", svc.Name, describe(svc, now))
		}
		for _, b := range svc.Traffic {
			healthy := 0
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				for _, in := range svc.Instances(g) {
					cur := now[svc.Name+"/"+in.Addr()]
					lbOK := cur.lbStatus[b.Key()] == emulator.StatusHealthy || cur.lbStatus[b.Key()] == emulator.StatusUnavailable
					if cur.running && ((cur.healthy && lbOK) || m.exempt[in.Addr()]) {
						healthy += cur.weights[b.Key()]
					}
				}
			}
			if healthy == 0 {
				bad("invariant 1: %s has no weight on a healthy instance: %s", b.Key(), describe(svc, now))
			}
		}
	}
	m.prev = now
}

// read takes one sample of the live state, keyed service/addr.
func (m *monitor) read() (map[string]instanceLive, error) {
	out := map[string]instanceLive{}
	emu, nacos, fleet := m.stage.Alibaba(), m.stage.NacosEmulator(), m.stage.Fleet()
	for _, svc := range m.services {
		byID, statusByID := map[string]map[string]int{}, map[string]map[string]string{}
		for _, b := range svc.Traffic {
			t := emulator.Target{ServerGroup: b.ServerGroup, LoadBalancer: b.LoadBalancer, VServerGroup: b.VServerGroup}
			// One read: each server's weight with its health-check status.
			hs, err := emu.Health(t)
			if err != nil {
				return nil, err
			}
			for _, h := range hs {
				if byID[h.Server.ID] == nil {
					byID[h.Server.ID], statusByID[h.Server.ID] = map[string]int{}, map[string]string{}
				}
				byID[h.Server.ID][b.Key()] = h.Server.Weight
				statusByID[h.Server.ID][b.Key()] = h.Status
			}
		}
		reg := map[string]bool{}
		r := svc.Registry
		if r != nil {
			for _, in := range nacos.Instances(r.Nacos.Namespace, r.Nacos.Group, r.Nacos.Service) {
				reg[fmt.Sprintf("%s:%d", in.Ip, in.Port)] = in.Enable
			}
		}
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range svc.Instances(g) {
				il := instanceLive{weights: byID[in.ID], lbStatus: statusByID[in.ID]}
				if r != nil {
					il.enabled, il.registered = reg[in.Addr()]
					if o, ok := nacos.Override(r.Nacos.Namespace, r.Nacos.Group, r.Nacos.Service, in.IP, in.Port, r.Nacos.Cluster); ok {
						il.enabled = o.Enabled
					} else if !il.registered {
						il.enabled = true
					}
				}
				if a, ok := fleet.App(in.Addr()); ok {
					il.running, il.healthy, il.version = true, a.Healthy(), a.Version()
				}
				out[svc.Name+"/"+in.Addr()] = il
			}
		}
	}
	return out, nil
}

func (il instanceLive) String() string {
	var ws []string
	for b, w := range il.weights {
		ws = append(ws, fmt.Sprintf("%s=%d", b, w))
	}
	sort.Strings(ws)
	return fmt.Sprintf("weights [%s] registered=%t enabled=%t running=%t healthy=%t version=%s",
		strings.Join(ws, " "), il.registered, il.enabled, il.running, il.healthy, il.version)
}

func describe(svc *spec.Service, now map[string]instanceLive) string {
	var parts []string
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Instances(g) {
			parts = append(parts, fmt.Sprintf("%s: %s", in.ID, now[svc.Name+"/"+in.Addr()]))
		}
	}
	return strings.Join(parts, "; ")
}
