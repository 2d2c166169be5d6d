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
	"github.com/tandemhq/tandem/spec"
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

// Only the server's own "does not exist" answer is an empty registry: a
// 404 from a proxy or a wrong context path, or a 5xx, fails the read, so
// that a registry that cannot be read never looks like one with no
// instance enabled.
func TestOperatorTakesOnlyTheServersNotFoundAnswerForNoInstances(t *testing.T) {
	ref := spec.NacosRef{Provider: "prod", Namespace: "public", Group: "DEFAULT_GROUP", Service: "web", Cluster: "DEFAULT"}
	for _, tc := range []struct {
		name, api string
		status    int
		body      string
		empty     bool // the answer means "no instances"
	}{
		{"nacos 3: service not found", "v3", 404, `{"code":30000,"message":"resource not found","data":"service DEFAULT_GROUP@@web is not found!"}`, true},
		{"nacos 3: cluster not found", "v3", 404, `{"code":30000,"message":"resource not found","data":"cluster DEFAULT is not found!"}`, true},
		{"a 404 that is not the server's", "v3", 404, "404 page not found", false},
		{"a 404 that is not the server's (v1)", "v1", 404, "<html>Not Found</html>", false},
		{"server error", "v3", 500, `{"code":30000,"message":"No message available"}`, false},
		{"server error (v1)", "v1", 503, "unavailable", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fixedAnswer(t, tc.api, tc.status, tc.body)
			list, err := o.list(context.Background(), ref)
			if tc.empty {
				require.NoError(t, err)
				require.Empty(t, list)
				return
			}
			require.Error(t, err)
			require.Nil(t, list)
		})
	}
}

func TestOperatorTakesOnlyTheServersNotFoundAnswerForAnUnknownInstance(t *testing.T) {
	ref := spec.NacosRef{Provider: "prod", Namespace: "public", Group: "DEFAULT_GROUP", Service: "web", Cluster: "DEFAULT"}
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		unknown bool
	}{
		{"nacos 2: no matched ip", 404, "caused: no matched ip found!;", true},
		{"nacos 2: no ips in the cluster", 404, "caused: no ips found for cluster DEFAULT in service DEFAULT_GROUP@@web;", true},
		{"r-nacos: unknown instance", 500, "error", true},
		{"a 404 that is not the server's", 404, "404 page not found", false},
		{"r-nacos failing otherwise", 500, "system error", false},
		{"bad gateway", 502, "error", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := fixedAnswer(t, "v1", tc.status, tc.body)
			_, found, err := o.detail(context.Background(), ref, providers.Addr{IP: "10.0.0.1", Port: 8080})
			require.False(t, found)
			if tc.unknown {
				require.NoError(t, err)
				return
			}
			require.Error(t, err)
		})
	}
}

// fixedAnswer is an operator client of a server that answers every
// request with status and body.
func fixedAnswer(t *testing.T, api string, status int, body string) *operator {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(status)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return &operator{servers: []string{strings.TrimPrefix(srv.URL, "http://")}, contextPath: "/nacos", api: api,
		hc: srv.Client(), now: time.Now}
}
