package nacos_test

// The conformance suite: one set of behaviours, run against the emulator
// (v1 and v3 modes, auth off and on) and against every real server that
// internal/nacostest can start. Apps register with the real SDK, as Spring
// Cloud and Dubbo apps do (nacosapp.Register: ephemeral, gRPC, metadata
// version); a consumer is a second SDK client with a subscription. Where
// real servers differ, the target's expectations say so.

import (
	"context"
	"fmt"
	"os"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/providers/nacos/internal/sdk"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/spec"
)

// waitLimit bounds every wait on a push or a listed state.
const waitLimit = 15 * time.Second

// server is a running Nacos (real or emulated), as internal/nacostest
// describes one.
type server struct {
	HTTPAddr    string
	GRPCPort    int
	ContextPath string
	API         string // v1 or v3
	Username    string
	Password    string
	emu         *emulator.Emulator // nil for a real server
	// restart stops the server, calls down while it is stopped, and
	// starts it again on the same addresses with what it persisted.
	restart func(down func()) error
}

// expectations are what a target does where servers differ.
type expectations struct {
	// restartKeepsOverride: an app that re-registers on the same ip:port
	// right after stopping comes back with the operator's enabled=false
	// (Nacos: the override outlives the connection by 60 s,
	// docs/nacos-servers.md). r-nacos keeps the state on the instance and
	// loses it on reconnect (docs/nacos-servers.md).
	restartKeepsOverride bool
	// serverRestartKeepsOverride: after the server itself restarts, an
	// instance the operator disabled comes back disabled when its app's
	// SDK registers it again (Nacos persists the override through Raft);
	// r-nacos forgets it (docs/nacos-servers.md).
	serverRestartKeepsOverride bool
	// v1WritesGone: the server answers the v1 write API with 410 (Nacos 3.x,
	// docs/nacos-servers.md), so a provider configured with api v1 fails
	// permanently.
	v1WritesGone bool
	// listOmitsDisabled: the operator list (v1 catalog) leaves disabled
	// instances out; they are only shown one by one by GET /v1/ns/instance
	// (r-nacos, docs/nacos-servers.md). The provider's operator view lacks
	// them unless the caller names the addresses it expects.
	listOmitsDisabled bool
	// firstMetadataPinned: the server keeps the metadata an address first
	// registered with until 60 s after the instance left, so an app that
	// restarts with a new version still shows its old one (r-nacos since
	// 0.8.3: naming/service.rs Service::update_instance stores it in
	// instance_metadata_map; docs/nacos-servers.md). Nacos shows what the
	// app registered last, with the operator override's metadata, which
	// Tandem leaves empty, merged over it.
	firstMetadataPinned bool
	// badLoginTransient: the server answers a login with a wrong password
	// with 500 (Nacos 3 on /v3/auth/user/login, observed), which the
	// provider cannot tell from an outage.
	badLoginTransient bool
}

type target struct {
	name   string
	auth   bool
	expect expectations
	start  func(t testing.TB) server
	// startShortExpiry starts a server whose overrides expire quickly (the
	// emulator); nil for real servers, whose 60-65 s expiry make test does
	// not spend.
	startShortExpiry func(t testing.TB) server
}

func emulatorTarget(mode string, auth bool) target {
	name := "emulator-" + mode
	if auth {
		name += "-auth"
	}
	return target{
		name: name,
		auth: auth,
		expect: expectations{
			restartKeepsOverride:       true,
			serverRestartKeepsOverride: true,
			v1WritesGone:               mode == emulator.ModeV3,
		},
		// The default 60 s expiry, as on Nacos: the restart test must not
		// race it.
		start: func(t testing.TB) server { return startEmulator(t, mode, auth, 0) },
		startShortExpiry: func(t testing.TB) server {
			return startEmulator(t, mode, auth, 200*time.Millisecond)
		},
	}
}

func startEmulator(t testing.TB, mode string, auth bool, expiry time.Duration) server {
	opts := emulator.Options{Mode: mode, OverrideExpiry: expiry}
	s := server{ContextPath: emulator.ContextPath, API: mode}
	if auth {
		opts.Username, opts.Password = "nacos", spec.Secret("s3cret-pass")
		s.Username, s.Password = "nacos", "s3cret-pass"
	}
	e := emulator.New(opts)
	addrs, err := e.Start(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	s.HTTPAddr, s.GRPCPort, s.emu, s.restart = addrs.HTTP, addrs.GRPCPort(), e, e.Restart
	return s
}

// targets lists the emulator always, and real servers (realTargets, in
// conformance_real_test.go) where they are installed.
func targets() []target {
	ts := []target{
		emulatorTarget(emulator.ModeV1, false),
		emulatorTarget(emulator.ModeV1, true),
		emulatorTarget(emulator.ModeV3, false),
		emulatorTarget(emulator.ModeV3, true),
	}
	return append(ts, realTargets()...)
}

func TestConformance(t *testing.T) {
	for _, tg := range targets() {
		t.Run(tg.name, func(t *testing.T) {
			srv := tg.start(t)
			h := &harness{t: t, srv: srv}
			t.Run("operator view lists every registration with its metadata version", func(t *testing.T) {
				h.t = t
				f := h.fleet("view")
				view, err := f.p.Instances(tctx(t), f.ref)
				require.NoError(t, err)
				require.Len(t, view.Instances, 4)
				for _, in := range view.Instances {
					require.True(t, in.Enabled)
					require.True(t, in.Healthy)
					require.True(t, in.Ephemeral)
					require.Equal(t, 1.0, in.Weight)
					require.Equal(t, f.ref.Cluster, in.Cluster)
				}
				g := nacos.ByGroup(f.groups, view.Instances)
				require.Len(t, g.A, 2)
				require.Len(t, g.B, 2)
				require.Empty(t, g.Unknown)
				require.Equal(t, "1.0.0", nacos.Version(g.A[0], "version"))
				require.Equal(t, "2.0.0", nacos.Version(g.B[0], "version"))
				f.waitVisible(f.all())
			})
			t.Run("disabling a group hides it from consumers and keeps weight and metadata", func(t *testing.T) {
				h.t = t
				f := h.fleet("disable")
				f.waitVisible(f.all())
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
				// SetEnabled returns once Tandem's own subscription shows it.
				view, err := f.p.Instances(tctx(t), f.ref)
				require.NoError(t, err)
				require.ElementsMatch(t, f.b, view.Visible)
				// A consumer sees the same.
				f.consumer.waitFor(t, f.b)
				listed := 4
				if tg.expect.listOmitsDisabled {
					listed = 2
				}
				require.Len(t, view.Instances, listed)
				for _, in := range view.Instances {
					a := providers.Addr{IP: in.IP, Port: in.Port}
					require.Equal(t, !slices.Contains(f.a, a), in.Enabled, "enabled of %v", a)
					require.Equal(t, 1.0, in.Weight, "weight of %v", a)
					require.Equal(t, f.version(a), nacos.Version(in, "version"), "metadata of %v", a)
				}
				// Enabling brings the group back.
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, true))
				f.consumer.waitFor(t, f.all())
				view, err = f.p.Instances(tctx(t), f.ref)
				require.NoError(t, err)
				require.ElementsMatch(t, f.all(), view.Visible)
				for _, in := range view.Instances {
					require.True(t, in.Enabled)
					require.Equal(t, f.version(providers.Addr{IP: in.IP, Port: in.Port}), nacos.Version(in, "version"), "metadata survives")
				}
			})
			t.Run("a change that would disable every instance is refused and changes nothing", func(t *testing.T) {
				h.t = t
				f := h.fleet("refuse")
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
				err := f.p.SetEnabled(tctx(t), f.ref, f.b, false)
				require.ErrorIs(t, err, providers.ErrWouldDisableAll)
				view, err := f.p.Instances(tctx(t), f.ref)
				require.NoError(t, err)
				require.ElementsMatch(t, f.b, view.Visible)
				for _, in := range view.Instances {
					a := providers.Addr{IP: in.IP, Port: in.Port}
					require.Equal(t, slices.Contains(f.b, a), in.Enabled, "enabled of %v", a)
				}
				require.Len(t, view.Instances, map[bool]int{false: 4, true: 2}[tg.expect.listOmitsDisabled])
			})
			t.Run("repeating a change is a no-op that still returns once visible", func(t *testing.T) {
				h.t = t
				f := h.fleet("idempotent")
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.b, true))
			})
			t.Run("an app restarting within the expiry window "+restartOutcome(tg.expect), func(t *testing.T) {
				h.t = t
				f := h.fleet("restart")
				a1 := f.a[0]
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, []providers.Addr{a1}, false))
				f.apps[a1]() // the app stops (deregisters and closes its connection)
				f.waitListed(a1, false)
				f.apps[a1] = h.register(f.ref, a1, "1.0.1")
				in := f.waitListed(a1, true)
				f.barrier()
				view, err := f.p.Instances(tctx(t), f.ref)
				require.NoError(t, err)
				require.Equal(t, !tg.expect.restartKeepsOverride, in.Enabled)
				require.Equal(t, !tg.expect.restartKeepsOverride, slices.Contains(view.Visible, a1))
			})
			t.Run("an app that restarts with a new version while disabled "+newVersionOutcome(tg.expect), func(t *testing.T) {
				h.t = t
				f := h.fleet("newversion")
				a1 := f.a[0]
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, []providers.Addr{a1}, false))
				f.apps[a1]()
				f.waitListed(a1, false)
				f.apps[a1] = h.register(f.ref, a1, "1.1.0")
				f.waitListed(a1, true)
				f.barrier()
				want := "1.1.0"
				if tg.expect.firstMetadataPinned {
					want = "1.0.0"
				}
				view, err := f.p.InstancesExpecting(tctx(t), f.ref, f.all())
				require.NoError(t, err)
				in := instanceAt(t, view, a1)
				require.Equal(t, want, nacos.Version(in, "version"), "the operator view of the restarted app")
				require.Equal(t, !tg.expect.restartKeepsOverride, in.Enabled)
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, []providers.Addr{a1}, true))
				f.consumer.waitFor(t, append(f.all(), f.sentinels...))
				require.Equal(t, want, f.consumer.version(a1), "what consumers are pushed for the restarted app")
				view, err = f.p.InstancesExpecting(tctx(t), f.ref, f.all())
				require.NoError(t, err)
				require.Equal(t, want, nacos.Version(instanceAt(t, view, a1), "version"), "the operator view once enabled")
			})
			t.Run("a disabled instance a fresh provider never saw is in its view when expected", func(t *testing.T) {
				h.t = t
				f := h.fleet("expected")
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
				fresh := newProvider(t, srv, srv.API) // e.g. the daemon restarted
				view, err := fresh.Instances(tctx(t), f.ref)
				require.NoError(t, err)
				require.Len(t, view.Instances, map[bool]int{false: 4, true: 2}[tg.expect.listOmitsDisabled])
				view, err = providers.ReadRegistry(tctx(t), fresh, f.ref, f.all())
				require.NoError(t, err)
				require.Len(t, view.Instances, 4)
				for _, a := range f.all() {
					in := instanceAt(t, view, a)
					require.Equal(t, !slices.Contains(f.a, a), in.Enabled, "enabled of %v", a)
					require.Equal(t, f.version(a), nacos.Version(in, "version"), "metadata of %v", a)
				}
			})
			if tg.startShortExpiry != nil {
				t.Run("an override expires after the owner stays away", func(t *testing.T) {
					short := tg.startShortExpiry(t)
					f := (&harness{t: t, srv: short}).fleet("expiry")
					a1 := f.a[0]
					require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, []providers.Addr{a1}, false))
					f.apps[a1]()
					f.waitListed(a1, false)
					// A bounded poll of the emulator's state: the override is
					// gone once the expiry passed.
					require.Eventually(t, func() bool {
						_, ok := short.emu.Override(f.ref.Namespace, f.ref.Group, f.ref.Service, a1.IP, a1.Port, f.ref.Cluster)
						return !ok
					}, waitLimit, 10*time.Millisecond)
					f.apps[a1] = f.h.register(f.ref, a1, "1.0.1")
					f.waitVisible(f.all())
				})
			}
			t.Run("unknown addresses are skipped when disabling and refused when enabling", func(t *testing.T) {
				h.t = t
				f := h.fleet("unknown")
				ghost := providers.Addr{IP: "127.0.9.9", Port: 9}
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, []providers.Addr{ghost, f.a[0]}, false))
				err := f.p.SetEnabled(tctx(t), f.ref, []providers.Addr{ghost}, true)
				require.ErrorContains(t, err, "not registered")
			})
			t.Run("a server restart "+serverRestartOutcome(tg.expect)+"; clients redo registrations and subscriptions", func(t *testing.T) {
				h.t = t
				f := h.fleet("srvrestart")
				require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
				require.NoError(t, srv.restart(func() {
					_, err := f.p.Instances(tctx(t), f.ref)
					require.Error(t, err, "the server is down")
				}))
				for _, a := range f.all() {
					in := f.waitListed(a, true)
					want := slices.Contains(f.b, a) || !tg.expect.serverRestartKeepsOverride
					require.Equal(t, want, in.Enabled, "enabled of %v after the restart", a)
				}
				// What the consumer holds right after the restart is not
				// asserted: nacos-sdk-go v2.3.5 redoes its subscription
				// on reconnect and may overwrite a newer push with that
				// answer (its cache update is not atomic), so it can hold
				// a stale list until the next push. That next push is the
				// proof that subscriptions were redone: a change is pushed
				// again and the consumer converges on it.
				if tg.expect.serverRestartKeepsOverride {
					require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, true))
					f.consumer.waitFor(t, f.all())
				} else {
					require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, false))
					f.consumer.waitFor(t, f.b)
				}
			})
			if tg.auth {
				t.Run("a wrong password "+badLoginOutcome(tg.expect), func(t *testing.T) {
					h.t = t
					bad := srv
					bad.Password = "wrong-pass-xyz"
					p := newProvider(t, bad, srv.API)
					_, err := p.Instances(tctx(t), ref("badauth"))
					require.Error(t, err)
					require.Equal(t, !tg.expect.badLoginTransient, providers.IsPermanent(err), "%v", err)
					require.NotContains(t, err.Error(), "wrong-pass-xyz")
				})
			}
			if srv.emu != nil && tg.auth {
				t.Run("a revoked token is replaced by a fresh login", func(t *testing.T) {
					h.t = t
					f := h.fleet("relogin")
					srv.emu.RevokeTokens()
					_, err := f.p.Instances(tctx(t), f.ref)
					require.NoError(t, err)
				})
			}
			if srv.API == "v3" {
				t.Run("the v1 API "+v1Outcome(tg.expect), func(t *testing.T) {
					h.t = t
					f := h.fleet("apiv1")
					p1 := newProvider(t, srv, "v1")
					err := p1.SetEnabled(tctx(t), f.ref, f.a, false)
					if tg.expect.v1WritesGone {
						require.Error(t, err)
						require.True(t, providers.IsPermanent(err), "%v", err)
					} else {
						require.NoError(t, err)
					}
				})
			}
		})
	}
}

// TestASubscriptionSurvivesAResyncWhileTheServerIsDown waits for a change
// while Nacos restarts: the wait's resync (unsubscribe, subscribe) fails,
// and the subscription must still come back with the server.
func TestASubscriptionSurvivesAResyncWhileTheServerIsDown(t *testing.T) {
	// A push delay past resyncAfter: the wait resyncs before any push.
	e := emulator.New(emulator.Options{PushDelay: 3 * time.Second})
	addrs, err := e.Start(context.Background(), "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, e.Close()) })
	srv := server{ContextPath: emulator.ContextPath, API: emulator.ModeV1, HTTPAddr: addrs.HTTP, GRPCPort: addrs.GRPCPort(), emu: e}
	f := (&harness{t: t, srv: srv}).fleet("resync")
	f.waitVisible(f.all())

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
		defer cancel()
		done <- f.p.SetEnabled(ctx, f.ref, f.a, false)
	}()
	require.Eventually(t, func() bool {
		o, ok := e.Override(f.ref.Namespace, f.ref.Group, f.ref.Service, f.a[0].IP, f.a[0].Port, f.ref.Cluster)
		return ok && !o.Enabled
	}, waitLimit, 10*time.Millisecond, "the change was written")
	require.NoError(t, e.Restart(func() {
		require.ErrorContains(t, <-done, "subscribing again", "the wait resynced while the server was down")
	}))
	// The subscription is back with the server: it shows the change, and
	// the next one.
	f.waitVisible(f.b)
	// The apps of group A register again on their own time after the
	// restart (disabled, so the subscription cannot show it): wait until
	// the operator view lists them before enabling them.
	for _, a := range f.a {
		f.waitListed(a, true)
	}
	require.NoError(t, f.p.SetEnabled(tctx(t), f.ref, f.a, true))
	f.waitVisible(f.all())
}

// tctx bounds one call of the provider.
func tctx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	t.Cleanup(cancel)
	return ctx
}

func restartOutcome(e expectations) string {
	if e.restartKeepsOverride {
		return "comes back still disabled"
	}
	return "comes back enabled (the server forgets the override)"
}

func serverRestartOutcome(e expectations) string {
	if e.serverRestartKeepsOverride {
		return "keeps the overrides"
	}
	return "loses the overrides (the group comes back enabled)"
}

func newVersionOutcome(e expectations) string {
	if e.firstMetadataPinned {
		return "still shows its first version (the server pins it)"
	}
	return "shows its new version in the operator view and, once enabled, to consumers"
}

// instanceAt returns the instance at a in the view.
func instanceAt(t testing.TB, view providers.RegistryView, a providers.Addr) providers.RegistryInstance {
	i := slices.IndexFunc(view.Instances, func(in providers.RegistryInstance) bool { return in.IP == a.IP && in.Port == a.Port })
	require.GreaterOrEqual(t, i, 0, "%v is not in the operator view %+v", a, view.Instances)
	return view.Instances[i]
}

func badLoginOutcome(e expectations) string {
	if e.badLoginTransient {
		return "is refused with a 5xx, so the error is transient"
	}
	return "is a permanent error"
}

func v1Outcome(e expectations) string {
	if e.v1WritesGone {
		return "is refused permanently (410)"
	}
	return "still works"
}

// harness builds fleets on one server.
type harness struct {
	t   testing.TB
	srv server
}

func ref(service string) spec.NacosRef {
	return spec.NacosRef{Provider: "test", Namespace: "public", Group: "DEFAULT_GROUP", Service: service, Cluster: "DEFAULT"}
}

func newProvider(t testing.TB, srv server, api string) *nacos.Provider {
	cfg := spec.NacosProvider{
		Name: "test", Servers: []string{srv.HTTPAddr}, GRPCPort: srv.GRPCPort, ContextPath: srv.ContextPath,
		API: api, Timeout: spec.Duration(5 * time.Second),
	}
	if srv.Username != "" {
		t.Setenv("TANDEM_TEST_NACOS_USER", srv.Username)
		t.Setenv("TANDEM_TEST_NACOS_PASSWORD", srv.Password)
		cfg.UsernameEnv, cfg.PasswordEnv = "TANDEM_TEST_NACOS_USER", "TANDEM_TEST_NACOS_PASSWORD"
	}
	p, err := nacos.New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, p.Close()) })
	return p
}

// fleet is one service with groups A and B of two apps each, a provider and
// a consumer.
type fleet struct {
	h        *harness
	ref      spec.NacosRef
	a, b     []providers.Addr
	groups   spec.Groups
	apps     map[providers.Addr]func()
	p        *nacos.Provider
	consumer *consumer
	// sentinels are the instances barrier registered.
	sentinels []providers.Addr
}

var serviceSeq struct {
	sync.Mutex
	n int
}

func (h *harness) fleet(name string) *fleet {
	t := h.t
	serviceSeq.Lock()
	serviceSeq.n++
	svc := fmt.Sprintf("%s-%d", name, serviceSeq.n)
	serviceSeq.Unlock()
	f := &fleet{h: h, ref: ref(svc), apps: map[providers.Addr]func(){}}
	for i := range 2 {
		a := providers.Addr{IP: fmt.Sprintf("127.0.1.%d", 11+i), Port: 8080}
		b := providers.Addr{IP: fmt.Sprintf("127.0.2.%d", 11+i), Port: 8080}
		f.a, f.b = append(f.a, a), append(f.b, b)
		f.groups.A.Instances = append(f.groups.A.Instances, spec.Instance{IP: a.IP, Port: a.Port})
		f.groups.B.Instances = append(f.groups.B.Instances, spec.Instance{IP: b.IP, Port: b.Port})
		f.apps[a] = h.register(f.ref, a, "1.0.0")
		f.apps[b] = h.register(f.ref, b, "2.0.0")
	}
	f.p = newProvider(t, h.srv, h.srv.API)
	f.consumer = newConsumer(t, h.srv, f.ref)
	f.consumer.waitFor(t, f.all())
	return f
}

func (f *fleet) all() []providers.Addr { return append(slices.Clone(f.a), f.b...) }

// version is what an app of the fleet registered.
func (f *fleet) version(a providers.Addr) string {
	if slices.Contains(f.a, a) {
		return "1.0.0"
	}
	return "2.0.0"
}

// register starts an app instance; the returned function stops it.
func (h *harness) register(ref spec.NacosRef, a providers.Addr, version string) func() {
	t := h.t
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	stop, err := nacosapp.Register(ctx, nacosapp.Config{
		Servers: []string{h.srv.HTTPAddr}, GRPCPort: h.srv.GRPCPort, ContextPath: h.srv.ContextPath,
		Username: h.srv.Username, Password: spec.Secret(h.srv.Password),
	}, ref.Service, a.IP, a.Port, map[string]string{"version": version})
	require.NoError(t, err)
	var once sync.Once
	t.Cleanup(func() { once.Do(stop) })
	return func() { once.Do(stop) }
}

// waitVisible waits (a bounded poll) until the provider's subscription
// shows exactly want.
func (f *fleet) waitVisible(want []providers.Addr) {
	var last []providers.Addr
	require.Eventually(f.h.t, func() bool {
		view, err := f.p.Instances(context.Background(), f.ref)
		require.NoError(f.h.t, err)
		last = view.Visible
		return view.Visible != nil && sameAddrs(view.Visible, want)
	}, waitLimit, 10*time.Millisecond, "subscription shows %v, want %v", &last, want)
}

// waitListed polls the operator view, with a expected, (bounded) until a
// is listed or not.
func (f *fleet) waitListed(a providers.Addr, listed bool) providers.RegistryInstance {
	t := f.h.t
	var found providers.RegistryInstance
	require.Eventually(t, func() bool {
		view, err := f.p.InstancesExpecting(context.Background(), f.ref, []providers.Addr{a})
		require.NoError(t, err)
		for _, in := range view.Instances {
			if in.IP == a.IP && in.Port == a.Port {
				found = in
				return listed
			}
		}
		return !listed
	}, waitLimit, 20*time.Millisecond, "instance %v listed=%t", a, listed)
	return found
}

// barrier registers one more app and waits until the provider's
// subscription shows it: pushes are ordered, so everything changed before
// is reflected by then.
func (f *fleet) barrier() {
	s := providers.Addr{IP: "127.0.3.1", Port: 9001 + len(f.sentinels)}
	f.sentinels = append(f.sentinels, s)
	f.apps[s] = f.h.register(f.ref, s, "0")
	require.Eventually(f.h.t, func() bool {
		view, err := f.p.Instances(context.Background(), f.ref)
		require.NoError(f.h.t, err)
		return slices.Contains(view.Visible, s)
	}, waitLimit, 10*time.Millisecond, "the barrier instance never became visible")
}

func sameAddrs(a, b []providers.Addr) bool {
	if len(a) != len(b) {
		return false
	}
	for _, x := range a {
		if !slices.Contains(b, x) {
			return false
		}
	}
	return true
}

// consumer is another SDK client subscribed to the service, as a Spring
// Cloud or Dubbo consumer is.
type consumer struct {
	client   naming_client.INamingClient
	mu       sync.Mutex
	last     []providers.Addr
	versions map[providers.Addr]string // the "version" metadata of the last push
	seen     bool
	next     chan struct{}
	at       time.Time // when last changed
}

func newConsumer(t testing.TB, srv server, ref spec.NacosRef) *consumer {
	// Not t.TempDir: the SDK may still write its cache just after CloseClient.
	dir, err := os.MkdirTemp("", "tandem-consumer-")
	require.NoError(t, err)
	client, err := sdk.NewNamingClient(sdk.Config{
		Servers: []string{srv.HTTPAddr}, GRPCPort: srv.GRPCPort, ContextPath: srv.ContextPath,
		Namespace: ref.Namespace, Username: srv.Username, Password: spec.Secret(srv.Password), CacheDir: dir,
	})
	require.NoError(t, err)
	t.Cleanup(func() {
		client.CloseClient()
		_ = os.RemoveAll(dir)
	})
	c := &consumer{client: client, next: make(chan struct{})}
	require.NoError(t, client.Subscribe(&vo.SubscribeParam{
		ServiceName: ref.Service, GroupName: ref.Group,
		SubscribeCallback: func(hosts []model.Instance, err error) {
			if err != nil {
				return
			}
			var addrs []providers.Addr
			versions := map[providers.Addr]string{}
			for _, h := range hosts {
				if h.Enable && h.Healthy && h.ClusterName == ref.Cluster {
					a := providers.Addr{IP: h.Ip, Port: int(h.Port)}
					addrs = append(addrs, a)
					versions[a] = h.Metadata["version"]
				}
			}
			c.mu.Lock()
			c.last, c.versions, c.seen, c.at = addrs, versions, true, time.Now()
			close(c.next)
			c.next = make(chan struct{})
			c.mu.Unlock()
		},
	}))
	return c
}

// version is the version the consumer's last push gave a.
func (c *consumer) version(a providers.Addr) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.versions[a]
}

// waitFor waits until the consumer's last push holds exactly want and
// returns when that push arrived.
func (c *consumer) waitFor(t testing.TB, want []providers.Addr) time.Time {
	deadline := time.After(waitLimit)
	for {
		c.mu.Lock()
		last, seen, next, at := c.last, c.seen, c.next, c.at
		c.mu.Unlock()
		if seen && sameAddrs(last, want) {
			return at
		}
		select {
		case <-next:
		case <-deadline:
			require.Failf(t, "consumer did not see the instances", "want %v, last %v", want, last)
		}
	}
}
