package main

import (
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestStatusSendsTheTokenTheFlagNames: tandem status sends the variable
// --token-env names (TANDEM_API_TOKEN by default) as a bearer token.
func TestStatusSendsTheTokenTheFlagNames(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = append(got, r.Header.Get("Authorization"))
		mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer read-tok-123" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = w.Write([]byte(`{"error": "a token is required to read"}`))
			return
		}
		_, _ = w.Write([]byte(`{"services": []}`))
	}))
	defer srv.Close()

	t.Setenv("TANDEM_API_TOKEN", "")
	code, _, stderr := tandem(t, "status", "--server", srv.URL)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "401 Unauthorized: a token is required to read")

	t.Setenv("TANDEM_API_TOKEN", "read-tok-123")
	code, stdout, _ := tandem(t, "status", "--server", srv.URL)
	require.Equal(t, 0, code)
	require.Contains(t, stdout, "No services.")

	t.Setenv("MY_READ_TOKEN", "read-tok-123")
	t.Setenv("TANDEM_API_TOKEN", "other")
	code, _, _ = tandem(t, "status", "--server", srv.URL, "--token-env", "MY_READ_TOKEN")
	require.Equal(t, 0, code)
	mu.Lock()
	defer mu.Unlock()
	require.Equal(t, []string{"", "Bearer read-tok-123", "Bearer read-tok-123"}, got)
}
