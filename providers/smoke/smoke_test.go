package smoke_test

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/providers/smoke"
	"github.com/tandemhq/tandem/spec"
)

// app answers like a release under test: /users/1 with JSON, /broken
// with 500, /slow never in time, /moved with a redirect; it records the
// POST it was sent.
func app(t *testing.T) (spec.Instance, *http.Request, *string) {
	t.Helper()
	var seen http.Request
	var body string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/users/1":
			if r.Method == http.MethodPost {
				b, _ := io.ReadAll(r.Body)
				seen, body = *r.Clone(r.Context()), string(b)
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, `{"id": 1, "name": "ada"}`)
		case "/broken":
			http.Error(w, "NullPointerException at UserController.java:42 "+strings.Repeat("x", 4000), http.StatusInternalServerError)
		case "/slow":
			<-r.Context().Done()
		case "/moved":
			http.Redirect(w, r, "http://169.254.169.254/", http.StatusFound)
		}
	}))
	t.Cleanup(srv.Close)
	host, port, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	p, _ := strconv.Atoi(port)
	return spec.Instance{IP: host, Port: p}, &seen, &body
}

// service parses a service whose gates.smoke is gates (YAML under smoke:).
func service(t *testing.T, gates string) *spec.Service {
	t.Helper()
	doc := `service: user-service
active: A
version: "1.0.0"
groups:
  A: {instances: [{ip: 10.0.1.11, port: 8080}]}
  B: {instances: [{ip: 10.0.2.11, port: 8080}]}
registry: {nacos: {provider: prod}}
deploy: {exec: [./deploy.sh]}
health: {http: {path: /healthz}, version: {http: /version}}
gates:
  smoke:
` + gates
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(doc)}}, "services", nil)
	require.NoError(t, err)
	return set.Services[0]
}

func request(ins ...spec.Instance) providers.SmokeRequest {
	return providers.SmokeRequest{Service: "user-service", Group: spec.GroupB, Version: "2.0.0", Instances: ins}
}

func TestHTTPChecksJudgeStatusAndBodyOnEveryInstance(t *testing.T) {
	in1, seen, body := app(t)
	in2, _, _ := app(t)
	svc := service(t, `    http:
      - name: user
        method: POST
        path: /users/1
        headers: {X-Smoke: "yes"}
        body: '{"q": 1}'
        expect: {status: [200], bodyContains: '"id": 1', bodyMatches: '"name":\s*"ada"'}
      - {name: wrong-name, path: /users/1, expect: {bodyMatches: 'grace'}}
      - {name: broken, path: /broken}
`)
	res, err := smoke.New(nil, deploy.Policy{}, nil).Smoke(t.Context(), svc, request(in1, in2))
	require.NoError(t, err)
	require.Len(t, res, 6, "every check on every instance")

	require.Equal(t, providers.SmokeResult{Check: "user", Instance: in1.Addr(), Passed: true, Status: 200, Body: `{"id": 1, "name": "ada"}`}, res[0])
	require.Equal(t, in2.Addr(), res[1].Instance)
	require.True(t, res[1].Passed)
	require.Equal(t, http.MethodPost, seen.Method)
	require.Equal(t, "yes", seen.Header.Get("X-Smoke"))
	require.Equal(t, `{"q": 1}`, *body)

	require.False(t, res[2].Passed)
	require.Equal(t, "GET http://"+in1.Addr()+"/users/1: the body does not match /grace/ (want status 2xx, body matching /grace/)", res[2].Error)

	broken := res[4]
	require.False(t, broken.Passed)
	require.Equal(t, 500, broken.Status)
	require.Equal(t, "GET http://"+in1.Addr()+"/broken: status 500 (want status 2xx)", broken.Error)
	require.True(t, strings.HasPrefix(broken.Body, "NullPointerException at UserController.java:42"), "the answer is kept for the operator")
	require.LessOrEqual(t, len(broken.Body), providers.MaxSmokeExcerpt, "bounded")
}

func TestAnUnansweredRequestARedirectAndARefusedAddressFail(t *testing.T) {
	in, _, _ := app(t)
	svc := service(t, `    http:
      - {name: slow, path: /slow, timeout: 50ms}
      - {name: moved, path: /moved}
`)
	res, err := smoke.New(nil, deploy.Policy{}, nil).Smoke(t.Context(), svc, request(in))
	require.NoError(t, err)
	require.Equal(t, "GET http://"+in.Addr()+"/slow: no answer within 50ms", res[0].Error)
	require.False(t, res[1].Passed, "a redirect is an answer of its own, never followed")
	require.Equal(t, 302, res[1].Status)

	// policy.network.probe applies as to the health probes.
	refused, err := smoke.New(spec.NewAllowlist("policy.network.probe", "10.0.0.0/8"), deploy.Policy{}, nil).Smoke(t.Context(), svc, request(in))
	require.NoError(t, err)
	require.False(t, refused[0].Passed)
	require.Contains(t, refused[0].Error, "refused by policy: 127.0.0.1 is not allowed by policy.network.probe")
}

func TestTheExecHookSeesTheTargetGroupAndObeysTheHookPolicy(t *testing.T) {
	t.Setenv("T_SECRET", "daemon-secret-Qw3")
	t.Setenv("SMOKE_REGION", "eu-central")
	in, _, _ := app(t)
	svc := service(t, `    exec: {command: [sh, -c, 'env; test "$TANDEM_VERSION" = 2.0.0']}
`)
	pol := deploy.Policy{CommandAllowed: func(c string) bool { return c == "sh" }, EnvAllowed: func(n string) bool { return n == "PATH" || n == "SMOKE_REGION" }}
	res, err := smoke.New(nil, pol, nil).Smoke(t.Context(), svc, request(in, spec.Instance{IP: "10.0.2.12", Port: 8080}))
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.True(t, res[0].Passed, res[0].Error)
	require.Equal(t, "exec", res[0].Check)
	for _, want := range []string{"TANDEM_INSTANCES=" + in.Addr() + ",10.0.2.12:8080", "TANDEM_SERVICE=user-service", "TANDEM_GROUP=B", "TANDEM_VERSION=2.0.0", "SMOKE_REGION=eu-central"} {
		require.Contains(t, res[0].Body, want)
	}
	require.NotContains(t, res[0].Body, "daemon-secret-Qw3", "only what policy.hooks.env allows")

	// A hook that fails is a failed check with its last words.
	failing := service(t, `    exec: {command: [sh, -c, 'echo "orders API answered 503"; exit 3']}
`)
	res, err = smoke.New(nil, pol, nil).Smoke(t.Context(), failing, request(in))
	require.NoError(t, err)
	require.False(t, res[0].Passed)
	require.Equal(t, "smoke tests of user-service group B at 2.0.0: sh: exit status 3: orders API answered 503", res[0].Error)

	// A command the policy does not list never runs: the smoke cannot run.
	_, err = smoke.New(nil, deploy.Policy{CommandAllowed: func(string) bool { return false }}, nil).Smoke(t.Context(), svc, request(in))
	require.EqualError(t, err, `gates.smoke.exec.command[0]: "sh" is not one of the commands policy.hooks.commands of the daemon config allows`)
	var perm *providers.PermanentError
	require.True(t, errors.As(err, &perm), "retrying cannot help")
}

func TestExcerptsAreBoundedValidUTF8(t *testing.T) {
	long := strings.Repeat("é", 1000)
	head := smoke.Excerpt([]byte(long), false)
	require.LessOrEqual(t, len(head), providers.MaxSmokeExcerpt)
	require.True(t, strings.HasPrefix(head, "éé") && strings.HasSuffix(head, "é…"), head)
	tail := smoke.Excerpt([]byte(long+"end"), true)
	require.LessOrEqual(t, len(tail), providers.MaxSmokeExcerpt)
	require.True(t, strings.HasPrefix(tail, "…é") && strings.HasSuffix(tail, "end"), tail)
	require.Equal(t, "short", smoke.Excerpt([]byte("short"), false))
}
