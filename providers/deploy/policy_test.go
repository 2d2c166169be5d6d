package deploy_test

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/spec"
)

// policyConfig is a tandem.yaml whose credentials live in T_AK_SECRET and
// T_API_TOKEN, and whose policy lets hooks run sh with DEPLOY_* and T_*.
func policyConfig(t *testing.T, extra string) *spec.Config {
	t.Helper()
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(`git: {url: "file:///srv/fleet.git"}
api: {tokenEnv: T_API_TOKEN}
providers:
  alb: [{name: prod, region: cn-hangzhou, accessKeyIdEnv: T_AK_ID, accessKeySecretEnv: T_AK_SECRET}]
policy:
  hooks: {commands: [sh], env: ["DEPLOY_*", "T_*"`+extra+`]}
`))
	require.NoError(t, err)
	return cfg
}

func TestAHookThatPrintsItsEnvironmentSeesNoSecretOfTheDaemon(t *testing.T) {
	t.Setenv("T_AK_ID", "LTAI-id-Qw3")
	t.Setenv("T_AK_SECRET", "ak-secret-Zx9")
	t.Setenv("T_API_TOKEN", "api-token-Rt5")
	t.Setenv("T_REGION", "eu-central")
	t.Setenv("DEPLOY_TARGET", "blue")
	t.Setenv("UNLISTED_PASSWORD", "unlisted-Pk2")
	t.Setenv("TANDEM_GIT_TOKEN", "git-token-Lm7") // the daemon's own TANDEM_* variables are not passed either

	d, err := deploy.New(spec.Deploy{Exec: []string{"sh", "-c", "env"}, Timeout: spec.Duration(10 * time.Second)}, deploy.PolicyOf(policyConfig(t, "")), nil)
	require.NoError(t, err)
	res, err := d.Deploy(t.Context(), request)
	require.NoError(t, err)
	for _, secret := range []string{"LTAI-id-Qw3", "ak-secret-Zx9", "api-token-Rt5", "unlisted-Pk2", "git-token-Lm7"} {
		require.NotContains(t, res.Output, secret)
	}
	for _, want := range []string{"PATH=", "T_REGION=eu-central", "DEPLOY_TARGET=blue", "TANDEM_SERVICE=user-service", "TANDEM_GROUP=B"} {
		require.Contains(t, res.Output, want)
	}

	// A credential reaches a hook only when the policy lists it by name.
	d, err = deploy.New(spec.Deploy{Exec: []string{"sh", "-c", "env"}}, deploy.PolicyOf(policyConfig(t, ", T_API_TOKEN")), nil)
	require.NoError(t, err)
	res, err = d.Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Contains(t, res.Output, "T_API_TOKEN=api-token-Rt5")
	require.NotContains(t, res.Output, "ak-secret-Zx9")
}

func TestACommandThePolicyDoesNotListIsRefused(t *testing.T) {
	for _, pol := range []deploy.Policy{
		{}, // policy.hooks.commands unset
		deploy.PolicyOf(policyConfig(t, "")),
	} {
		_, err := deploy.New(spec.Deploy{Exec: []string{"/bin/cat", "/proc/self/environ"}}, pol, nil)
		var perm *providers.PermanentError
		require.ErrorAs(t, err, &perm)
		require.Equal(t, "PolicyRefused", perm.Reason)
		require.EqualError(t, err, `deploy.exec[0]: "/bin/cat" is not one of the commands policy.hooks.commands of the daemon config allows`)
	}
}

// resolver answers from a fixed table, like a DNS server the test controls.
type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, errors.New("no such host " + host)
}

func TestDeployURLsAtMetadataAddressesAreRefused(t *testing.T) {
	t.Run("an address in the URL is refused before anything is sent", func(t *testing.T) {
		_, err := deploy.New(spec.Deploy{HTTP: &spec.HTTPDeploy{URL: "http://169.254.169.254/latest/meta-data/"}}, deploy.Policy{}, nil)
		var perm *providers.PermanentError
		require.ErrorAs(t, err, &perm)
		require.Equal(t, "PolicyRefused", perm.Reason)
		require.EqualError(t, err, "deploy.http.url: 169.254.169.254 is a link-local address (cloud metadata services live there): refused unless policy.network.deploy lists it explicitly")
	})

	var requests atomic.Int32
	sys := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		requests.Add(1)
		w.Header().Set("Location", "http://100.100.100.200/latest/meta-data/ram/security-credentials/")
		w.WriteHeader(http.StatusAccepted)
	}))
	u, err := url.Parse(sys)
	require.NoError(t, err)
	dns := resolver{
		"metadata.evil.example": {netip.MustParseAddr("169.254.169.254")},
		"deploy.example":        {netip.MustParseAddr(u.Hostname())},
	}
	pol := deploy.Policy{Resolver: dns}

	t.Run("a name resolving to a metadata address is refused when dialing", func(t *testing.T) {
		d, err := deploy.New(spec.Deploy{HTTP: &spec.HTTPDeploy{URL: "http://metadata.evil.example:" + u.Port() + "/deploy"}}, pol, nil)
		require.NoError(t, err, "no I/O when the service is loaded: the name is only resolved when dialing")
		_, err = d.Deploy(t.Context(), request)
		var perm *providers.PermanentError
		require.ErrorAs(t, err, &perm)
		require.Equal(t, "PolicyRefused", perm.Reason)
		require.ErrorContains(t, err, "metadata.evil.example (169.254.169.254) is a link-local address")
	})
	t.Run("a status URL at a metadata address is refused", func(t *testing.T) {
		d, err := deploy.New(spec.Deploy{HTTP: &spec.HTTPDeploy{URL: "http://deploy.example:" + u.Port() + "/deploy", PollInterval: spec.Duration(time.Millisecond)},
			Timeout: spec.Duration(10 * time.Second)}, pol, nil)
		require.NoError(t, err)
		_, err = d.Deploy(t.Context(), request)
		require.Equal(t, int32(1), requests.Load(), "the deploy system, reached through the resolver, got the POST")
		var perm *providers.PermanentError
		require.ErrorAs(t, err, &perm)
		require.Equal(t, "PolicyRefused", perm.Reason)
		require.ErrorContains(t, err, "100.100.100.200 is the Alibaba Cloud metadata service")
	})
}

func TestDeployURLsOutsideTheAllowlistAreRefused(t *testing.T) {
	sys := serve(t, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte(`{"status":"succeeded"}`)) }))
	pol := deploy.Policy{Hosts: spec.NewAllowlist("policy.network.deploy", "10.0.0.0/8")}
	_, err := deploy.New(spec.Deploy{HTTP: &spec.HTTPDeploy{URL: sys + "/deploy"}}, pol, nil)
	require.ErrorContains(t, err, "deploy.http.url: 127.0.0.1 is not allowed by policy.network.deploy")

	pol.Hosts = spec.NewAllowlist("policy.network.deploy", "127.0.0.0/8")
	d, err := deploy.New(spec.Deploy{HTTP: &spec.HTTPDeploy{URL: sys + "/deploy"}}, pol, nil)
	require.NoError(t, err)
	_, err = d.Deploy(t.Context(), request)
	require.NoError(t, err)
}
