package alibaba_test

import (
	"testing"

	albapi "github.com/alibabacloud-go/alb-20200616/v2/client"
	slbapi "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

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
