package alibaba

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

func members(weights ...int) []Member {
	out := make([]Member, len(weights))
	for i, w := range weights {
		out[i] = Member{ID: fmt.Sprintf("i-%d", i), IP: "10.0.0.1", Port: 80, Type: "Ecs", Weight: w}
	}
	return out
}

func ids(batches [][]Update) [][]string {
	var out [][]string
	for _, b := range batches {
		var row []string
		for _, u := range b {
			row = append(row, fmt.Sprintf("%s=%d", u.ID, u.Weight))
		}
		out = append(out, row)
	}
	return out
}

func TestPlan(t *testing.T) {
	for _, tc := range []struct {
		name    string
		members []Member
		changes []providers.WeightChange
		batch   int
		want    [][]string
		reason  string
	}{
		{
			name:    "a swap that fits one batch is one call, raises and lowers together",
			members: members(100, 0),
			changes: []providers.WeightChange{{ID: "i-0", Weight: 0}, {ID: "i-1", Weight: 100}},
			batch:   2,
			want:    [][]string{{"i-1=100", "i-0=0"}},
		},
		{
			name:    "a swap beyond one batch raises first, then lowers",
			members: members(100, 100, 0, 0),
			changes: []providers.WeightChange{{ID: "i-0", Weight: 0}, {ID: "i-1", Weight: 0}, {ID: "i-2", Weight: 100}, {ID: "i-3", Weight: 100}},
			batch:   3,
			want:    [][]string{{"i-2=100", "i-3=100"}, {"i-0=0", "i-1=0"}},
		},
		{
			name:    "weights already in place need no call",
			members: members(100, 0),
			changes: []providers.WeightChange{{ID: "i-0", Weight: 100}, {ID: "i-1", Weight: 0}},
			batch:   40,
		},
		{
			name:    "a port narrows the servers of one id",
			members: []Member{{ID: "i-0", Port: 80, Weight: 100}, {ID: "i-0", Port: 81, Weight: 100}},
			changes: []providers.WeightChange{{ID: "i-0", Port: 81, Weight: 0}},
			batch:   40,
			want:    [][]string{{"i-0=0"}},
		},
		{
			name:    "an IP narrows an ENI listed with several IPs",
			members: []Member{{ID: "eni-0", IP: "10.0.0.1", Weight: 100}, {ID: "eni-0", IP: "10.0.0.2", Weight: 100}},
			changes: []providers.WeightChange{{ID: "eni-0", IP: "10.0.0.2", Weight: 0}},
			batch:   40,
			want:    [][]string{{"eni-0=0"}},
		},
		{
			name:    "an unknown server is refused as NotFound",
			members: members(100),
			changes: []providers.WeightChange{{ID: "i-9", Weight: 0}},
			reason:  "NotFound",
		},
		{
			name:    "a known server on an unknown port is refused as NotFound",
			members: members(100),
			changes: []providers.WeightChange{{ID: "i-0", Port: 81, Weight: 0}},
			reason:  "NotFound",
		},
		{
			name:    "a weight above 100 is refused as InvalidParameter",
			members: members(100),
			changes: []providers.WeightChange{{ID: "i-0", Weight: 101}},
			reason:  "InvalidParameter",
		},
		{
			name:    "two weights for one server are refused as InvalidParameter",
			members: members(100, 0),
			changes: []providers.WeightChange{{ID: "i-1", Weight: 50}, {ID: "i-1", Weight: 60}},
			reason:  "InvalidParameter",
		},
		{
			name:    "leaving every server at 0 is refused as WouldZeroAll",
			members: members(100, 0),
			changes: []providers.WeightChange{{ID: "i-0", Weight: 0}},
			reason:  "WouldZeroAll",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Plan("alb:p/sgp-1", tc.members, tc.changes, tc.batch)
			if tc.reason != "" {
				var perm *providers.PermanentError
				require.ErrorAs(t, err, &perm)
				require.Equal(t, tc.reason, perm.Reason)
				require.ErrorContains(t, err, "alb:p/sgp-1")
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, ids(got))
		})
	}
}

func TestVerifyReportsAWeightThatDidNotChange(t *testing.T) {
	batches, err := Plan("b", members(100, 0), []providers.WeightChange{{ID: "i-1", Weight: 100}}, 40)
	require.NoError(t, err)
	require.NoError(t, Verify("b", batches, members(100, 100)))
	require.ErrorContains(t, Verify("b", batches, members(100, 0)), "server i-1 at weight 0, want 100")
	require.ErrorContains(t, Verify("b", batches, members(100)), "no longer lists server i-1")
}

func sdkError(code string, status int, message string) error {
	return tea.NewSDKError(map[string]any{
		"code": code, "statusCode": status, "message": "code: ...",
		"data": map[string]any{"Code": code, "Message": message, "RequestId": "REQ-1"},
	})
}

func TestClassifiedErrorsReadOnOneLine(t *testing.T) {
	err := classify("ListServerGroupServers", sdkError("IncorrectStatus.serverGroup", 400, "The group is busy."))
	require.EqualError(t, err, "ListServerGroupServers: IncorrectStatus.serverGroup (HTTP 400): The group is busy. [request id REQ-1]")
	err = classify("ListServerGroupServers", sdkError("SignatureDoesNotMatch", 400, "server string to sign is: POST&%2F&AccessKeyId%3DLTAIsecretish"))
	require.NotContains(t, err.Error(), "LTAIsecretish", "signature errors drop the service's echo of the request")
	plain := errors.New("connection refused")
	require.Equal(t, plain, classify("Op", plain), "errors without a code pass unchanged (transient)")
}

func TestRetry(t *testing.T) {
	r := Retry{Base: time.Millisecond, Max: 4 * time.Millisecond, Timeout: time.Second}
	busy := sdkError("SystemBusy", 400, "busy")

	calls := 0
	require.NoError(t, r.Do(context.Background(), "Op", func(context.Context) error {
		if calls++; calls < 4 {
			return busy
		}
		return nil
	}))
	require.Equal(t, 4, calls, "transient errors are retried until the call passes")

	calls = 0
	err := r.Do(context.Background(), "Op", func(context.Context) error {
		calls++
		return sdkError("Forbidden.NoPermission", 403, "no")
	})
	require.True(t, providers.IsPermanent(err))
	require.Equal(t, 1, calls, "permanent errors are not retried")

	r.Timeout = 20 * time.Millisecond
	err = r.Do(context.Background(), "Op", func(context.Context) error { return busy })
	require.ErrorContains(t, err, "still failing after")
	require.Equal(t, "SystemBusy", Code(err))

	ctx, cancel := context.WithCancel(context.Background())
	r.Timeout = 0
	calls = 0
	err = r.Do(ctx, "Op", func(context.Context) error {
		if calls++; calls == 3 {
			cancel()
		}
		return busy
	})
	require.ErrorIs(t, err, context.Canceled)
	require.Equal(t, 3, calls)

	dl, cancel2 := context.WithTimeout(context.Background(), time.Millisecond)
	defer cancel2()
	err = Retry{Base: time.Hour}.Do(dl, "Op", func(context.Context) error { return busy })
	require.ErrorContains(t, err, "deadline too close", "no wait that would outlast the context")
}

func TestBackoffGrowsWithJitterUpToTheCap(t *testing.T) {
	for attempt := 1; attempt < 70; attempt++ {
		want := min(100*time.Millisecond<<min(attempt-1, 20), 5*time.Second)
		d := backoff(100*time.Millisecond, 5*time.Second, attempt)
		require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
		require.LessOrEqual(t, d, want, "attempt %d", attempt)
	}
}

func TestConfigCredentials(t *testing.T) {
	base := spec.AlibabaProvider{Name: "prod", Region: "cn-hangzhou", AccessKeyIDEnv: "T_AK_ID", AccessKeySecretEnv: "T_AK_SECRET"}

	t.Run("env variables give a static AccessKey", func(t *testing.T) {
		t.Setenv("T_AK_ID", "LTAIid")
		t.Setenv("T_AK_SECRET", "very-secret")
		cfg, err := Config("alb", base)
		require.NoError(t, err)
		c, err := cfg.Credential.GetCredential()
		require.NoError(t, err)
		require.Equal(t, "access_key", tea.StringValue(c.Type))
		require.Equal(t, "very-secret", tea.StringValue(c.AccessKeySecret))
		require.Nil(t, cfg.AccessKeySecret, "the secret is held by the credential only")
		require.NotContains(t, cfg.String(), "very-secret")
	})
	t.Run("a security token makes it STS", func(t *testing.T) {
		t.Setenv("T_AK_ID", "STS.id")
		t.Setenv("T_AK_SECRET", "very-secret")
		t.Setenv("T_TOKEN", "token")
		p := base
		p.SecurityTokenEnv = "T_TOKEN"
		cfg, err := Config("alb", p)
		require.NoError(t, err)
		c, err := cfg.Credential.GetCredential()
		require.NoError(t, err)
		require.Equal(t, "sts", tea.StringValue(c.Type))
	})
	t.Run("an unset variable is named, its field too", func(t *testing.T) {
		t.Setenv("T_AK_ID", "LTAIid")
		_, err := Config("slb", base)
		require.EqualError(t, err, "providers.slb[prod].accessKeySecretEnv: environment variable T_AK_SECRET is not set")
	})
	t.Run("only one of the pair is refused", func(t *testing.T) {
		p := base
		p.AccessKeySecretEnv = ""
		_, err := Config("alb", p)
		require.ErrorContains(t, err, "set both accessKeyIdEnv and accessKeySecretEnv")
	})
	t.Run("no variables use the default credential chain", func(t *testing.T) {
		t.Setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAIchain")
		t.Setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "chain-secret")
		p := base
		p.AccessKeyIDEnv, p.AccessKeySecretEnv = "", ""
		cfg, err := Config("alb", p)
		require.NoError(t, err)
		c, err := cfg.Credential.GetCredential()
		require.NoError(t, err)
		require.Equal(t, "LTAIchain", tea.StringValue(c.AccessKeyId))
	})
	t.Run("endpoint, protocol and signature version are passed on", func(t *testing.T) {
		t.Setenv("T_AK_ID", "LTAIid")
		t.Setenv("T_AK_SECRET", "very-secret")
		p := base
		p.Endpoint, p.Protocol, p.SignatureVersion = "127.0.0.1:9", "http", "v2"
		cfg, err := Config("alb", p)
		require.NoError(t, err)
		require.Equal(t, "127.0.0.1:9", tea.StringValue(cfg.Endpoint))
		require.Equal(t, "http", tea.StringValue(cfg.Protocol))
		require.Equal(t, "v2", tea.StringValue(cfg.SignatureAlgorithm))
		require.NotNil(t, cfg.HttpClient)
		p.SignatureVersion = "v4"
		_, err = Config("alb", p)
		require.ErrorContains(t, err, "providers.alb[prod].signatureVersion: must be v3 or v2")
	})
}
