package nacos

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
)

// tokenServer is a Nacos login and one authenticated endpoint: it issues
// numbered tokens with a tokenTtl of 100 s and counts the logins.
type tokenServer struct {
	mu     sync.Mutex
	logins int
	valid  map[string]bool
	seen   []string // the token of every authenticated request
}

func (s *tokenServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch r.URL.Path {
	case "/nacos/v1/auth/users/login":
		if r.FormValue("username") != "nacos" || r.FormValue("password") != "s3cret" {
			http.Error(w, "unknown user!", http.StatusForbidden)
			return
		}
		s.logins++
		token := fmt.Sprintf("token-%d", s.logins)
		s.valid[token] = true
		fmt.Fprintf(w, `{"accessToken":%q,"tokenTtl":100,"globalAdmin":true}`, token)
	case "/nacos/v1/ns/catalog/instances":
		token := r.URL.Query().Get("accessToken")
		s.seen = append(s.seen, token)
		if !s.valid[token] {
			http.Error(w, "token invalid!", http.StatusForbidden)
			return
		}
		fmt.Fprint(w, `{"count":0,"list":[]}`)
	default:
		http.NotFound(w, r)
	}
}

func (s *tokenServer) revokeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.valid)
}

func (s *tokenServer) counts() (int, []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.logins, append([]string(nil), s.seen...)
}

func TestOperatorRefreshesItsTokenBeforeTheTTLAndAfterARefusal(t *testing.T) {
	fake := &tokenServer{valid: map[string]bool{}}
	srv := httptest.NewServer(fake)
	t.Cleanup(srv.Close)
	now := time.Date(2025, 3, 1, 3, 0, 0, 0, time.UTC)
	o := &operator{servers: []string{strings.TrimPrefix(srv.URL, "http://")}, contextPath: "/nacos", api: "v1",
		user: "nacos", pass: "s3cret", hc: srv.Client(), now: func() time.Time { return now }}
	list := func() error {
		_, _, err := o.do(context.Background(), http.MethodGet, "/v1/ns/catalog/instances", url.Values{"serviceName": {"web"}})
		return err
	}

	require.NoError(t, list())
	now = now.Add(89 * time.Second) // within 90% of the 100 s tokenTtl: the token is kept
	require.NoError(t, list())
	logins, seen := fake.counts()
	require.Equal(t, 1, logins)
	require.Equal(t, []string{"token-1", "token-1"}, seen)

	now = now.Add(2 * time.Second) // past 90%: a fresh login before the server would refuse it
	require.NoError(t, list())
	logins, seen = fake.counts()
	require.Equal(t, 2, logins)
	require.Equal(t, "token-2", seen[len(seen)-1])

	fake.revokeAll() // e.g. the server restarted with a new token secret: one refusal, one fresh login
	require.NoError(t, list())
	logins, seen = fake.counts()
	require.Equal(t, 3, logins)
	require.Equal(t, []string{"token-1", "token-1", "token-2", "token-2", "token-3"}, seen)

	o.pass = "wrong" // a refusal that a fresh login cannot cure is permanent, and names no secret
	fake.revokeAll()
	err := list()
	require.Error(t, err)
	require.True(t, providers.IsPermanent(err), "%v", err)
	require.NotContains(t, err.Error(), "token-")
}
