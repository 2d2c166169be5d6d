package spec_test

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/spec"
)

// Every file under testdata/bad states the problems it must produce in
// "# want: LINE: path: message" comments; the load must report exactly
// those, each located in services/case.yaml.
func TestBadSpecsReportEveryProblemWithFileLineAndField(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	require.NoError(t, err)
	require.NotEmpty(t, files)
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			require.NoError(t, err)
			var want []string
			sc := bufio.NewScanner(bytes.NewReader(data))
			for sc.Scan() {
				if rest, ok := strings.CutPrefix(sc.Text(), "# want: "); ok {
					want = append(want, "services/case.yaml:"+rest)
				}
			}
			set, err := spec.Load(fstest.MapFS{"services/case.yaml": {Data: data}}, "services", nil)
			if len(want) == 0 {
				require.NoError(t, err)
				require.NotNil(t, set)
				return
			}
			require.Nil(t, set, "an invalid desired state yields no set")
			ps, ok := spec.AsProblems(err)
			require.True(t, ok, "want located problems, got %v", err)
			var got []string
			for _, p := range ps {
				got = append(got, p.String())
			}
			require.ElementsMatch(t, want, got)
		})
	}
}

const validService = `
service: user-service
active: B
version: "2.4.1"
groups:
  A: {instances: [{ip: 10.0.1.11, port: 8080, id: i-a}]}
  B: {instances: [{ip: 10.0.2.11, port: 8080, id: i-b}]}
traffic:
  - {alb: prod-hz, serverGroup: sgp-0123}
registry:
  nacos: {provider: prod}
deploy: {exec: ["./deploy.sh"]}
health: {http: {path: /healthz}, version: {nacosMetadata: version}}
`

const validConfig = `
git: {url: "file:///srv/fleet.git"}
providers:
  alb: [{name: prod-hz, region: cn-hangzhou}]
  nacos: [{name: prod, servers: ["127.0.0.1:8848"]}]
policy: {hooks: {commands: ["./deploy.sh"]}}
`

func TestDefaultsAreApplied(t *testing.T) {
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService)}}, "services", nil)
	require.NoError(t, err)
	svc, ok := set.Get("user-service")
	require.True(t, ok)
	require.Equal(t, 100, svc.Traffic[0].Weight)
	require.Equal(t, spec.NacosRef{Provider: "prod", Namespace: "public", Group: "DEFAULT_GROUP", Service: "user-service", Cluster: "DEFAULT"}, *svc.Registry.Nacos)
	require.Equal(t, 40*time.Second, svc.Drain.Propagation.D())
	require.Equal(t, 5*time.Second, svc.Drain.Quiet.D())
	require.Equal(t, 5*time.Minute, svc.Drain.Timeout.D())
	require.Equal(t, 60*time.Second, svc.Verify.Window.D())
	require.Equal(t, 10*time.Minute, svc.Deploy.Timeout.D())
	require.Equal(t, "http", svc.Health.HTTP.Scheme)
	require.Equal(t, spec.Source{File: "services/user.yaml", Line: 2}, svc.Source)
}

func TestBindingsMustNameConfiguredProviders(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(validConfig))
	require.NoError(t, err)
	bad := strings.Replace(validService, "alb: prod-hz", "alb: prod-sh", 1)
	bad = strings.Replace(bad, "provider: prod}", "provider: staging}", 1)
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(bad)}}, "services", cfg)
	require.EqualError(t, err, strings.Join([]string{
		`services/user.yaml:9: traffic[0].alb: no alb provider named "prod-sh" in tandem.yaml`,
		`services/user.yaml:11: registry.nacos.provider: no nacos provider named "staging" in tandem.yaml`,
	}, "\n"))
}

func TestNacosServerDefaultsToNacosAndIsValidated(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(validConfig))
	require.NoError(t, err)
	require.Equal(t, spec.NacosServerNacos, cfg.Providers.Nacos[0].Server)

	_, err = spec.ParseConfig("tandem.yaml", []byte(`
git: {url: "file:///srv/fleet.git"}
providers:
  nacos:
    - {name: a, servers: ["nacos:8848"], server: zookeeper}
    - {name: b, servers: ["nacos:8848"], server: r-nacos, api: v3}
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:5: providers.nacos[0].server: must be nacos (Nacos 2.x or 3.x) or r-nacos, got "zookeeper"`,
		`tandem.yaml:6: providers.nacos[1].api: must be v1 with server r-nacos (r-nacos has no v3 admin API), got "v3"`,
	}, "\n"))
}

func TestVersionFromNacosMetadataIsRefusedOnRNacos(t *testing.T) {
	rnacos := strings.Replace(validConfig, `servers: ["127.0.0.1:8848"]}`, `servers: ["127.0.0.1:8848"], server: r-nacos}`, 1)
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(rnacos))
	require.NoError(t, err)
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService)}}, "services", cfg)
	require.EqualError(t, err, `services/user.yaml:13: health.version.nacosMetadata: cannot be read from r-nacos (nacos provider "prod" in tandem.yaml): `+
		`r-nacos keeps the metadata an address first registered with until 60s after the instance leaves, so a redeployed version would not show; use health.version.http`)

	byHTTP := strings.Replace(validService, "version: {nacosMetadata: version}", "version: {http: /version}", 1)
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(byHTTP)}}, "services", cfg)
	require.NoError(t, err, "r-nacos still takes instances in and out of view")

	cfg, err = spec.ParseConfig("tandem.yaml", []byte(validConfig))
	require.NoError(t, err)
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(validService)}}, "services", cfg)
	require.NoError(t, err, "official Nacos shows the metadata each app registers")
}

func TestInstancesSharedBetweenServicesAreRefused(t *testing.T) {
	other := strings.Replace(validService, "user-service", "order-service", 1)
	_, err := spec.Load(fstest.MapFS{
		"services/user.yaml":  {Data: []byte(validService)},
		"services/order.yaml": {Data: []byte(other)},
	}, "services", nil)
	require.ErrorContains(t, err, `services/user.yaml:6: groups.A.instances[0]: 10.0.1.11:8080 is also an instance of service "order-service" (services/order.yaml:2)`)
}

func TestEmptyDesiredStateIsRefused(t *testing.T) {
	_, err := spec.Load(fstest.MapFS{"services/README.md": {Data: []byte("hi")}}, "services", nil)
	require.EqualError(t, err, "services: no .yaml or .yml files: an empty desired state is refused (it would remove every service)")
}

func TestOversizedFileIsRefused(t *testing.T) {
	big := bytes.Repeat([]byte("#"), spec.MaxFileBytes+1)
	_, err := spec.Load(fstest.MapFS{"services/big.yaml": {Data: big}}, "services", nil)
	require.ErrorContains(t, err, "services/big.yaml: file is 1048577 bytes; the limit is 1048576")
}

func TestUnknownAfterIsReported(t *testing.T) {
	bad := strings.Replace(validService, "version: \"2.4.1\"", "version: \"2.4.1\"\nafter: [gateway]", 1)
	_, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(bad)}}, "services", nil)
	require.EqualError(t, err, `services/user.yaml:5: after[0]: unknown service "gateway"`)
}

func TestConfigProblemsAreLocated(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(`
git: {url: ""}
drift: {mode: fix}
providers:
  alb: [{name: prod, region: cn-hangzhou, accessKeyIdEnv: AK}]
  nacos:
    - {name: prod, servers: ["nacos:8848"], api: v2}
    - {name: prod, servers: ["nacos"]}
notify: [{type: email, url: "http://x"}]
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:2: git.url: is required (a repository URL or a local path)`,
		`tandem.yaml:3: drift.mode: must be alert or heal, got "fix"`,
		`tandem.yaml:5: providers.alb[0]: set both accessKeyIdEnv and accessKeySecretEnv, or neither to use the default credential chain`,
		`tandem.yaml:7: providers.nacos[0].api: must be v1 (Nacos 2.x) or v3 (Nacos 3.x), got "v2"`,
		`tandem.yaml:8: providers.nacos[1].name: nacos provider "prod" is already defined at providers.nacos[0].name`,
		`tandem.yaml:8: providers.nacos[1].servers[0]: must be host:port, got "nacos"`,
		`tandem.yaml:9: notify[0].type: must be one of webhook, dingtalk, feishu, wecom, slack, got "email"`,
	}, "\n"))
}

func TestConfigRejectsUnknownFields(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte("git: {url: x, intervall: 5s}\n"))
	require.EqualError(t, err, `tandem.yaml:1: git.intervall: unknown field; expected one of: allowNonFastForward, auth, branch, interval, maxFetchBytes, path, url, verify, webhook`)
}

func TestExamplesAreValid(t *testing.T) {
	cfg, err := spec.LoadConfig("../examples/tandem.yaml")
	require.NoError(t, err)
	set, err := spec.Load(os.DirFS("../examples"), "services", cfg)
	require.NoError(t, err)
	require.Equal(t, []string{"gateway", "push", "user-service"}, set.Names())
	_, err = spec.LoadConfig("../examples/tandem.full.yaml")
	require.NoError(t, err, "the fully commented example config stays valid")
}

func TestSecretNeverPrints(t *testing.T) {
	t.Setenv("TANDEM_TEST_SECRET", "s3cr3t-value")
	s, err := spec.SecretFromEnv("git.auth.tokenEnv", "TANDEM_TEST_SECRET")
	require.NoError(t, err)
	require.Equal(t, "s3cr3t-value", s.Reveal())
	var buf bytes.Buffer
	for _, format := range []string{"%v", "%s", "%q", "%#v", "%+v", "%x"} {
		buf.Reset()
		_, _ = fmtFprintf(&buf, format, s)
		require.NotContains(t, buf.String(), "s3cr3t", format)
	}
	_, err = spec.SecretFromEnv("git.auth.tokenEnv", "TANDEM_TEST_UNSET")
	require.EqualError(t, err, "git.auth.tokenEnv: environment variable TANDEM_TEST_UNSET is not set")
}

// health.preset and drain.evidence.preset fill in what the stack answers,
// and leave every field the spec sets alone.
func TestPresetsFillWhatTheSpecLeavesOut(t *testing.T) {
	springBoot := strings.Replace(validService,
		"health: {http: {path: /healthz}, version: {nacosMetadata: version}}",
		"health: {preset: spring-boot}\ndrain: {evidence: {preset: spring-boot, sessions: [ws_open]}}", 1)
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(springBoot)}}, "services", nil)
	require.NoError(t, err)
	svc, _ := set.Get("user-service")
	require.Equal(t, &spec.HTTPProbe{Path: "/actuator/health", Scheme: "http", JSONStatus: "UP"}, svc.Health.HTTP)
	require.Equal(t, spec.VersionSource{HTTP: "/actuator/info", JSON: "build.version"}, svc.Health.Version)
	require.Equal(t, "/actuator/prometheus", svc.Drain.Metrics)
	inFlight, sessions, scrape := svc.Drain.Evidence.Series()
	require.Equal(t, []string{"http_server_requests_active_seconds_count"}, inFlight)
	require.Equal(t, []string{"ws_open"}, sessions, "the spec's own series are added to the preset's")
	require.Equal(t, `http_server_requests_active_seconds_count{method="GET"}`, scrape)

	own := strings.Replace(validService,
		"health: {http: {path: /healthz}, version: {nacosMetadata: version}}",
		"health: {preset: spring-boot, http: {path: /health, port: 8081}, version: {nacosMetadata: version}}\n"+
			"drain: {metrics: /prom, evidence: {preset: spring-boot, scrape: 'x{a=\"b\"}'}}", 1)
	set, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(own)}}, "services", nil)
	require.NoError(t, err)
	svc, _ = set.Get("user-service")
	require.Equal(t, &spec.HTTPProbe{Path: "/health", Port: 8081, Scheme: "http", JSONStatus: "UP"}, svc.Health.HTTP)
	require.Equal(t, spec.VersionSource{NacosMetadata: "version"}, svc.Health.Version, "the Nacos metadata version stays")
	require.Equal(t, "/prom", svc.Drain.Metrics)
	require.Equal(t, `x{a="b"}`, svc.Drain.Evidence.Scrape)
}

func TestSelectorsParseAndMatchLabels(t *testing.T) {
	sel, err := spec.ParseSelector(` http_requests_active { method = "GET" , uri!="/metrics"} `)
	require.NoError(t, err)
	require.Equal(t, `http_requests_active{method="GET",uri!="/metrics"}`, sel.String())
	require.True(t, sel.Matches(map[string]string{"method": "GET", "uri": "/orders"}))
	require.False(t, sel.Matches(map[string]string{"method": "GET", "uri": "/metrics"}))
	require.False(t, sel.Matches(map[string]string{"method": "POST"}))
	for _, bad := range []string{"", "{a=\"b\"}", "x{a=\"b\"", "x{a=b}", "x{a=\"b\" c=\"d\"}", "x{0=\"b\"}", "x{a=~\"b\"}"} {
		_, err := spec.ParseSelector(bad)
		require.Error(t, err, bad)
	}
}

func TestBindingsWithoutAListenerAreWarnedAbout(t *testing.T) {
	doc := strings.Replace(validService, "  - {alb: prod-hz, serverGroup: sgp-0123}",
		"  - {alb: prod-hz, serverGroup: sgp-0123}\n  - {alb: prod-hz, serverGroup: sgp-0456, listener: lsn-1}\n  - {slb: prod-hz, loadBalancer: lb-1}", 1)
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(doc)}}, "services", nil)
	require.NoError(t, err, "a warning never refuses a commit")
	svc, _ := set.Get("user-service")
	require.Equal(t, 2*time.Minute, svc.Verify.LBHealthTimeout.D())
	var got []string
	for _, w := range set.Warnings() {
		got = append(got, w.String())
	}
	require.Equal(t, []string{
		"services/user.yaml:9: traffic[0]: warning: binding alb:prod-hz/sgp-0123 names no listener: the shift cannot be confirmed by the LB's health checks (set listener to the listener that forwards to sgp-0123)",
		"services/user.yaml:11: traffic[2]: warning: binding slb:prod-hz/lb-1/default names no listener: the shift cannot be confirmed by the LB's health checks (set listenerPort)",
	}, got)
}

func TestConfigRefusesCredentialsInTheGitURL(t *testing.T) {
	for url, what := range map[string]string{
		"https://deployer:tok-SECRET@git.example.com/desired.git": "a password (user:password@)",
		"https://tok-SECRET@git.example.com/desired.git":          "credentials (user@ or token@)",
	} {
		_, err := spec.ParseConfig("tandem.yaml", []byte("listen: 127.0.0.1:9000\ngit:\n  url: "+url+"\n  maxFetchBytes: 1000\n"))
		require.EqualError(t, err, "tandem.yaml:3: git.url: must not contain "+what+": it would be stored in the config, the Git cache and error messages; "+
			"name environment variables in git.auth.tokenEnv (or git.auth.usernameEnv and git.auth.passwordEnv) instead\n"+
			"tandem.yaml:4: git.maxFetchBytes: must be at least 1048576 (1 MiB), got 1000")
		require.NotContains(t, err.Error(), "tok-SECRET")
	}
	for _, url := range []string{"ssh://git@git.example.com/desired.git", "git@git.example.com:desired.git", "/srv/desired"} {
		_, err := spec.ParseConfig("tandem.yaml", []byte("git: {url: \""+url+"\"}\n"))
		require.NoError(t, err, url)
	}
}

func TestTLSSettingsAreValidatedWithTheirLocation(t *testing.T) {
	files := testkit.NewTLSFiles(t)
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	require.NoError(t, os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600))
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(`
git: {url: "file:///srv/fleet.git"}
providers:
  nacos:
    - {name: a, servers: ["nacos:8848"], scheme: https, caFile: `+files.CA+`, certFile: `+files.ClientCert+`, keyFile: `+files.ClientKey+`}
ha:
  etcd: ["https://etcd-1:2379", "etcd-2:2379"]
  caFile: `+files.CA+`
  serverName: etcd.internal
`))
	require.NoError(t, err)
	require.Equal(t, "https", cfg.Providers.Nacos[0].Scheme)
	tc, err := cfg.HA.TLS().ClientConfig("ha")
	require.NoError(t, err)
	require.Equal(t, "etcd.internal", tc.ServerName)

	_, err = spec.ParseConfig("tandem.yaml", []byte(`
git: {url: "file:///srv/fleet.git"}
providers:
  nacos:
    - {name: a, servers: ["nacos:8848"], scheme: https}
    - {name: b, servers: ["nacos:8848"], scheme: https, caFile: /nonexistent/ca.pem}
    - {name: c, servers: ["nacos:8848"], caFile: `+files.CA+`}
    - {name: d, servers: ["nacos:8848"], scheme: https, caFile: `+notPEM+`}
    - {name: e, servers: ["nacos:8848"], scheme: ftp}
ha:
  etcd: ["http://etcd-1:2379"]
  caFile: `+files.CA+`
  certFile: /nonexistent/client.pem
  keyFile: `+files.ClientKey+`
`))
	require.Error(t, err)
	lines := strings.Split(err.Error(), "\n")
	for _, want := range []string{
		`tandem.yaml:5: providers.nacos[0].caFile: is required with scheme https`,
		`tandem.yaml:6: providers.nacos[1].caFile: cannot read the CA bundle: stat /nonexistent/ca.pem: no such file or directory`,
		`tandem.yaml:7: providers.nacos[2].scheme: must be https when caFile, certFile, keyFile or serverName is set`,
		`tandem.yaml:8: providers.nacos[3].caFile: ` + notPEM + ` holds no PEM certificate`,
		`tandem.yaml:9: providers.nacos[4].scheme: must be http or https, got "ftp"`,
		`tandem.yaml:13: ha.certFile: cannot read the client certificate: stat /nonexistent/client.pem: no such file or directory`,
		`tandem.yaml:11: ha.etcd[0]: must be https:// or host:port when caFile, certFile, keyFile or serverName is set, got "http://etcd-1:2379"`,
	} {
		require.True(t, slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, want) }), "want a line starting %q in:\n%s", want, err)
	}
}
