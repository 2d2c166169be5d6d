package all_test

import (
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/all"
	"github.com/tandemhq/tandem/providers/memory"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

// A load-balancer kind defined outside spec and providers/all, the way a
// new provider package would define one: its configuration type, its
// descriptor and its constructor, registered once. Nothing else in the
// repository knows it.

type fakeConfig struct {
	Name     string `yaml:"name"`
	Zone     string `yaml:"zone"`
	TokenEnv string `yaml:"tokenEnv"`
}

func (c *fakeConfig) ProviderName() string { return c.Name }

func (c *fakeConfig) Default() {
	if c.Zone == "" {
		c.Zone = "zone-1"
	}
}

func (c *fakeConfig) Validate(base string, bad func(path, format string, args ...any)) {
	if !strings.HasPrefix(c.Zone, "zone-") {
		bad(base+".zone", "must start with zone-, got %q", c.Zone)
	}
}

// fakeLB is the fake kind's provider: the memory world's load balancer,
// remembering the configuration it was built from.
type fakeLB struct {
	providers.LoadBalancer
	cfg *fakeConfig
}

// world is where the fake load balancers keep their backends.
var world = memory.New()

func init() {
	spec.RegisterLBKind(spec.LBKind{
		Name: "fakelb", Fields: []string{"pool"}, Required: []string{"pool"}, MaxWeight: 10, Sessions: true,
		Config: &fakeConfig{},
	})
	providers.RegisterLoadBalancer("fakelb", func(cfg spec.ProviderConfig, _ *slog.Logger) (providers.LoadBalancer, error) {
		return fakeLB{LoadBalancer: world.LoadBalancer(), cfg: cfg.(*fakeConfig)}, nil
	})
}

const fakeConfigYAML = `
git: {url: /srv/desired}
policy: {hooks: {commands: [./deploy.sh]}}
providers:
  fakelb:
    - name: one
      tokenEnv: FAKELB_TOKEN
`

const fakeServiceYAML = `
service: web
active: A
version: "1.0.0"
groups:
  A: {instances: [{ip: 10.0.0.1, port: 8080, id: i-a1}]}
  B: {instances: [{ip: 10.0.0.2, port: 8080, id: i-b1}]}
traffic: [{fakelb: one, pool: p1, weight: 10}]
deploy: {exec: [./deploy.sh]}
health: {http: {path: /healthz}, version: {http: /version}}
drain: {propagation: 1s, quiet: 1s, timeout: 5s}
verify: {window: 2s}
`

func TestARegisteredKindIsDecodedValidatedBuiltAndShifted(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(fakeConfigYAML))
	require.NoError(t, err)
	require.Len(t, cfg.Providers.Ext["fakelb"], 1)
	require.Equal(t, "zone-1", cfg.Providers.Ext["fakelb"][0].(*fakeConfig).Zone, "the kind's defaults apply")
	require.True(t, cfg.HasProvider("fakelb", "one"))
	require.Contains(t, cfg.SecretEnvNames(), "FAKELB_TOKEN", "the kind's credentials are kept from hooks")
	require.Contains(t, cfg.EnvNames(false), "FAKELB_TOKEN", "and from logs")
	t.Setenv("FAKELB_TOKEN", "fakelb-secret-4711")
	require.NotContains(t, redact.ForConfig(cfg).String("token fakelb-secret-4711"), "fakelb-secret-4711")

	load := func(version string, active spec.Group) *spec.Service {
		doc := strings.Replace(strings.Replace(fakeServiceYAML, `"1.0.0"`, `"`+version+`"`, 1), "active: A", "active: "+string(active), 1)
		set, err := spec.Load(fstest.MapFS{"services/web.yaml": {Data: []byte(doc)}}, "services", cfg)
		require.NoError(t, err)
		svc, _ := set.Get("web")
		return svc
	}
	svc := load("1.0.0", spec.GroupA)
	b := svc.Traffic[0]
	require.Equal(t, "fakelb", b.Kind())
	require.Equal(t, "one", b.Provider())
	require.Equal(t, "fakelb:one/p1", b.Key())

	set, closeAll, err := all.New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, closeAll()) })
	lb, ok := set.LoadBalancers[providers.LBKey("fakelb", "one")].(fakeLB)
	require.True(t, ok, "providers/all builds the registered kind")
	require.Equal(t, "one", lb.cfg.Name)

	world.AddService(svc, spec.GroupA, "1.0.0", "1.0.0")
	ws := world.Set()
	ws.LoadBalancers = set.LoadBalancers
	want := load("1.1.0", spec.GroupB)

	// The preview counts the kind's sessions as drain evidence.
	live, err := reconcile.Observe(context.Background(), ws, want, reconcile.NeedsFor(want, reconcile.State{}))
	require.NoError(t, err)
	pv := reconcile.PreviewTransition(reconcile.Input{Service: want, Live: live, Now: world.Clock().Now()})
	require.True(t, pv.Complete, "%+v", pv)
	require.Contains(t, reconcile.Render([]reconcile.Preview{pv}), "fakelb:one/p1 current sessions")

	// A release from A to B runs through the fake load balancer.
	store, err := reconcile.NewFileStore(t.TempDir())
	require.NoError(t, err)
	rec := &reconcile.Reconciler{Providers: ws, Store: store}
	inSync := false
	for range 1000 {
		_, err := rec.Reconcile(context.Background(), reconcile.Target{Service: want, Revision: reconcile.Revision{Hash: "rev-1.1.0"}})
		var w *reconcile.WaitingError
		if reconcile.Classify(err) == reconcile.ClassWaiting && errors.As(err, &w) {
			world.Clock().Advance(max(w.RequeueAfter, time.Millisecond))
			continue
		}
		require.NoError(t, err)
		if st, _ := rec.Status("web"); st.InSync {
			inSync = true
			break
		}
		world.Clock().Advance(time.Second)
	}
	require.True(t, inSync, "the release did not finish")
	require.Equal(t, 0, world.Weight(b, "i-a1"))
	require.Equal(t, 10, world.Weight(b, "i-b1"))
	require.Empty(t, world.Violations())
}

func TestARegisteredKindsBadInputsAreLocated(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(fakeConfigYAML+"      zone: east\n    - name: one\n"))
	requireProblems(t, err,
		"tandem.yaml:8: providers.fakelb[0].zone: must start with zone-, got \"east\"",
		"tandem.yaml:9: providers.fakelb[1].name: fakelb provider \"one\" is already defined at providers.fakelb[0].name")
	_, err = spec.ParseConfig("tandem.yaml", []byte(fakeConfigYAML+"      port: 1\n"))
	requireProblems(t, err, "tandem.yaml:8: providers.fakelb[0].port: unknown field; expected one of: name, tokenEnv, zone")

	cfg, err := spec.ParseConfig("tandem.yaml", []byte(fakeConfigYAML))
	require.NoError(t, err)
	for traffic, want := range map[string]string{
		"{fakelb: one, weight: 10}":                        "traffic[0].pool: is required for a fakelb binding",
		"{fakelb: one, pool: p1, weight: 11}":              "traffic[0].weight: must be 1..10 for fakelb",
		"{fakelb: one, pool: p1, weight: 10, backend: be}": "traffic[0].backend: does not apply to a fakelb binding",
		"{haproxy: edge, backend: be, pool: p1}":           "traffic[0].pool: does not apply to a haproxy binding",
		"{fakelb: two, pool: p1, weight: 10}":              `traffic[0].fakelb: no fakelb provider named "two" in tandem.yaml`,
		"{fakelb: one, alb: a, serverGroup: s}":            "traffic[0]: must name exactly one of alb, slb, haproxy or fakelb",
		"{fakelb: one, pool: p1, weight: 10, poll: 1}":     "traffic[0].poll: unknown field; expected one of: alb, backend, fakelb, haproxy, listener, listenerPort, loadBalancer, pool, preview, serverGroup, slb, vServerGroup, weight",
	} {
		doc := strings.Replace(fakeServiceYAML, "{fakelb: one, pool: p1, weight: 10}", traffic, 1)
		_, err := spec.Load(fstest.MapFS{"services/web.yaml": {Data: []byte(doc)}}, "services", cfg)
		require.ErrorContains(t, err, want, traffic)
	}
}

func requireProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	ps, ok := spec.AsProblems(err)
	require.True(t, ok, "%v", err)
	var got []string
	for _, p := range ps {
		got = append(got, p.String())
	}
	require.Equal(t, want, got)
}
