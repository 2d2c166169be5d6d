package spec_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

func TestAlibabaNetworkAndRateLimit(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(`
git: {url: /srv/fleet}
providers:
  alb: [{name: a, region: cn-hangzhou}]
  slb: [{name: s, region: cn-shanghai, network: vpc, rateLimit: {callsPerSecond: 2.5, burst: 5}}]
`))
	require.NoError(t, err)
	require.Equal(t, spec.NetworkPublic, cfg.Providers.ALB[0].Network, "public by default")
	require.Equal(t, spec.RateLimit{CallsPerSecond: spec.DefaultCallsPerSecond, Burst: spec.DefaultBurst}, cfg.Providers.ALB[0].RateLimit)
	require.Equal(t, spec.NetworkVPC, cfg.Providers.SLB[0].Network)
	require.Equal(t, spec.RateLimit{CallsPerSecond: 2.5, Burst: 5}, cfg.Providers.SLB[0].RateLimit)

	_, err = spec.ParseConfig("tandem.yaml", []byte(`
git: {url: /srv/fleet}
providers:
  alb:
    - name: a
      region: cn-hangzhou
      network: intranet
      rateLimit:
        callsPerSecond: -1
        burst: -3
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:7: providers.alb[0].network: must be public or vpc, got "intranet"`,
		`tandem.yaml:9: providers.alb[0].rateLimit.callsPerSecond: must be positive, got -1`,
		`tandem.yaml:10: providers.alb[0].rateLimit.burst: must be positive, got -3`,
	}, "\n"))

	_, err = spec.ParseConfig("tandem.yaml", []byte("git: {url: x}\nproviders:\n  alb: [{name: a, region: r, rateLimit: {qps: 4}}]\n"))
	require.EqualError(t, err, `tandem.yaml:3: providers.alb[0].rateLimit.qps: unknown field; expected one of: burst, callsPerSecond`)
}
