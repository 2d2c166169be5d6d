// Package emutest starts the Alibaba OpenAPI emulator for tests and gives
// the provider configuration that points the official SDK at it.
package emutest

import (
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/spec"
)

// Test AccessKey of the emulators that Start runs, and the environment
// variables the provider configuration reads it from.
const (
	KeyID        = "LTAItandemtest"
	KeySecret    = "tandem-test-secret-0123456789"
	KeyIDEnv     = "TANDEM_TEST_ALIBABA_AK_ID"
	KeySecretEnv = "TANDEM_TEST_ALIBABA_AK_SECRET"
)

// Start serves an emulator on 127.0.0.1 until the test ends and returns it
// with a provider configuration (named name) that reaches it. opts.Keys is
// set to the test key, which Start also puts in the environment.
func Start(t testing.TB, name string, opts emulator.Options) (*emulator.Emulator, spec.AlibabaProvider) {
	t.Helper()
	opts.Keys = []emulator.Key{{ID: KeyID, Secret: KeySecret}}
	e := emulator.New(opts)
	srv := httptest.NewServer(e)
	t.Cleanup(srv.Close)
	t.Setenv(KeyIDEnv, KeyID)
	t.Setenv(KeySecretEnv, KeySecret)
	return e, spec.AlibabaProvider{
		Name:               name,
		Region:             "cn-hangzhou",
		Endpoint:           strings.TrimPrefix(srv.URL, "http://"),
		Protocol:           "http",
		AccessKeyIDEnv:     KeyIDEnv,
		AccessKeySecretEnv: KeySecretEnv,
		SignatureVersion:   "v3",
		ConnectTimeout:     spec.Duration(2 * time.Second),
		ReadTimeout:        spec.Duration(5 * time.Second),
		JobTimeout:         spec.Duration(30 * time.Second),
		RetryTimeout:       spec.Duration(30 * time.Second),
	}
}
