package scalebench_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/internal/scalebench"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m, nacostest.IgnoreSDKGoroutines()...) }

// A small run of the whole benchmark, so that it keeps working: the daemon
// adopts every service, and each idle pass reads every group once and
// probes nothing.
func TestASmallRunReadsEveryGroupOnceAndProbesNothingWhenIdle(t *testing.T) {
	res, err := scalebench.Run(t.Context(), scalebench.Options{
		Dir: t.TempDir(), Tandem: buildTandem(t), Services: 15, Passes: 2, Between: 100 * time.Millisecond,
		Budget: spec.RateLimit{CallsPerSecond: 20, Burst: 2},
	})
	require.NoError(t, err)
	require.NoError(t, res.Err())
	require.Len(t, res.Daemon, 2)
	require.Len(t, res.InProcess, 2)
	for _, p := range res.Daemon {
		require.Equal(t, 6, p.Calls.ByAction["ALB ListServerGroupServers"])
		require.Equal(t, 6, p.Calls.ByAction["SLB DescribeVServerGroupAttribute"])
		require.Equal(t, 9, p.Calls.ByAction["Nacos GET /nacos/v1/ns/catalog/instances"])
	}
	// The first passes probed every instance: 4 per service.
	require.Equal(t, 60, res.StartupAPI.ByAction["Instances GET /healthz"])
	require.Positive(t, res.HWM)
	// Under a budget of 20 calls/s, burst 2, per instance, the idle pass
	// still observes every service (it only takes longer) and no instance
	// made more calls than the budget allows.
	require.NoError(t, res.Budget.Err)
	require.Equal(t, map[string]int{"ALB": 12, "SLB": 12}, res.Budget.Calls)
	require.True(t, res.Budget.Holds(), "calls %v in %s", res.Budget.Calls, res.Budget.Took)

	var out bytes.Buffer
	require.NoError(t, res.Print(&out))
	require.Contains(t, out.String(), "15 services: 6 on ALB server groups, 6 on SLB vServer groups, 3 in Nacos only; 9 registered in Nacos; 60 instances")
	require.Regexp(t, `(?m)one list call per server group, no probe +target ≤ 1 +met$`, out.String())
	require.Regexp(t, `(?m)the limit holds: calls ≤ burst \+ limit × time called, per instance +met$`, out.String())
}
