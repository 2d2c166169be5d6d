package check_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/check"
	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/alibaba/emulator/emutest"
	"github.com/tandemhq/tandem/providers/all"
	"github.com/tandemhq/tandem/providers/nacos"
	nacosemu "github.com/tandemhq/tandem/providers/nacos/emulator"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/providers/probe"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nacostest.IgnoreSDKGoroutines()...) }

// nacosWorld is a Nacos emulator where user-service's two instances are
// registered the way applications do it (the SDK over gRPC), group A
// enabled and group B disabled, as Tandem leaves them with A active.
type nacosWorld struct {
	emu   *nacosemu.Emulator
	addrs nacosemu.Addrs
}

func startNacos(t *testing.T) *nacosWorld {
	t.Helper()
	n := &nacosWorld{emu: nacosemu.New(nacosemu.Options{})}
	var err error
	n.addrs, err = n.emu.Start(t.Context(), "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, n.emu.Close()) })
	for _, in := range []struct{ ip string }{{"10.0.0.1"}, {"10.0.0.2"}} {
		p, err := nacosapp.NewPublisher(nacosapp.Config{Servers: []string{n.addrs.HTTP}, GRPCPort: n.addrs.GRPCPort()})
		require.NoError(t, err)
		t.Cleanup(p.Close)
		require.NoError(t, p.Publish("user-service", in.ip, 8080, map[string]string{"version": "1.0.0"}))
	}
	// Group B disabled the way Tandem does it: the operator API.
	reg, err := nacos.New(spec.NacosProvider{Name: "prod", Servers: []string{n.addrs.HTTP}, GRPCPort: n.addrs.GRPCPort(),
		ContextPath: nacosemu.ContextPath, API: nacosemu.ModeV1, Timeout: spec.Duration(10 * time.Second)}, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, reg.Close()) }()
	ref := spec.NacosRef{Provider: "prod", Namespace: "public", Group: "DEFAULT_GROUP", Service: "user-service", Cluster: "DEFAULT"}
	require.NoError(t, reg.SetEnabled(t.Context(), ref, []providers.Addr{{IP: "10.0.0.2", Port: 8080}}, false))
	return n
}

const service = `
service: user-service
active: A
version: "1.0.0"
groups:
  A: {instances: [{ip: 10.0.0.1, port: 8080, id: i-a1}]}
  B: {instances: [{ip: 10.0.0.2, port: 8080, id: i-b1}]}
traffic:
  - {alb: prod-hz, serverGroup: %s, listener: lsn-1}
  - {slb: prod-hz, loadBalancer: lb-1, vServerGroup: rsp-1, listenerPort: 80}
registry:
  nacos: {provider: prod, service: %s}
deploy: {exec: ["./deploy.sh"]}
health: {http: {path: /healthz}, version: {nacosMetadata: version}}
`

// world is one fleet: the Alibaba emulator seeded to match the service
// file (A active at 100, B idle at 0), and the shared Nacos.
type world struct {
	alb   *emulator.Emulator
	state emulator.State
	cfg   spec.AlibabaProvider
	nacos *nacosWorld
}

func newWorld(t *testing.T, n *nacosWorld, change func(*emulator.State)) *world {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
	servers := func() []*emulator.Server {
		return []*emulator.Server{{ID: "i-a1", IP: "10.0.0.1", Port: 8080, Weight: 100}, {ID: "i-b1", IP: "10.0.0.2", Port: 8080, Weight: 0}}
	}
	st := emulator.State{
		ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", Servers: servers()}},
		Listeners:    []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}},
		LoadBalancers: []*emulator.LoadBalancer{{
			ID:            "lb-1",
			VServerGroups: []*emulator.VServerGroup{{ID: "rsp-1", Servers: servers()}},
			Listeners:     []*emulator.SLBListener{{Port: 80, VServerGroup: "rsp-1"}},
		}},
	}
	if change != nil {
		change(&st)
	}
	require.NoError(t, e.Seed(st))
	return &world{alb: e, state: e.State(), cfg: cfg, nacos: n}
}

// run loads the service file (naming group and nacosService), builds the
// production providers from a tandem.yaml pointing at the emulators, and
// checks.
func (w *world) run(t *testing.T, group, nacosService, secretEnv string) check.Report {
	t.Helper()
	cfgYAML := fmt.Sprintf(`
git: {url: /srv/fleet}
providers:
  alb: [{name: prod-hz, region: cn-hangzhou, endpoint: %[1]q, protocol: http, accessKeyIdEnv: %[2]s, accessKeySecretEnv: %[3]s}]
  slb: [{name: prod-hz, region: cn-hangzhou, endpoint: %[1]q, protocol: http, accessKeyIdEnv: %[2]s, accessKeySecretEnv: %[4]s}]
  nacos: [{name: prod, servers: [%[5]q], grpcPort: %[6]d, contextPath: %[7]s}]
policy: {hooks: {commands: [./deploy.sh]}}
`, w.cfg.Endpoint, w.cfg.AccessKeyIDEnv, secretEnv, emutest.KeySecretEnv, w.nacos.addrs.HTTP, w.nacos.addrs.GRPCPort(), nacosemu.ContextPath)
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(cfgYAML))
	require.NoError(t, err)
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(fmt.Sprintf(service, group, nacosService))}}, "services", cfg)
	require.NoError(t, err)
	ps, closeAll, err := all.New(cfg, nil)
	require.NoError(t, err)
	defer func() { require.NoError(t, closeAll()) }()
	w.nacos.emu.ResetCalls()
	in := check.Input{ConfigFile: "tandem.yaml", Config: cfg, Services: set}
	in.UseProviders(ps)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	rep, err := check.Run(ctx, in)
	require.NoError(t, err)
	t.Log("\n" + rep.Text())
	return rep
}

// onlyRead asserts that every call the emulators answered was a read or a
// dry run, and that no weight changed.
func (w *world) onlyRead(t *testing.T) {
	t.Helper()
	log := w.alb.CallLog()
	require.NotEmpty(t, log)
	for _, c := range log {
		read := strings.HasPrefix(c.Action, "Describe") || strings.HasPrefix(c.Action, "List") || strings.HasPrefix(c.Action, "Get")
		require.True(t, read || c.DryRun, "tandem check made the call %s (dry run: %t)", c.Action, c.DryRun)
	}
	require.Equal(t, w.state, w.alb.State(), "no weight changed")
	for call := range w.nacos.emu.Calls() {
		write := strings.HasPrefix(call, "PUT ") || strings.HasPrefix(call, "DELETE ") ||
			(strings.HasPrefix(call, "POST ") && !strings.HasSuffix(call, "/auth/login")) ||
			strings.Contains(call, "InstanceRequest")
		require.False(t, write, "tandem check made the Nacos call %s", call)
	}
}

func findings(rep check.Report, sev check.Severity) []string {
	var out []string
	for _, f := range rep.Findings {
		if f.Severity == sev {
			out = append(out, f.String())
		}
	}
	return out
}

func TestCheck(t *testing.T) {
	n := startNacos(t)

	t.Run("a good fleet has no error and check only reads", func(t *testing.T) {
		w := newWorld(t, n, nil)
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		require.Empty(t, findings(rep, check.Error))
		require.Equal(t, 2, rep.Bindings)
		require.Equal(t, 1, rep.Registries)
		require.Equal(t, 3, rep.Providers)
		require.Contains(t, strings.Join(findings(rep, check.Warning), "\n"),
			"warning: tandem.yaml:5: providers.slb[0] (prod-hz): write permission could not be proven")
		w.onlyRead(t)
		dryRuns := 0
		for _, c := range w.alb.CallLog() {
			if c.DryRun {
				dryRuns++
				require.Equal(t, "UpdateServerGroupServersAttribute", c.Action)
				require.Equal(t, alibabaDryRun, c.Code, "the service acknowledged the dry run without doing it")
			}
		}
		require.Equal(t, 1, dryRuns, "ALB write permission proven by one dry run")
	})

	t.Run("a missing server group is an error at the binding", func(t *testing.T) {
		w := newWorld(t, n, nil)
		rep := w.run(t, "sgp-missing", "user-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "error: services/user.yaml:9: traffic[0] alb:prod-hz/sgp-missing: reading servers of alb:prod-hz/sgp-missing")
		require.Contains(t, errs[0], "ResourceNotFound.serverGroup")
		require.Contains(t, errs[0], "fix: create the resource, or correct the name in the file")
		w.onlyRead(t)
	})

	t.Run("an extra server on the load balancer is an error", func(t *testing.T) {
		w := newWorld(t, n, func(st *emulator.State) {
			st.ServerGroups[0].Servers = append(st.ServerGroups[0].Servers, &emulator.Server{ID: "i-x", IP: "10.0.0.9", Port: 8080, Weight: 100})
		})
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "traffic[0] alb:prod-hz/sgp-1: the load balancer lists server i-x (10.0.0.9:8080, weight 100) that no group of the file names")
		w.onlyRead(t)
	})

	t.Run("a weight that disagrees with active is an error", func(t *testing.T) {
		w := newWorld(t, n, func(st *emulator.State) {
			st.LoadBalancers[0].VServerGroups[0].Servers[1].Weight = 100
		})
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "error: services/user.yaml:10: traffic[1] slb:prod-hz/lb-1/rsp-1: server i-b1 of group B (idle) has weight 100; active: A means 0")
		w.onlyRead(t)
	})

	t.Run("a wrong server address is an error", func(t *testing.T) {
		w := newWorld(t, n, func(st *emulator.State) {
			st.ServerGroups[0].Servers[0].Port = 9090
		})
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		errs := strings.Join(findings(rep, check.Error), "\n")
		require.Contains(t, errs, "instance i-a1(10.0.0.1:8080) of group A is not a server of the load balancer's group")
		require.Contains(t, errs, "the load balancer lists server i-a1 (10.0.0.1:9090, weight 100) that no group of the file names")
	})

	t.Run("health checks off where the shift reads them is an error", func(t *testing.T) {
		w := newWorld(t, n, func(st *emulator.State) { st.Listeners[0].HealthCheckDisabled = true })
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "traffic[0] alb:prod-hz/sgp-1: listener lsn-1 reports no health checks for server group sgp-1")
		require.Contains(t, errs[0], "fix: turn on health checks")
	})

	t.Run("an SLB listener without health checks is an error", func(t *testing.T) {
		w := newWorld(t, n, func(st *emulator.State) { st.LoadBalancers[0].Listeners[0].HealthCheckDisabled = true })
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "traffic[1] slb:prod-hz/lb-1/rsp-1: listener port 80 of lb-1 reports every server unavailable (no health check)")
	})

	t.Run("CheckedListenerNotFound from the SLB API is an error naming the listener", func(t *testing.T) {
		w := newWorld(t, n, nil)
		w.alb.Inject("DescribeHealthStatus", "CheckedListenerNotFound", 404, 2)
		rep := w.run(t, "sgp-1", "user-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "traffic[1] slb:prod-hz/lb-1/rsp-1: ")
		require.Contains(t, errs[0], "CheckedListenerNotFound (HTTP 404)")
		require.Contains(t, errs[0], "fix: create the listener on that port, or turn on its health check")
		w.onlyRead(t)
	})

	t.Run("credentials the service refuses are one error at the provider", func(t *testing.T) {
		w := newWorld(t, n, nil)
		t.Setenv("WRONG_SECRET", "not-the-secret")
		rep := w.run(t, "sgp-1", "user-service", "WRONG_SECRET")
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1, "the ALB binding is not reported again")
		require.Contains(t, errs[0], "error: tandem.yaml:4: providers.alb[0] (prod-hz): the credentials were refused")
		require.NotContains(t, errs[0], "not-the-secret")
		w.onlyRead(t)
	})

	t.Run("a service missing from Nacos is an error at the registry", func(t *testing.T) {
		w := newWorld(t, n, nil)
		rep := w.run(t, "sgp-1", "no-such-service", emutest.KeySecretEnv)
		errs := findings(rep, check.Error)
		require.Len(t, errs, 1)
		require.Contains(t, errs[0], "error: services/user.yaml:12: registry.nacos nacos:prod/public/DEFAULT_GROUP@@no-such-service#DEFAULT: the service has no registered instance")
		w.onlyRead(t)
	})
}

const alibabaDryRun = "DryRunOperation"

func TestCheckHAProxy(t *testing.T) {
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{{Name: "user_be", Servers: []haproxytest.Server{
		{Name: "a1", Addr: "127.0.0.1:18081", Weight: 100}, {Name: "b1", Addr: "127.0.0.1:18082", Weight: 0},
	}}}})
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(fmt.Sprintf("git: {url: /srv/fleet}\nproviders:\n  haproxy: [{name: edge, socket: %q}]\npolicy: {hooks: {commands: [./deploy.sh]}}\n", h.Socket)))
	require.NoError(t, err)
	run := func(backend string) check.Report {
		svc := fmt.Sprintf(`service: user-service
active: A
version: "1.0.0"
groups:
  A: {instances: [{ip: 127.0.0.1, port: 18081, id: a1}]}
  B: {instances: [{ip: 127.0.0.1, port: 18082, id: b1}]}
traffic:
  - {haproxy: edge, backend: %s}
deploy: {exec: ["./deploy.sh"]}
health: {http: {path: /healthz}, version: {http: /version}}
`, backend)
		set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(svc)}}, "services", cfg)
		require.NoError(t, err)
		ps, closeAll, err := all.New(cfg, nil)
		require.NoError(t, err)
		defer func() { require.NoError(t, closeAll()) }()
		in := check.Input{ConfigFile: "tandem.yaml", Config: cfg, Services: set}
		in.UseProviders(ps)
		rep, err := check.Run(t.Context(), in)
		require.NoError(t, err)
		t.Log("\n" + rep.Text())
		return rep
	}
	require.Empty(t, findings(run("user_be"), check.Error), "the backend and its servers exist, weights as active says")
	errs := findings(run("no_such_be"), check.Error)
	require.Len(t, errs, 1)
	require.Contains(t, errs[0], "error: services/user.yaml:8: traffic[0] haproxy:edge/no_such_be: ")
}

// An app that answers its metrics path but exports none of the series
// drain.evidence names is an error that names the instance, the series
// looked for and what it exports that looks like a candidate; an app that
// exports them passes, and one that does not answer is a warning.
func TestCheckNamesAnAppWithoutTheEvidenceSeries(t *testing.T) {
	app := func(body string) spec.Instance {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
		t.Cleanup(srv.Close)
		u, err := url.Parse(srv.URL)
		require.NoError(t, err)
		port, err := strconv.Atoi(u.Port())
		require.NoError(t, err)
		return spec.Instance{IP: u.Hostname(), Port: port}
	}
	good := app("# TYPE http_server_requests_active_seconds_count gauge\nhttp_server_requests_active_seconds_count{method=\"GET\",uri=\"UNKNOWN\"} 1\n")
	bad := app("# TYPE tomcat_connections_current_connections gauge\ntomcat_connections_current_connections{name=\"http-nio-8080\"} 3\n# TYPE jvm_threads_live_threads gauge\njvm_threads_live_threads 20\n")
	down := spec.Instance{IP: "127.0.0.1", Port: 1}

	cfg, err := spec.ParseConfig("tandem.yaml", []byte("git: {url: /srv/fleet}\nproviders:\n  haproxy: [{name: edge, socket: /nonexistent.sock}]\n"))
	require.NoError(t, err)
	svc := fmt.Sprintf(`service: user-service
active: A
version: "1.0.0"
groups:
  A: {instances: [{ip: %s, port: %d, id: a1}, {ip: %s, port: %d, id: a2}]}
  B: {instances: [{ip: %s, port: %d, id: b1}]}
traffic:
  - {haproxy: edge, backend: user_be}
deploy: {http: {url: "http://127.0.0.1:9/deploy"}}
health: {preset: spring-boot}
drain:
  evidence: {preset: spring-boot}
`, good.IP, good.Port, bad.IP, bad.Port, down.IP, down.Port)
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(svc)}}, "services", cfg)
	require.NoError(t, err)
	rep, err := check.Run(t.Context(), check.Input{ConfigFile: "tandem.yaml", Config: cfg, Services: set,
		LoadBalancers: map[string]providers.TrafficObserver{}, Evidence: probe.New(nil, nil)})
	require.NoError(t, err)
	t.Log("\n" + rep.Text())

	var errs, warns []string
	for _, f := range rep.Findings {
		if !strings.HasPrefix(f.Where, "drain.evidence") {
			continue
		}
		if f.Severity == check.Error {
			errs = append(errs, f.String())
		} else {
			warns = append(warns, f.String())
		}
	}
	require.Len(t, errs, 1, "only the app without the series is an error")
	require.Contains(t, errs[0], "services/user.yaml:12: drain.evidence: evidence of a2("+bad.Addr()+"): ")
	require.Contains(t, errs[0], "has none of the in-flight series http_server_requests_active_seconds_count")
	require.Contains(t, errs[0], "tomcat_connections_current_connections")
	require.Contains(t, errs[0], "fix: name the series this app exports in drain.evidence.inFlight")
	require.Len(t, warns, 1, "the instance that does not answer")
	require.Contains(t, warns[0], "drain.evidence: evidence of b1("+down.Addr()+"): ")
}
