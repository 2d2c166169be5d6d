package haproxy_test

import (
	"context"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/providers/haproxy"
	"github.com/tandemhq/tandem/providers/probe"
	"github.com/tandemhq/tandem/spec"
)

// fleet is a real HAProxy in front of two groups of demo apps, driven only
// through the pieces the daemon uses: the HAProxy provider, the prober and
// the HTTP deployer (talking to the demo fleet's deploy endpoint).
type fleet struct {
	h       *haproxytest.HAProxy
	lb      *haproxy.Provider
	prober  *probe.Prober
	apps    *demoapp.Fleet
	deploy  providers.Deployer
	svc     *spec.Service
	binding spec.Binding
	active  spec.Group
	version int // the active group runs 1.0.<version>
}

func newFleet(t testing.TB, perGroup int) *fleet {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	apps := demoapp.NewFleet(ctx, nil)
	t.Cleanup(func() {
		require.NoError(t, apps.Close())
		cancel()
	})
	svc := &spec.Service{
		Name:    "demo",
		Active:  spec.GroupA,
		Version: "1.0.0",
		Traffic: []spec.Binding{{HAProxy: "edge", Backend: "demo"}},
		Health:  spec.Health{HTTP: &spec.HTTPProbe{Path: "/healthz"}, Version: spec.VersionSource{HTTP: "/version"}},
		Drain:   spec.Drain{Metrics: "/metrics", Evidence: &spec.DrainEvidence{Preset: spec.PresetDemo}, Signal: &spec.DrainSignal{HTTP: "/drain"}},
	}
	var servers []haproxytest.Server
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		var instances []spec.Instance
		for i := range perGroup {
			name := fmt.Sprintf("%s%d", g, i+1)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			a, err := apps.Start(demoapp.Options{Name: name, Version: "1.0.0", Group: string(g), Listener: ln, DrainJitter: 200 * time.Millisecond})
			require.NoError(t, err)
			instances = append(instances, a.Instance())
			weight := 0
			if g == spec.GroupA {
				weight = 100
			}
			servers = append(servers, haproxytest.Server{Name: name, Addr: a.Addr(), Weight: weight})
		}
		if g == spec.GroupA {
			svc.Groups.A.Instances = instances
		} else {
			svc.Groups.B.Instances = instances
		}
	}
	svc.Default()
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "demo", Servers: servers}}})
	deploySystem := httptest.NewServer(apps.DeployHandler())
	t.Cleanup(deploySystem.Close)
	d, err := deploy.New(spec.Deploy{
		HTTP:    &spec.HTTPDeploy{URL: deploySystem.URL + "/deploy", PollInterval: spec.Duration(20 * time.Millisecond)},
		Timeout: spec.Duration(30 * time.Second),
	}, deploy.Policy{}, nil)
	require.NoError(t, err)
	f := &fleet{h: h, lb: provider(t, h.Socket), prober: probe.New(nil, nil), apps: apps, deploy: d,
		svc: svc, binding: svc.Traffic[0], active: spec.GroupA}
	f.waitLB(t, spec.GroupA, providers.HealthHealthy)
	return f
}

// waitLB waits until HAProxy reports every server of g with health h.
func (f *fleet) waitLB(t testing.TB, g spec.Group, h providers.Health) {
	t.Helper()
	require.Eventually(t, func() bool {
		bs, err := f.lb.Backends(context.Background(), f.binding)
		if err != nil {
			return false
		}
		m := byID(bs)
		for _, in := range f.svc.Instances(g) {
			if m[in.ID].Health != h {
				return false
			}
		}
		return true
	}, 10*time.Second, 10*time.Millisecond, "group %s never became %s in HAProxy", g, h)
}

// release runs one drain-and-swap, the way the daemon does it: deploy the
// idle group at the next version, verify it, shift the weights, signal the
// old group to drain and wait for the evidence (HAProxy sessions and the
// apps' own in-flight and WebSocket gauges) to reach 0. It returns the time
// from the shift to the end of the drain.
func (f *fleet) release(t testing.TB) time.Duration {
	t.Helper()
	ctx := context.Background()
	from, to := f.active, f.active.Other()
	version := "1.0." + strconv.Itoa(f.version+1)

	_, err := f.deploy.Deploy(ctx, providers.DeployRequest{Service: f.svc.Name, Group: to, Version: version, Instances: f.svc.Instances(to)})
	require.NoError(t, err)
	for _, in := range f.svc.Instances(to) {
		require.Equal(t, providers.ProbeResult{Healthy: true, Version: version}, f.prober.Probe(ctx, f.svc, in))
	}
	f.waitLB(t, to, providers.HealthHealthy)

	start := time.Now()
	var changes []providers.WeightChange
	for _, in := range f.svc.Instances(to) {
		changes = append(changes, providers.WeightChange{ID: in.ID, IP: in.IP, Port: in.Port, Weight: 100})
	}
	for _, in := range f.svc.Instances(from) {
		changes = append(changes, providers.WeightChange{ID: in.ID, IP: in.IP, Port: in.Port, Weight: 0})
	}
	require.NoError(t, f.lb.SetWeights(ctx, f.binding, changes))
	for _, in := range f.svc.Instances(from) {
		require.NoError(t, f.prober.SignalDrain(ctx, f.svc, in))
	}
	require.Eventually(t, func() bool { return f.drained(from) }, 10*time.Second, 20*time.Millisecond,
		"group %s did not drain", from)
	f.active, f.version = to, f.version+1
	return time.Since(start)
}

// drained reports whether g has no session in HAProxy and no in-flight
// request or WebSocket by its own account.
func (f *fleet) drained(g spec.Group) bool {
	ctx := context.Background()
	bs, err := f.lb.Backends(ctx, f.binding)
	if err != nil {
		return false
	}
	m := byID(bs)
	for _, in := range f.svc.Instances(g) {
		ev, err := f.prober.Evidence(ctx, f.svc, in)
		if err != nil || m[in.ID].Sessions != 0 || ev != (providers.Evidence{}) {
			return false
		}
	}
	return true
}

// restartInPlace is the naive release: the active group is stopped and
// started again at the next version while it carries the traffic. The
// apps shut down gracefully; they are started again once HAProxy has seen
// them down, as a real process start (seconds for a JVM) always lets it.
func (f *fleet) restartInPlace(t testing.TB) {
	t.Helper()
	var stopped []demoapp.Options
	for _, in := range f.svc.Instances(f.active) {
		o, err := f.apps.Stop(in.Addr())
		require.NoError(t, err)
		stopped = append(stopped, o)
	}
	f.waitLB(t, f.active, providers.HealthUnhealthy)
	f.version++
	for _, o := range stopped {
		o.Version = "1.0." + strconv.Itoa(f.version)
		_, err := f.apps.Start(o)
		require.NoError(t, err)
	}
	f.waitLB(t, f.active, providers.HealthHealthy)
}

// load starts the users' traffic through HAProxy and waits until every
// WebSocket client is connected.
func (f *fleet) load(t testing.TB, rate, clients int) *loadgen.Generator {
	t.Helper()
	g, err := loadgen.Start(context.Background(), loadgen.Config{
		URL: f.h.URL("demo"), Rate: rate, WebSockets: clients, MessageInterval: 50 * time.Millisecond, Duration: 5 * time.Minute,
	})
	require.NoError(t, err)
	t.Cleanup(func() { g.Stop() })
	f.waitConnected(t, g, clients)
	return g
}

func (f *fleet) waitConnected(t testing.TB, g *loadgen.Generator, clients int) {
	t.Helper()
	require.Eventually(t, func() bool { return g.Snapshot().Connected == clients }, 10*time.Second, 10*time.Millisecond)
}

// waitServed waits until the active version has answered n requests.
func (f *fleet) waitServed(t testing.TB, g *loadgen.Generator, n int) {
	t.Helper()
	version := "1.0." + strconv.Itoa(f.version)
	require.Eventually(t, func() bool { return served(g.Snapshot())[version] >= n }, 10*time.Second, 10*time.Millisecond,
		"version %s did not serve %d requests", version, n)
}

// served counts the requests each version answered.
func served(r loadgen.Report) map[string]int {
	m := map[string]int{}
	for _, p := range r.Timeline {
		m[p.Version] += p.Requests
	}
	return m
}

func TestReleasesThroughHAProxyLoseNothingUnderLoad(t *testing.T) {
	const rate, clients, releases = 300, 50, 4
	f := newFleet(t, 2)
	g := f.load(t, rate, clients)
	// Each version serves half a second of the load before the next release.
	f.waitServed(t, g, rate/2)
	for i := range releases {
		d := f.release(t)
		f.waitConnected(t, g, clients)
		f.waitServed(t, g, rate/2)
		t.Logf("release %d: group %s at 1.0.%d; shift to drained in %s", i+1, f.active, f.version, d.Round(time.Millisecond))
	}
	r := g.Stop()
	t.Log(r)

	require.True(t, r.Clean(), r.String())
	require.Equal(t, map[int]int{1001: clients * releases}, r.Closes, "every WebSocket was moved by a 1001 close at every release")
	require.Equal(t, clients*releases, r.Reconnects)
	require.Equal(t, r.Messages, r.Echoed)

	// Each version answered from its own group only.
	group := map[string]string{"1.0.0": "A", "1.0.1": "B", "1.0.2": "A", "1.0.3": "B", "1.0.4": "A"}
	for _, p := range r.Timeline {
		require.Zero(t, p.Failed)
		require.Equal(t, group[p.Version], p.Backend[:1], "version %s answered from %s", p.Version, p.Backend)
	}
	require.Len(t, served(r), releases+1, "versions served: %v", served(r))
}

func TestARestartInPlaceLosesRequestsAndConnections(t *testing.T) {
	const rate, clients = 300, 50
	f := newFleet(t, 2)
	g := f.load(t, rate, clients)
	f.waitServed(t, g, rate/2)
	f.restartInPlace(t)
	f.waitConnected(t, g, clients)
	r := g.Stop()
	t.Log(r)

	require.False(t, r.Clean())
	require.Positive(t, r.Failed, "requests failed while the active group restarted")
	require.Positive(t, r.DialFailures, "WebSocket clients could not reconnect while the active group restarted")
}

// writeTimeline writes the run's timeline to $TANDEM_RESULTS/name, when set.
func writeTimeline(b *testing.B, r loadgen.Report, name string) {
	dir := os.Getenv("TANDEM_RESULTS")
	if dir == "" {
		return
	}
	require.NoError(b, os.MkdirAll(dir, 0o755))
	out, err := os.Create(filepath.Join(dir, name))
	require.NoError(b, err)
	defer out.Close()
	require.NoError(b, r.WriteTimelineCSV(out))
}

// BenchmarkReleaseUnderLoad measures drain-and-swap releases through
// HAProxy under 600 POST/s and 200 WebSocket clients; it fails unless users
// noticed nothing. ms-drain/release is the time from the weight shift to
// the old group's evidence at 0 (drain jitter 200ms included).
//
//	go test ./providers/haproxy -run '^$' -bench ReleaseUnderLoad -benchtime 10x
func BenchmarkReleaseUnderLoad(b *testing.B) {
	const rate, clients = 600, 200
	f := newFleet(b, 2)
	g := f.load(b, rate, clients)
	f.waitServed(b, g, rate/2)
	var drain time.Duration
	for b.Loop() {
		drain += f.release(b)
		f.waitConnected(b, g, clients)
		f.waitServed(b, g, rate/2)
	}
	r := g.Stop()
	b.Log(r)
	writeTimeline(b, r, "haproxy-release-timeline.csv")
	b.ReportMetric(float64(drain.Milliseconds())/float64(b.N), "ms-drain/release")
	b.ReportMetric(float64(r.Requests), "requests")
	b.ReportMetric(float64(r.Failed), "failed")
	b.ReportMetric(float64(r.Messages), "messages")
	b.ReportMetric(float64(r.Lost), "lost")
	b.ReportMetric(float64(r.Abnormal), "abnormal")
	if !r.Clean() {
		b.Errorf("users noticed the releases: %s", r)
	}
}

// BenchmarkRestartInPlaceUnderLoad is the naive baseline beside it: the
// active group restarted in place under the same load. It reports what
// users lost per restart.
//
//	go test ./providers/haproxy -run '^$' -bench RestartInPlaceUnderLoad -benchtime 5x
func BenchmarkRestartInPlaceUnderLoad(b *testing.B) {
	const rate, clients = 600, 200
	f := newFleet(b, 2)
	g := f.load(b, rate, clients)
	f.waitServed(b, g, rate/2)
	for b.Loop() {
		f.restartInPlace(b)
		f.waitConnected(b, g, clients)
		f.waitServed(b, g, rate/2)
	}
	r := g.Stop()
	b.Log(r)
	writeTimeline(b, r, "haproxy-restart-in-place-timeline.csv")
	n := float64(b.N)
	b.ReportMetric(float64(r.Failed)/n, "failed/restart")
	b.ReportMetric(float64(r.DialFailures)/n, "failed-connects/restart")
	b.ReportMetric(float64(r.Lost)/n, "lost/restart")
	b.ReportMetric(float64(r.Abnormal)/n, "abnormal/restart")
}
