package emulator_test

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/providers/nacos/emulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMainRejectsBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"auth user without password env is refused", []string{"--auth-user", "nacos"}, "set both"},
		{"unset password env is refused", []string{"--auth-user", "nacos", "--auth-password-env", "TANDEM_TEST_UNSET_VAR"}, "TANDEM_TEST_UNSET_VAR"},
		{"stray argument is refused", []string{"extra"}, "unexpected arguments"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			require.Equal(t, 2, emulator.Main(context.Background(), tc.args, &out, &errOut))
			require.Contains(t, errOut.String(), tc.want)
		})
	}
}

func TestMainBadModeFailsToStart(t *testing.T) {
	var out, errOut bytes.Buffer
	require.Equal(t, 1, emulator.Main(context.Background(), []string{"--listen", "127.0.0.1:0", "--mode", "v2"}, &out, &errOut))
	require.Contains(t, errOut.String(), "mode must be")
}

func TestMainServesUntilCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var out, errOut testkit.Buffer // written by Main's goroutine, read by the test
	done := make(chan int)
	go func() { done <- emulator.Main(ctx, []string{"--listen", "127.0.0.1:0", "--mode", "v3"}, &out, &errOut) }()
	require.Eventually(t, func() bool { return strings.Contains(out.String(), "listening") }, 10*time.Second, 10*time.Millisecond)
	cancel()
	require.Equal(t, 0, <-done)
	require.Contains(t, out.String(), "nacos emulator (v3) listening: http://127.0.0.1:")
}
