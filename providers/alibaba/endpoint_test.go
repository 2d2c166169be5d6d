package alibaba_test

import (
	"context"
	"testing"
	"time"

	albapi "github.com/alibabacloud-go/alb-20200616/v2/client"
	slbapi "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"
	"golang.org/x/time/rate"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba"
	"github.com/tandemhq/tandem/spec"
)

// TestEndpointsFromRegionAndNetwork builds the SDK clients from only a
// region (and network) and checks the endpoint the SDK resolves against the
// documented endpoint lists:
//   - ALB: https://help.aliyun.com/document_detail/2254821.html
//     (alb.<region>.aliyuncs.com, VPC alb-vpc.<region>.aliyuncs.com)
//   - CLB: https://www.alibabacloud.com/help/en/slb/classic-load-balancer/developer-reference/api-slb-2014-05-15-endpoint
//     (cn-hangzhou slb.aliyuncs.com, other regions slb.<region>.aliyuncs.com,
//     VPC slb-vpc.<region>.aliyuncs.com)
//
// Where the CLB page names a regional public endpoint (cn-shanghai,
// ap-southeast-1, us-west-1, cn-beijing) the SDK uses the central
// slb.aliyuncs.com from its region map instead; Tandem keeps the SDK's
// choice for the public network (that the central endpoint serves those
// regions is the SDK's claim, UNVERIFIED here).
func TestEndpointsFromRegionAndNetwork(t *testing.T) {
	t.Setenv("TEST_AK", "id")
	t.Setenv("TEST_SK", "secret")
	for _, tc := range []struct {
		region, network string
		alb, slb        string
	}{
		{"cn-hangzhou", spec.NetworkPublic, "alb.cn-hangzhou.aliyuncs.com", "slb.aliyuncs.com"},
		{"cn-shanghai", spec.NetworkPublic, "alb.cn-shanghai.aliyuncs.com", "slb.aliyuncs.com"},
		{"cn-beijing", spec.NetworkPublic, "alb.cn-beijing.aliyuncs.com", "slb.aliyuncs.com"},
		{"ap-southeast-1", spec.NetworkPublic, "alb.ap-southeast-1.aliyuncs.com", "slb.aliyuncs.com"},
		{"us-west-1", spec.NetworkPublic, "alb.us-west-1.aliyuncs.com", "slb.aliyuncs.com"},
		{"eu-central-1", spec.NetworkPublic, "alb.eu-central-1.aliyuncs.com", "slb.eu-central-1.aliyuncs.com"},
		{"ap-northeast-1", spec.NetworkPublic, "alb.ap-northeast-1.aliyuncs.com", "slb.ap-northeast-1.aliyuncs.com"},
		{"cn-hangzhou", spec.NetworkVPC, "alb-vpc.cn-hangzhou.aliyuncs.com", "slb-vpc.cn-hangzhou.aliyuncs.com"},
		{"cn-shanghai", spec.NetworkVPC, "alb-vpc.cn-shanghai.aliyuncs.com", "slb-vpc.cn-shanghai.aliyuncs.com"},
		{"ap-southeast-1", spec.NetworkVPC, "alb-vpc.ap-southeast-1.aliyuncs.com", "slb-vpc.ap-southeast-1.aliyuncs.com"},
		{"us-west-1", spec.NetworkVPC, "alb-vpc.us-west-1.aliyuncs.com", "slb-vpc.us-west-1.aliyuncs.com"},
		{"eu-central-1", spec.NetworkVPC, "alb-vpc.eu-central-1.aliyuncs.com", "slb-vpc.eu-central-1.aliyuncs.com"},
	} {
		t.Run(tc.region+" "+tc.network, func(t *testing.T) {
			p := spec.AlibabaProvider{Name: "x", Region: tc.region, Network: tc.network, AccessKeyIDEnv: "TEST_AK", AccessKeySecretEnv: "TEST_SK"}
			cfg, err := alibaba.Config(spec.KindALB, p)
			require.NoError(t, err)
			a, err := albapi.NewClient(cfg)
			require.NoError(t, err)
			require.Equal(t, tc.alb, tea.StringValue(a.Endpoint))

			cfg, err = alibaba.Config(spec.KindSLB, p)
			require.NoError(t, err)
			s, err := slbapi.NewClient(cfg)
			require.NoError(t, err)
			require.Equal(t, tc.slb, tea.StringValue(s.Endpoint))
		})
	}

	p := spec.AlibabaProvider{Name: "x", Region: "cn-hangzhou", Network: spec.NetworkVPC, Endpoint: "127.0.0.1:9000", AccessKeyIDEnv: "TEST_AK", AccessKeySecretEnv: "TEST_SK"}
	cfg, err := alibaba.Config(spec.KindSLB, p)
	require.NoError(t, err)
	s, err := slbapi.NewClient(cfg)
	require.NoError(t, err)
	require.Equal(t, "127.0.0.1:9000", tea.StringValue(s.Endpoint), "an explicit endpoint wins over the network")
}

func TestRateLimitMakesCallsWaitNotFail(t *testing.T) {
	r := alibaba.NewRetry(spec.KindALB, spec.AlibabaProvider{Name: "x", RateLimit: spec.RateLimit{CallsPerSecond: 1000, Burst: 1}}, nil)
	require.NotNil(t, r.Limit)
	calls := 0
	for range 20 {
		require.NoError(t, r.Do(t.Context(), "Op", func(context.Context) error { calls++; return nil }),
			"a call beyond the burst waits for its token and then runs")
	}
	require.Equal(t, 20, calls)

	// A bucket that refills once an hour: the burst passes, the next call
	// would wait past its context's deadline, so it is not made at all.
	r.Limit = rate.NewLimiter(rate.Every(time.Hour), 2)
	calls = 0
	for range 2 {
		require.NoError(t, r.Do(t.Context(), "Op", func(context.Context) error { calls++; return nil }))
	}
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	err := r.Do(ctx, "Op", func(context.Context) error { calls++; return nil })
	require.ErrorContains(t, err, "Op: waiting for the API rate limit of alb/x")
	require.False(t, providers.IsPermanent(err), "a call that could not get a token in time is retried later, not stalled")
	require.Equal(t, 2, calls)
}
