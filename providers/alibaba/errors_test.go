package alibaba_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	albapi "github.com/alibabacloud-go/alb-20200616/v2/client"
	slbapi "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/alibaba/emulator/emutest"
	"github.com/tandemhq/tandem/spec"
)

// TestErrorCodesThroughTheSDK has one row per documented error code and
// HTTP status (the sources are cited in errors.go). The emulator answers
// the first call with the code and status; the official SDK turns that
// answer into its error object, and Retry decides: a transient error is
// retried (the second call passes), a permanent one returns at once with
// its reason.
func TestErrorCodesThroughTheSDK(t *testing.T) {
	e, cfg := emutest.Start(t, "prod-hz", emulator.Options{})
	require.NoError(t, e.Seed(emulator.State{
		ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", Servers: []*emulator.Server{{ID: "i-1", IP: "10.0.0.1", Port: 80, Weight: 100}}}},
		Listeners:    []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}},
		LoadBalancers: []*emulator.LoadBalancer{{
			ID:            "lb-1",
			VServerGroups: []*emulator.VServerGroup{{ID: "rsp-1", Servers: []*emulator.Server{{ID: "i-2", IP: "10.0.0.2", Port: 80, Weight: 100}}}},
			Listeners:     []*emulator.SLBListener{{Port: 80, VServerGroup: "rsp-1"}},
		}},
	}))
	sdk, err := alibaba.Config(spec.KindALB, cfg)
	require.NoError(t, err)

	calls := map[string]func(context.Context) error{
		"ListServerGroupServers": func(ctx context.Context) error {
			c, err := albapi.NewClient(sdk)
			require.NoError(t, err)
			_, err = c.ListServerGroupServersWithContext(ctx, &albapi.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1")}, &dara.RuntimeOptions{})
			return err
		},
		"DescribeVServerGroupAttribute": func(ctx context.Context) error {
			c, err := slbapi.NewClient(sdk)
			require.NoError(t, err)
			_, err = c.DescribeVServerGroupAttributeWithContext(ctx, &slbapi.DescribeVServerGroupAttributeRequest{RegionId: tea.String("cn-hangzhou"), VServerGroupId: tea.String("rsp-1")}, &dara.RuntimeOptions{})
			return err
		},
		"DescribeHealthStatus": func(ctx context.Context) error {
			c, err := slbapi.NewClient(sdk)
			require.NoError(t, err)
			_, err = c.DescribeHealthStatusWithContext(ctx, &slbapi.DescribeHealthStatusRequest{RegionId: tea.String("cn-hangzhou"), LoadBalancerId: tea.String("lb-1"), ListenerPort: tea.Int32(80)}, &dara.RuntimeOptions{})
			return err
		},
	}
	const (
		alb    = "ListServerGroupServers"
		clb    = "DescribeVServerGroupAttribute"
		health = "DescribeHealthStatus"
		retry  = "" // transient: retried
	)
	for _, tc := range []struct {
		action string
		code   string
		status int
		reason string // retry, or the permanent reason
	}{
		// CLB (slb-20140515), temporary: retried.
		{clb, "InvalidParameter", 503, retry},
		{clb, "SystemBusy", 449, retry},
		{clb, "ServiceIsConfiguring", 400, retry},
		{clb, "VServerGroupProcessing", 400, retry},
		{clb, "OperationBusy", 400, retry},
		{clb, "ProcessingSameRequest", 400, retry},
		{clb, "BackendServer.configuring", 409, retry},
		{clb, "ServiceIsStopping", 409, retry},
		{clb, "LocationServiceTimeout", 400, retry},
		{clb, "ServiceUnavailable", 503, retry},
		{clb, "ServiceUnavailable", 400, retry},
		{clb, "InternalError", 500, retry},
		{clb, "InternalError", 400, retry},
		{clb, "InternalInvokeError", 500, retry},
		{clb, "Throttling", 400, retry},
		{clb, "Throttling.User", 400, retry},
		{clb, "Throttling.Api", 400, retry},
		// CLB, permanent.
		{clb, "InvalidParameter", 400, alibaba.ReasonInvalidParameter},
		{clb, "InvalidParameter", 404, alibaba.ReasonNotFound},
		{clb, "InvalidLoadBalancerId.NotFound", 404, alibaba.ReasonNotFound},
		{clb, "InvalidServerId.NotFound", 404, alibaba.ReasonNotFound},
		{clb, "InvalidRegionId.NotFound", 404, alibaba.ReasonNotFound},
		{clb, "TooManyBackendServers", 400, alibaba.ReasonInvalidParameter},
		{clb, "InvalidWeight.Malformed", 400, alibaba.ReasonInvalidParameter},
		{clb, "MissingParameter", 400, alibaba.ReasonInvalidParameter},
		{clb, "Forbidden", 403, alibaba.ReasonPermissionDenied},
		{clb, "Forbbiden.SubUser", 403, alibaba.ReasonPermissionDenied},
		{health, "ListenerNotFound", 404, alibaba.ReasonNoListenerHealth},
		{health, "CheckedListenerNotFound", 404, alibaba.ReasonNoListenerHealth},
		// ALB (alb-20200616), temporary: retried.
		{alb, "IncorrectStatus.serverGroup", 400, retry},
		{alb, "IncorrectStatus.ServerGroup", 400, retry}, // Terraform's spelling
		{alb, "IncorrectStatus.listener", 400, retry},
		{alb, "Conflict.Lock", 400, retry},
		{alb, "SystemBusy", 400, retry},
		{alb, "IdempotenceProcessing", 400, retry},
		{alb, "Throttling", 429, retry},
		{alb, "ServiceUnavailable", 503, retry},
		{alb, "InternalError", 500, retry},
		{alb, "UnknownError", 400, retry},
		{alb, "SignatureNonceUsed", 400, retry},
		{alb, "SomethingNew", 500, retry},
		{alb, "SomethingNew", 400, retry},
		// ALB and the gateway, permanent.
		{alb, "ResourceNotFound.serverGroup", 404, alibaba.ReasonNotFound},
		{alb, "ResourceNotFound.listener", 404, alibaba.ReasonNotFound},
		{alb, "IllegalParam.Weight", 400, alibaba.ReasonInvalidParameter},
		{alb, "IdempotenceSignatureMismatch", 400, alibaba.ReasonInvalidParameter},
		{alb, "Forbidden.NoPermission", 403, alibaba.ReasonPermissionDenied},
		{alb, "UnauthorizedRegion", 403, alibaba.ReasonPermissionDenied},
		{alb, "InvalidAccessKeyId.NotFound", 404, alibaba.ReasonInvalidCredentials},
		{alb, "InvalidAccessKeyId.Inactive", 400, alibaba.ReasonInvalidCredentials},
		{alb, "SignatureDoesNotMatch", 400, alibaba.ReasonInvalidCredentials},
		{alb, "InvalidSecurityToken.Expired", 400, alibaba.ReasonInvalidCredentials},
		{alb, "InvalidTimeStamp.Expired", 400, alibaba.ReasonInvalidCredentials},
		{alb, "DryRunOperation", 400, alibaba.ReasonDryRun},
		{alb, "SomethingNew", 403, alibaba.ReasonPermissionDenied},
		{alb, "SomethingNew", 404, alibaba.ReasonNotFound},
	} {
		name := fmt.Sprintf("%s %d %s", tc.code, tc.status, map[bool]string{true: "is retried", false: "is permanent " + tc.reason}[tc.reason == retry])
		t.Run(name, func(t *testing.T) {
			e.Inject(tc.action, tc.code, tc.status, 1)
			n := 0
			err := alibaba.Retry{Base: time.Millisecond, Max: 2 * time.Millisecond, Timeout: 10 * time.Second}.Do(t.Context(), tc.action, func(ctx context.Context) error {
				n++
				return calls[tc.action](ctx)
			})
			if tc.reason == retry {
				require.NoError(t, err)
				require.Equal(t, 2, n, "one failed attempt, then the retry passes")
				return
			}
			require.Equal(t, 1, n, "a permanent error is not retried")
			var perm *providers.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, tc.reason, perm.Reason)
			var api *alibaba.APIError
			require.ErrorAs(t, err, &api)
			require.Equal(t, tc.code, api.Code)
			require.Equal(t, tc.status, api.Status, "the SDK carries the HTTP status")
			require.Equal(t, tc.reason == alibaba.ReasonNoListenerHealth, errors.Is(err, alibaba.ErrNoListenerHealth),
				"only a missing or unchecked listener means the LB has no health for the binding")
		})
	}
}
