package haproxytest_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/haproxytest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestStartRoutesFrontendToBackendAndAnswersOnBothSockets(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "hello from "+r.URL.Path)
	}))
	t.Cleanup(app.Close)
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{
		{Name: "web", Servers: []haproxytest.Server{{Name: "s1", Addr: app.Listener.Addr().String(), Weight: 100}}},
	}})

	// The server is routable only once its first health check passed.
	require.Eventually(t, func() bool {
		resp, err := http.Get(h.URL("web") + "/x")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode == http.StatusOK && string(b) == "hello from /x"
	}, 5*time.Second, 20*time.Millisecond)

	for _, addr := range []struct{ network, address string }{{"unix", h.Socket}, {"tcp", h.TCPSocket}} {
		c, err := net.Dial(addr.network, addr.address)
		require.NoError(t, err)
		_, err = c.Write([]byte("show servers state web\n"))
		require.NoError(t, err)
		out, err := io.ReadAll(c)
		require.NoError(t, err)
		c.Close()
		require.True(t, strings.Contains(string(out), " web 1 s1 "), "reply on %s: %s", addr.network, out)
	}
}
