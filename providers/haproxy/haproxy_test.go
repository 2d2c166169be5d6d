package haproxy_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/haproxy"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// app starts a demo app named name on a free loopback port.
func app(t testing.TB, name string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := demoapp.Start(context.Background(), demoapp.Options{Name: name, Version: "1.0.0", Listener: ln, DrainJitter: 20 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Stop() })
	return a.Addr()
}

// deadAddr is a loopback address where nothing listens.
func deadAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	return addr
}

func provider(t testing.TB, socket string) *haproxy.Provider {
	t.Helper()
	p, err := haproxy.New(spec.HAProxyProvider{Name: "edge", Socket: socket, Timeout: spec.Duration(2 * time.Second)}, nil)
	require.NoError(t, err)
	return p
}

func binding(backend string) spec.Binding {
	return spec.Binding{HAProxy: "edge", Backend: backend, Weight: 100}
}

// byID indexes backends by server name.
func byID(bs []providers.Backend) map[string]providers.Backend {
	m := map[string]providers.Backend{}
	for _, b := range bs {
		m[b.ID] = b
	}
	return m
}

// waitHealthy waits until every named server passed its health checks.
func waitHealthy(t testing.TB, p *haproxy.Provider, b spec.Binding, ids ...string) {
	t.Helper()
	require.Eventually(t, func() bool {
		bs, err := p.Backends(context.Background(), b)
		if err != nil {
			return false
		}
		m := byID(bs)
		for _, id := range ids {
			if m[id].Health != providers.HealthHealthy {
				return false
			}
		}
		return true
	}, 10*time.Second, 20*time.Millisecond)
}

// hits POSTs n requests through the frontend and counts them by X-Backend.
func hits(t testing.TB, url string, n int) map[string]int {
	t.Helper()
	counts := map[string]int{}
	for range n {
		resp, err := http.Post(url+"/echo", "text/plain", strings.NewReader("x"))
		require.NoError(t, err)
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		counts[resp.Header.Get("X-Backend")]++
	}
	return counts
}

func TestBackendsReportsWeightHealthSessionsAndAddress(t *testing.T) {
	s1, s2, s3 := app(t, "s1"), app(t, "s2"), deadAddr(t)
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "s1", Addr: s1, Weight: 100}, {Name: "s2", Addr: s2, Weight: 0}, {Name: "s3", Addr: s3, Weight: 50},
	}}}})
	p := provider(t, h.Socket)
	b := binding("web")
	waitHealthy(t, p, b, "s1", "s2")
	require.Eventually(t, func() bool {
		bs, err := p.Backends(t.Context(), b)
		return err == nil && byID(bs)["s3"].Health == providers.HealthUnhealthy
	}, 10*time.Second, 20*time.Millisecond)

	bs, err := p.Backends(t.Context(), b)
	require.NoError(t, err)
	host := func(addr string) (string, int) {
		tcp, err := net.ResolveTCPAddr("tcp", addr)
		require.NoError(t, err)
		return tcp.IP.String(), tcp.Port
	}
	want := []providers.Backend{
		{ID: "s1", Weight: 100, Health: providers.HealthHealthy, Sessions: 0, Status: "UP"},
		{ID: "s2", Weight: 0, Health: providers.HealthHealthy, Sessions: 0, Status: "UP"},
		{ID: "s3", Weight: 50, Health: providers.HealthUnhealthy, Sessions: 0, Status: "DOWN", Reason: "L4CON Connection refused"},
	}
	for i, addr := range []string{s1, s2, s3} {
		want[i].IP, want[i].Port = host(addr)
	}
	require.Equal(t, want, bs)
}

func TestSetWeightsZeroDrainsAServerAndAPositiveWeightRestoresIt(t *testing.T) {
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "s1", Addr: app(t, "s1"), Weight: 100}, {Name: "s2", Addr: app(t, "s2"), Weight: 100}, {Name: "s3", Addr: app(t, "s3"), Weight: 0},
	}}}})
	p := provider(t, h.Socket)
	b := binding("web")
	waitHealthy(t, p, b, "s1", "s2", "s3")

	require.NoError(t, p.SetWeights(t.Context(), b, []providers.WeightChange{{ID: "s1", Weight: 0}}))
	bs, err := p.Backends(t.Context(), b)
	require.NoError(t, err)
	drained := byID(bs)["s1"]
	require.Equal(t, []any{0, "DRAIN", providers.HealthHealthy}, []any{drained.Weight, drained.Status, drained.Health})
	require.Equal(t, map[string]int{"s2": 20}, hits(t, h.URL("web"), 20), "a drained server gets no new requests")

	// Drain keeps the user weight: `state ready` alone brings s1 back at 100.
	require.Empty(t, runtimeCommand(t, h.Socket, "set server web/s1 state ready"))
	bs, err = p.Backends(t.Context(), b)
	require.NoError(t, err)
	require.Equal(t, 100, byID(bs)["s1"].Weight)
	require.Equal(t, "UP", byID(bs)["s1"].Status)

	// A positive weight leaves drain and takes effect: s3 (configured with
	// weight 0) and s1 share the traffic 3:1 once s2 is drained.
	require.NoError(t, p.SetWeights(t.Context(), b, []providers.WeightChange{
		{ID: "s1", Weight: 25}, {ID: "s2", Weight: 0}, {ID: "s3", Weight: 75},
	}))
	bs, err = p.Backends(t.Context(), b)
	require.NoError(t, err)
	m := byID(bs)
	require.Equal(t, []int{25, 0, 75}, []int{m["s1"].Weight, m["s2"].Weight, m["s3"].Weight})
	got := hits(t, h.URL("web"), 40)
	require.Equal(t, 40, got["s1"]+got["s3"], "the drained s2 gets nothing: %v", got)
	require.Greater(t, got["s3"], 2*got["s1"], "roundrobin by weight 25:75: %v", got)

	// Setting what is already set changes nothing and succeeds.
	require.NoError(t, p.SetWeights(t.Context(), b, []providers.WeightChange{{ID: "s2", Weight: 0}, {ID: "s3", Weight: 75}}))
}

// runtimeCommand sends one command to the runtime API and returns the
// trimmed reply.
func runtimeCommand(t testing.TB, socket, cmd string) string {
	t.Helper()
	c, err := net.Dial("unix", socket)
	require.NoError(t, err)
	defer c.Close()
	_, err = io.WriteString(c, cmd+"\n")
	require.NoError(t, err)
	out, err := io.ReadAll(c)
	require.NoError(t, err)
	return strings.TrimSpace(string(out))
}

// interpose puts a unix socket in front of the runtime API and calls
// observe, in order, with every command that passes and HAProxy's reply.
func interpose(t testing.TB, socket string, observe func(cmd, reply string)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "interposed.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	var mu sync.Mutex // one command at a time, so observe sees HAProxy's order
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Go(func() {
				defer c.Close()
				line, err := bufio.NewReader(c).ReadString('\n')
				if err != nil {
					return
				}
				mu.Lock()
				defer mu.Unlock()
				up, err := net.Dial("unix", socket)
				if err != nil {
					return
				}
				defer up.Close()
				_, _ = io.WriteString(up, line)
				reply, _ := io.ReadAll(up)
				observe(strings.TrimSpace(line), string(reply))
				_, _ = c.Write(reply)
			})
		}
	})
	return path
}

// recorder keeps the commands that change something.
type recorder struct {
	mu   sync.Mutex
	sets []string
}

func (r *recorder) observe(cmd, _ string) {
	if !strings.HasPrefix(cmd, "show ") {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.sets = append(r.sets, cmd)
	}
}

func (r *recorder) changes() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.sets)
}

func record(t testing.TB, socket string) (string, *recorder) {
	rec := &recorder{}
	return interpose(t, socket, rec.observe), rec
}

func TestADrainedServerWhoseChecksFailStillReportsWeightZero(t *testing.T) {
	// s2's app is not running, as while a deploy restarts it: its checks
	// fail and show stat says DOWN with its user weight.
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "s1", Addr: app(t, "s1"), Weight: 100}, {Name: "s2", Addr: deadAddr(t), Weight: 100},
	}}}})
	p := provider(t, h.Socket)
	b := binding("web")
	waitHealthy(t, p, b, "s1")
	require.NoError(t, p.SetWeights(t.Context(), b, []providers.WeightChange{{ID: "s2", Weight: 0}}))
	require.Eventually(t, func() bool {
		bs, err := p.Backends(t.Context(), b)
		return err == nil && byID(bs)["s2"].Status == "DOWN"
	}, 10*time.Second, 20*time.Millisecond, "s2's checks fail")

	bs, err := p.Backends(t.Context(), b)
	require.NoError(t, err)
	down := byID(bs)["s2"]
	require.Equal(t, []any{0, "DOWN", providers.HealthUnhealthy}, []any{down.Weight, down.Status, down.Health})
	require.NoError(t, p.SetWeights(t.Context(), b, []providers.WeightChange{{ID: "s2", Weight: 0}}), "draining it again reads back weight 0")
}

func TestSetWeightsRaisesBeforeItLowers(t *testing.T) {
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "a1", Addr: app(t, "a1"), Weight: 100}, {Name: "a2", Addr: app(t, "a2"), Weight: 100},
		{Name: "b1", Addr: app(t, "b1"), Weight: 0}, {Name: "b2", Addr: app(t, "b2"), Weight: 0},
	}}}})
	socket, rec := record(t, h.Socket)
	p := provider(t, socket)
	require.NoError(t, p.SetWeights(t.Context(), binding("web"), []providers.WeightChange{
		{ID: "a1", Weight: 0}, {ID: "b1", Weight: 100}, {ID: "a2", Weight: 0}, {ID: "b2", Weight: 100},
	}))
	require.Equal(t, []string{
		"set server web/b1 weight 100", "set server web/b1 state ready",
		"set server web/b2 weight 100", "set server web/b2 state ready",
		"set server web/a1 state drain", "set server web/a2 state drain",
	}, rec.changes())
}

func TestSetWeightsRefusesBadChangesAndChangesNothing(t *testing.T) {
	s1 := app(t, "s1")
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "s1", Addr: s1, Weight: 100}, {Name: "s2", Addr: app(t, "s2"), Weight: 100},
	}}}})
	socket, rec := record(t, h.Socket)
	p := provider(t, socket)
	for _, tc := range []struct {
		name    string
		b       spec.Binding
		changes []providers.WeightChange
		reason  string
		errPart string
	}{
		{"unknown server", binding("web"), []providers.WeightChange{{ID: "s1", Weight: 0}, {ID: "s9", Weight: 100}}, "NotFound", `backend web has no server "s9"`},
		{"weight above 256", binding("web"), []providers.WeightChange{{ID: "s1", Weight: 257}}, "InvalidParameter", "server s1: weight 257 is outside 0..256"},
		{"negative weight", binding("web"), []providers.WeightChange{{ID: "s2", Weight: -1}}, "InvalidParameter", "server s2: weight -1 is outside 0..256"},
		{"server changed twice", binding("web"), []providers.WeightChange{{ID: "s1", Weight: 0}, {ID: "s1", Weight: 100}}, "InvalidParameter", "server s1 is changed twice"},
		{"address that is not the server's", binding("web"), []providers.WeightChange{{ID: "s1", IP: "10.0.0.1", Port: 8080, Weight: 0}}, "InvalidParameter", "server s1 is " + s1 + " in HAProxy, not 10.0.0.1:8080"},
		{"every server at weight 0", binding("web"), []providers.WeightChange{{ID: "s1", Weight: 0}, {ID: "s2", Weight: 0}}, "WouldZeroAll", "the change would leave every server of backend web at weight 0"},
		{"unknown backend", binding("nope"), []providers.WeightChange{{ID: "s1", Weight: 0}}, "NotFound", `haproxy edge has no backend "nope"`},
		{"binding of another kind", spec.Binding{ALB: "edge", ServerGroup: "sgp-1"}, []providers.WeightChange{{ID: "s1", Weight: 0}}, "InvalidParameter", "binding alb:edge/sgp-1 is not an haproxy backend"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := p.SetWeights(t.Context(), tc.b, tc.changes)
			var perm *providers.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, tc.reason, perm.Reason)
			require.ErrorContains(t, err, "setting weights on "+tc.b.Key())
			require.ErrorContains(t, err, tc.errPart)
			require.Empty(t, rec.changes(), "nothing may be changed")
		})
	}
	bs, err := p.Backends(t.Context(), binding("web"))
	require.NoError(t, err)
	require.Equal(t, 100, byID(bs)["s1"].Weight)
	require.Equal(t, 100, byID(bs)["s2"].Weight)
}

func TestSetWeightsReportsHAProxysRefusalNamingBackendAndServer(t *testing.T) {
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "st", Balance: "static-rr", Servers: []haproxytest.Server{
		{Name: "s1", Addr: app(t, "s1"), Weight: 100}, {Name: "s2", Addr: app(t, "s2"), Weight: 100},
	}}}})
	p := provider(t, h.Socket)
	err := p.SetWeights(t.Context(), binding("st"), []providers.WeightChange{{ID: "s2", Weight: 50}})
	var reply *haproxy.ReplyError
	require.ErrorAs(t, err, &reply)
	require.Equal(t, "set server st/s2 weight 50", reply.Command)
	require.Equal(t, "Backend is using a static LB algorithm and only accepts weights '0%' and '100%'.", reply.Reply)
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "HAProxyRefused", perm.Reason)
	require.EqualError(t, err, `setting weights on haproxy:edge/st: haproxy refused "set server st/s2 weight 50": `+reply.Reply)
}

func TestCloseSessionsEndsWebSocketTunnelsThatDrainLeavesOpen(t *testing.T) {
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "ws", Servers: []haproxytest.Server{
		{Name: "s1", Addr: app(t, "s1"), Weight: 100}, {Name: "s2", Addr: app(t, "s2"), Weight: 0},
	}}}})
	p := provider(t, h.Socket)
	b := binding("ws")
	waitHealthy(t, p, b, "s1", "s2")

	var ended sync.WaitGroup
	codes := make(chan websocket.StatusCode, 3)
	for range 3 {
		c, resp, err := websocket.Dial(t.Context(), "ws://"+h.Frontend("ws")+"/ws", nil)
		require.NoError(t, err)
		require.Equal(t, "s1", resp.Header.Get("X-Backend"))
		t.Cleanup(func() { _ = c.CloseNow() })
		ended.Go(func() {
			_, _, err := c.Read(context.Background())
			codes <- websocket.CloseStatus(err)
		})
	}
	sessions := func(id string) int {
		bs, err := p.Backends(t.Context(), b)
		require.NoError(t, err)
		return byID(bs)[id].Sessions
	}
	require.Eventually(t, func() bool { return sessions("s1") == 3 }, 5*time.Second, 10*time.Millisecond)

	// Drained, s1 keeps its tunnels: drain stops only new traffic.
	require.NoError(t, p.SetWeights(t.Context(), b, []providers.WeightChange{{ID: "s2", Weight: 100}, {ID: "s1", Weight: 0}}))
	require.Equal(t, 3, sessions("s1"))

	n, err := p.CloseSessions(t.Context(), b, []string{"s1", "s2"})
	require.NoError(t, err)
	require.Equal(t, 3, n)
	ended.Wait()
	close(codes)
	for code := range codes {
		require.Equal(t, websocket.StatusCode(-1), code, "shutdown sessions closes TCP without a close frame")
	}
	require.Eventually(t, func() bool { return sessions("s1") == 0 }, 5*time.Second, 10*time.Millisecond)

	_, err = p.CloseSessions(t.Context(), b, []string{"s1", "s7"})
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.EqualError(t, err, "closing sessions on haproxy:edge/ws: backend ws has no server s7")
}

func TestTheTCPSocketWorksLikeTheUnixSocket(t *testing.T) {
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "web", Servers: []haproxytest.Server{
		{Name: "s1", Addr: app(t, "s1"), Weight: 100}, {Name: "s2", Addr: app(t, "s2"), Weight: 100},
	}}}})
	p := provider(t, h.TCPSocket)
	require.NoError(t, p.SetWeights(t.Context(), binding("web"), []providers.WeightChange{{ID: "s2", Weight: 0}}))
	bs, err := p.Backends(t.Context(), binding("web"))
	require.NoError(t, err)
	require.Equal(t, 0, byID(bs)["s2"].Weight)
	require.True(t, strings.HasPrefix(byID(bs)["s2"].Status, "DRAIN"), byID(bs)["s2"].Status)
}

func TestUnansweredCommandsFailAfterTheTimeoutOrCancellation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "silent.sock")
	ln, err := net.Listen("unix", path)
	require.NoError(t, err)
	var conns sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		conns.Wait()
	})
	conns.Go(func() { // accepts, reads, never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Go(func() {
				defer c.Close()
				_, _ = io.Copy(io.Discard, c)
			})
		}
	})
	p, err := haproxy.New(spec.HAProxyProvider{Name: "edge", Socket: path, Timeout: spec.Duration(100 * time.Millisecond)}, nil)
	require.NoError(t, err)
	_, err = p.Backends(t.Context(), binding("web"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorContains(t, err, "haproxy edge: show stat -1 6 -1: ")
	require.False(t, providers.IsPermanent(err))

	ctx, cancel := context.WithCancel(t.Context())
	p = provider(t, path)
	done := make(chan error, 1)
	go func() {
		_, err := p.Backends(ctx, binding("web"))
		done <- err
	}()
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)
}

func TestAnUnreachableSocketIsATransientErrorNamingIt(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing.sock")
	_, err := provider(t, path).Backends(t.Context(), binding("web"))
	require.ErrorContains(t, err, "haproxy edge: connecting to runtime API "+path)
	require.False(t, providers.IsPermanent(err))
	var opErr *net.OpError
	require.True(t, errors.As(err, &opErr))
}

func TestNewRefusesASocketThatIsNeitherPathNorHostPort(t *testing.T) {
	for socket, msg := range map[string]string{
		"":           `haproxy provider "edge": socket is required`,
		"admin.sock": `haproxy provider "edge": socket "admin.sock" must be a unix socket path (containing '/') or host:port`,
	} {
		_, err := haproxy.New(spec.HAProxyProvider{Name: "edge", Socket: socket}, nil)
		require.EqualError(t, err, msg)
	}
}

// TestHealthFromStatusAndLastCheck: a server with checks that has not
// passed them yet counts as initial, never healthy; servers without checks
// give no health.
func TestHealthFromStatusAndLastCheck(t *testing.T) {
	for _, tc := range []struct {
		status, check string
		want          providers.Health
	}{
		{"UP", "L7OK", providers.HealthHealthy},
		{"UP 1/2", "L7STS", providers.HealthUnhealthy}, // going down
		{"DRAIN", "L4OK", providers.HealthHealthy},
		{"MAINT", "L4CON", providers.HealthUnhealthy},
		{"DOWN", "L4CON", providers.HealthUnhealthy},
		{"DOWN 1/2", "L7OK", providers.HealthInitial}, // rising, not yet past rise
		{"UP", "INI", providers.HealthInitial},        // no check has run yet
		{"DOWN", "* INI", providers.HealthInitial},
		{"no check", "", providers.HealthUnknown},
	} {
		require.Equal(t, tc.want, haproxy.Health(tc.status, tc.check), "%s %s", tc.status, tc.check)
	}
}
