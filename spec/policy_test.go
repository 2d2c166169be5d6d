package spec_test

import (
	"net/netip"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

const policyConfig = `git: {url: "file:///srv/fleet.git"}
api: {tokenEnv: TANDEM_SPEC_API_TOKEN}
providers:
  alb: [{name: prod-hz, region: cn-hangzhou, accessKeyIdEnv: AK_ID, accessKeySecretEnv: AK_SECRET}]
  nacos: [{name: prod, servers: ["127.0.0.1:8848"]}]
policy:
  hooks:
    commands: ["/opt/deploy/*.sh"]
  network:
    deploy: [deploy.internal, 10.0.0.0/8]
    probe: [10.0.0.0/8]
  specEnv:
    names: [DEPLOY_TOKEN]
`

func loadWithPolicy(t *testing.T, config, service string) error {
	t.Helper()
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(config))
	require.NoError(t, err)
	_, err = spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(service)}}, "services", cfg)
	return err
}

func TestServicesBreakingThePolicyAreRefusedWithFileLineAndThePolicyField(t *testing.T) {
	ok := strings.Replace(validService, `deploy: {exec: ["./deploy.sh"]}`, `deploy: {exec: ["/opt/deploy/user.sh"]}`, 1)
	require.NoError(t, loadWithPolicy(t, policyConfig, ok))

	for _, tc := range []struct {
		name, from, to, want string
	}{
		{
			name: "a command the policy does not list",
			from: `deploy: {exec: ["/opt/deploy/user.sh"]}`, to: `deploy: {exec: ["/bin/sh", "-c", "env"]}`,
			want: `services/user.yaml:12: deploy.exec[0]: "/bin/sh" is not one of the commands policy.hooks.commands in tandem.yaml:8 allows`,
		},
		{
			name: "a path climbing out of a globbed directory",
			from: `deploy: {exec: ["/opt/deploy/user.sh"]}`, to: `deploy: {exec: ["/opt/deploy/../../bin/sh.sh"]}`,
			want: `services/user.yaml:12: deploy.exec[0]: "/opt/deploy/../../bin/sh.sh" is not one of the commands policy.hooks.commands in tandem.yaml:8 allows`,
		},
		{
			name: "a token variable outside the prefix and the list",
			from: `deploy: {exec: ["/opt/deploy/user.sh"]}`, to: "deploy:\n  http: {url: \"https://deploy.internal/api\", tokenEnv: AK_SECRET}",
			want: `services/user.yaml:13: deploy.http.tokenEnv: AK_SECRET may not be named by a service file: policy.specEnv in tandem.yaml:13 allows variables starting with TANDEM_SPEC_ and those listed in policy.specEnv.names`,
		},
		{
			name: "a token variable with the prefix that the daemon holds as a credential",
			from: `deploy: {exec: ["/opt/deploy/user.sh"]}`, to: "deploy:\n  http: {url: \"https://deploy.internal/api\", tokenEnv: TANDEM_SPEC_API_TOKEN}",
			want: `services/user.yaml:13: deploy.http.tokenEnv: TANDEM_SPEC_API_TOKEN may not be named by a service file: policy.specEnv in tandem.yaml:13 allows variables starting with TANDEM_SPEC_ and those listed in policy.specEnv.names`,
		},
		{
			name: "a deploy URL at the metadata address",
			from: `deploy: {exec: ["/opt/deploy/user.sh"]}`, to: "deploy:\n  http: {url: \"http://169.254.169.254/latest/meta-data/\"}",
			want: `services/user.yaml:13: deploy.http.url: 169.254.169.254 is a link-local address (cloud metadata services live there): refused unless policy.network.deploy lists it explicitly`,
		},
		{
			name: "a deploy URL at a host not listed",
			from: `deploy: {exec: ["/opt/deploy/user.sh"]}`, to: "deploy:\n  http: {url: \"https://evil.example/x\"}",
			want: `services/user.yaml:13: deploy.http.url: host evil.example is not allowed by policy.network.deploy in tandem.yaml:10`,
		},
		{
			name: "an instance at Alibaba Cloud's metadata address",
			from: `ip: 10.0.2.11`, to: `ip: 100.100.100.200`,
			want: `services/user.yaml:7: groups.B.instances[0].ip: 100.100.100.200 is the Alibaba Cloud metadata service: refused unless policy.network.probe lists it explicitly`,
		},
		{
			name: "an instance outside the probe list",
			from: `ip: 10.0.2.11`, to: `ip: 192.168.1.7`,
			want: `services/user.yaml:7: groups.B.instances[0].ip: 192.168.1.7 is not allowed by policy.network.probe in tandem.yaml:11`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			svc := strings.Replace(ok, tc.from, tc.to, 1)
			require.EqualError(t, loadWithPolicy(t, policyConfig, svc), tc.want)
		})
	}
}

func TestPolicyDefaults(t *testing.T) {
	const config = "git: {url: \"file:///srv/fleet.git\"}\nproviders:\n  alb: [{name: prod-hz, region: cn-hangzhou}]\n  nacos: [{name: prod, servers: [\"127.0.0.1:8848\"]}]\n"
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(config))
	require.NoError(t, err)
	require.Equal(t, "TANDEM_SPEC_", cfg.Policy.SpecEnv.Prefix)

	require.EqualError(t, loadWithPolicy(t, config, validService),
		`services/user.yaml:12: deploy.exec[0]: "./deploy.sh" may not run: exec hooks are refused until policy.hooks.commands in tandem.yaml (not set) lists the commands the daemon may run for Git`)

	byHTTP := strings.Replace(validService, `deploy: {exec: ["./deploy.sh"]}`, "deploy:\n  http: {url: \"https://anywhere.example/api\", tokenEnv: TANDEM_SPEC_DEPLOY}", 1)
	require.NoError(t, loadWithPolicy(t, config, byHTTP), "deploy URLs may go anywhere but the refused ranges; prefixed variables may be named")
	byHTTP = strings.Replace(byHTTP, "TANDEM_SPEC_DEPLOY", "DEPLOY_TOKEN", 1)
	require.ErrorContains(t, loadWithPolicy(t, config, byHTTP), "deploy.http.tokenEnv: DEPLOY_TOKEN may not be named by a service file: policy.specEnv in tandem.yaml (not set)")
}

func TestPolicySectionIsValidated(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(`git: {url: "file:///srv/fleet.git"}
policy:
  hooks: {commands: ["/opt/[x"], env: ["MY-VAR"]}
  network: {deploy: ["http://deploy.internal"], probe: [deploy.internal]}
  specEnv: {prefix: "TANDEM-", names: ["A B"]}
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:3: policy.hooks.commands[0]: must be a command path or a glob such as /opt/deploy/*.sh, got "/opt/[x"`,
		`tandem.yaml:3: policy.hooks.env[0]: must name an environment variable (letters, digits, _; * as a wildcard), got "MY-VAR"`,
		`tandem.yaml:4: policy.network.deploy[0]: must be a host name, *.domain, an IP address or a CIDR prefix, got "http://deploy.internal"`,
		`tandem.yaml:4: policy.network.probe[0]: must be an IP address or a CIDR prefix such as 10.0.0.0/8, got "deploy.internal"`,
		`tandem.yaml:5: policy.specEnv.prefix: must be the start of an environment variable name (letters, digits, _), got "TANDEM-"`,
		`tandem.yaml:5: policy.specEnv.names[0]: must name an environment variable (letters, digits, _), got "A B"`,
	}, "\n"))
}

func TestCredentialsInAddressesOfTheConfigAreRefused(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(`git: {url: "file:///srv/fleet.git"}
providers:
  alb: [{name: prod-hz, region: cn-hangzhou, endpoint: "ak:sk@alb.example.com"}]
  nacos: [{name: prod, servers: ["nacos:s3cret@10.0.0.5:8848", "10.0.0.6:8848"]}]
ha: {etcd: ["http://root:s3cret@10.0.0.7:2379"]}
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:3: providers.alb[0].endpoint: must not carry credentials (user:password@host): tandem.yaml is printed and copied; keep them in environment variables and name those in the *Env fields`,
		`tandem.yaml:4: providers.nacos[0].servers[0]: must not carry credentials (user:password@10.0.0.5:8848): tandem.yaml is printed and copied; keep them in environment variables and name those in the *Env fields`,
		`tandem.yaml:5: ha.etcd[0]: must not carry credentials (user:password@10.0.0.7:2379): tandem.yaml is printed and copied; keep them in environment variables and name those in the *Env fields`,
	}, "\n"))
	require.NotContains(t, err.Error(), "s3cret")
}

func TestCredentialsInADeployURLAreRefused(t *testing.T) {
	svc := strings.Replace(validService, `deploy: {exec: ["./deploy.sh"]}`, "deploy:\n  http: {url: \"https://bot:tok3n@deploy.internal/api\"}", 1)
	_, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(svc)}}, "services", nil)
	require.EqualError(t, err, `services/user.yaml:13: deploy.http.url: must not carry credentials (user:password@deploy.internal): name an environment variable in deploy.http.tokenEnv instead`)
}

func TestHookEnvironmentPolicy(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(`git: {url: "file:///srv/fleet.git", auth: {tokenEnv: GIT_TOKEN}}
api: {tokenEnv: APP_API_TOKEN}
policy: {hooks: {env: ["APP_*", "ALIBABA_*", "GIT_TOKEN"]}}
`))
	require.NoError(t, err)
	require.Equal(t, []string{"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN", "APP_API_TOKEN", "GIT_TOKEN"}, cfg.SecretEnvNames())
	for name, want := range map[string]bool{
		"PATH": true, "HOME": true, "LANG": true, "TZ": true,
		"APP_REGION":                      true,  // by the glob
		"APP_API_TOKEN":                   false, // a credential of tandem.yaml: a glob does not pass it
		"GIT_TOKEN":                       true,  // a credential listed by its exact name
		"AWS_SECRET":                      false, // not listed
		"ALIBABA_CLOUD_ACCESS_KEY_SECRET": false, // the default credential chain's: a glob does not pass it
		"ALIBABA_REGION":                  true,
		"TANDEM_SPEC_X":                   false,
	} {
		require.Equal(t, want, cfg.HookEnvAllowed(name), name)
	}
}

func TestAllowlistChecksTheAddressAConnectionGoesTo(t *testing.T) {
	ip := netip.MustParseAddr
	open := spec.NewAllowlist("policy.network.deploy")
	require.NoError(t, open.CheckDial("deploy.internal", ip("10.1.2.3")))
	require.ErrorContains(t, open.CheckDial("deploy.internal", ip("169.254.169.254")), "deploy.internal (169.254.169.254) is a link-local address")
	require.ErrorContains(t, open.CheckDial("::ffff:169.254.169.254", ip("::ffff:169.254.169.254")), "is a link-local address", "IPv4-mapped addresses are unmapped first")
	require.ErrorContains(t, open.CheckDial("meta", ip("fd00:ec2::254")), "cloud metadata")

	broad := spec.NewAllowlist("policy.network.deploy", "0.0.0.0/0", "100.64.0.0/10")
	require.Error(t, broad.CheckDial("x", ip("100.100.100.200")), "a broad prefix does not open the metadata address")
	require.NoError(t, broad.CheckDial("x", ip("100.100.100.199")))

	explicit := spec.NewAllowlist("policy.network.probe", "169.254.10.0/24")
	require.NoError(t, explicit.CheckDial("169.254.10.5", ip("169.254.10.5")))
	require.Error(t, explicit.CheckDial("169.254.169.254", ip("169.254.169.254")))

	named := spec.NewAllowlist("policy.network.deploy", "*.deploy.internal", "10.0.0.0/8")
	require.NoError(t, named.CheckDial("eu.deploy.internal", ip("192.168.0.9")), "a listed name may resolve anywhere but the refused ranges")
	require.NoError(t, named.CheckDial("other.example", ip("10.9.9.9")), "an unlisted name may resolve into a listed prefix")
	require.Error(t, named.CheckDial("other.example", ip("192.168.0.9")))
	require.Error(t, named.CheckDial("eu.deploy.internal", ip("169.254.169.254")))
	require.Error(t, named.CheckHost("deploy.internal.evil.example"))
}
