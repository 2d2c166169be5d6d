package daemon_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/spec"
)

// The assembled daemon serves its API on the address it bound (port 0
// picks one), writes that address to api.addr in the state directory while
// it serves and removes it when it stops; a second daemon on the same
// state directory is refused.
func TestAssemblyServesOnTheBoundAddressAndWritesIt(t *testing.T) {
	r := repo{t: t, dir: t.TempDir()}
	r.git("init", "-q", "-b", "main")
	r.git("commit", "-q", "--allow-empty", "-m", "nothing yet")
	cfg := &spec.Config{Git: spec.GitConfig{URL: r.dir, Interval: spec.Duration(time.Hour)}, StateDir: t.TempDir(), Listen: "127.0.0.1:0"}
	cfg.Default()
	require.NoError(t, cfg.Validate().Err())

	a, err := daemon.Assemble(cfg, daemon.AssembleOptions{})
	require.NoError(t, err)
	defer a.Close()
	addr := a.Addr().String()
	require.NotEqual(t, "127.0.0.1:0", addr)

	_, err = daemon.Assemble(cfg, daemon.AssembleOptions{})
	require.Error(t, err, "a second daemon on the same state directory")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	addrFile := filepath.Join(cfg.StateDir, daemon.AddrFile)
	eventually(t, "api.addr written", func() bool {
		b, err := os.ReadFile(addrFile)
		return err == nil && strings.TrimSpace(string(b)) == addr
	})
	resp, err := http.Get("http://" + addr + "/healthz")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)

	cancel()
	require.NoError(t, <-done)
	_, err = os.Stat(addrFile)
	require.ErrorIs(t, err, os.ErrNotExist, "api.addr outlived the daemon")
	require.NoError(t, a.Close())
}
