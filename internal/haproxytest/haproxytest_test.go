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

// TestRoutesSendAHeaderToAnotherBackend: a preview route through HAProxy
// is a backend of its own, selected in the main frontend by an ACL on a
// header.
func TestRoutesSendAHeaderToAnotherBackend(t *testing.T) {
	app := func(name string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, name) }))
		t.Cleanup(srv.Close)
		return srv.Listener.Addr().String()
	}
	main, preview := app("main"), app("preview")
	h := haproxytest.Start(t, haproxytest.Config{Backends: []haproxytest.Backend{
		{Name: "web", Servers: []haproxytest.Server{{Name: "s1", Addr: main, Weight: 100}},
			Routes: []haproxytest.Route{{Header: "X-Preview", Value: "1", Backend: "web_preview"}}},
		{Name: "web_preview", Servers: []haproxytest.Server{{Name: "s1", Addr: preview, Weight: 100}}},
	}})
	get := func(header string) string {
		req, err := http.NewRequest(http.MethodGet, h.URL("web")+"/", nil)
		require.NoError(t, err)
		if header != "" {
			req.Header.Set("X-Preview", header)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return string(b)
	}
	// Servers are routable once their first health check passed.
	require.Eventually(t, func() bool { return get("1") == "preview" && get("") == "main" }, 5*time.Second, 20*time.Millisecond)
	require.Equal(t, "main", get("0"), "another value takes the default backend")
}
