package alb_test

import (
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alb"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

// With signatureVersion v2 the AccessKey ID, the STS token, the nonce and
// the signature travel in the query string: none of them may reach an
// error that leaves the provider (status, events, logs).
func TestErrorsThatLeaveTheProviderCarryNoCredentials(t *testing.T) {
	const (
		id     = "LTAIredact0123"
		secret = "redact-secret+Qp4/Zx="
		token  = "sts-token+Vb8/Nc9="
	)
	t.Setenv("T_REDACT_ID", id)
	t.Setenv("T_REDACT_SECRET", secret)
	t.Setenv("T_REDACT_TOKEN", token)
	provider := func(t *testing.T, endpoint string) *alb.Provider {
		t.Helper()
		p, err := alb.New(spec.AlibabaProvider{Name: "prod-hz", Region: "cn-hangzhou", Endpoint: endpoint, Protocol: "http",
			SignatureVersion: "v2", AccessKeyIDEnv: "T_REDACT_ID", AccessKeySecretEnv: "T_REDACT_SECRET", SecurityTokenEnv: "T_REDACT_TOKEN",
			ConnectTimeout: spec.Duration(2 * time.Second), ReadTimeout: spec.Duration(5 * time.Second),
			RetryTimeout: spec.Duration(time.Millisecond)}, nil) // one attempt
		require.NoError(t, err)
		return p
	}
	binding := spec.Binding{ALB: "prod-hz", ServerGroup: "sgp-redact", Weight: 100}
	noCredentials := func(t *testing.T, err error) {
		t.Helper()
		require.Error(t, err)
		text := err.Error()
		for _, v := range []string{id, secret, token, url.QueryEscape(token), url.QueryEscape(url.QueryEscape(token))} {
			require.NotContains(t, text, v)
		}
		for _, param := range []string{"AccessKeyId", "SecurityToken", "Signature", "SignatureNonce"} {
			for _, sep := range []string{"=", "%3D", "%253D"} {
				if i := strings.Index(text, param+sep); i >= 0 {
					require.True(t, strings.HasPrefix(text[i+len(param+sep):], redact.Mask), "%s%s is not redacted in %s", param, sep, text)
				}
			}
		}
		var uerr *url.Error
		if errors.As(err, &uerr) {
			require.NotContains(t, uerr.URL, id, "the *url.Error in the chain is redacted too")
		}
	}

	t.Run("a network error names the signed URL", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		closed := ln.Addr().String()
		require.NoError(t, ln.Close())
		_, err = provider(t, closed).Backends(t.Context(), binding)
		noCredentials(t, err)
		require.ErrorContains(t, err, "AccessKeyId="+redact.Mask)
		require.ErrorContains(t, err, "connection refused")
		require.False(t, providers.IsPermanent(err), "still transient: %v", err)
	})

	t.Run("the emulator echoes its string to sign in a signature error", func(t *testing.T) {
		e := emulator.New(emulator.Options{Keys: []emulator.Key{{ID: id, Secret: "not-" + secret, Token: token}}})
		srv := httptest.NewServer(e)
		t.Cleanup(srv.Close)
		_, err := provider(t, strings.TrimPrefix(srv.URL, "http://")).Backends(t.Context(), binding)
		noCredentials(t, err)
		require.ErrorContains(t, err, "SignatureDoesNotMatch")
		var perm *providers.PermanentError
		require.ErrorAs(t, err, &perm)
		require.Equal(t, "InvalidCredentials", perm.Reason)
	})

	t.Run("an error message that names the credentials", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
			_ = json.NewEncoder(w).Encode(map[string]string{"RequestId": "r-1", "Code": "InternalError",
				"Message": "processing " + r.URL.RawQuery + " for key " + id + " failed"})
		}))
		t.Cleanup(srv.Close)
		_, err := provider(t, strings.TrimPrefix(srv.URL, "http://")).Backends(t.Context(), binding)
		noCredentials(t, err)
		require.ErrorContains(t, err, "InternalError (HTTP 500): processing ")
		require.ErrorContains(t, err, "for key "+redact.Mask+" failed")
	})
}
