package deploy_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/spec"
)

const token = "s3cr3t-deploy-token-value"

// deploySystem is a scripted deploy system: the POST answer, then one answer
// per poll of /jobs/1 (the last one repeats).
type deploySystem struct {
	post  func(w http.ResponseWriter)
	polls []func(w http.ResponseWriter)

	mu       sync.Mutex
	posted   providers.DeployRequest
	auth     []string // Authorization of every request
	headers  http.Header
	polled   int
	pollAuth []string
}

func (s *deploySystem) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	switch {
	case r.Method == http.MethodPost && r.URL.Path == "/deploy":
		s.headers = r.Header.Clone()
		if err := json.NewDecoder(r.Body).Decode(&s.posted); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		s.post(w)
	case r.Method == http.MethodGet && r.URL.Path == "/jobs/1":
		s.pollAuth = append(s.pollAuth, r.Header.Get("Authorization"))
		s.polls[min(s.polled, len(s.polls)-1)](w)
		s.polled++
	default:
		http.NotFound(w, r)
	}
}

func reply(code int, body string, header ...string) func(w http.ResponseWriter) {
	return func(w http.ResponseWriter) {
		for i := 0; i+1 < len(header); i += 2 {
			w.Header().Set(header[i], header[i+1])
		}
		w.WriteHeader(code)
		_, _ = io.WriteString(w, body)
	}
}

var (
	accepted  = reply(http.StatusAccepted, `{"status":"running"}`, "Location", "/jobs/1")
	running   = reply(http.StatusOK, `{"status":"running","output":"step 1\n"}`)
	succeeded = reply(http.StatusOK, `{"status":"succeeded","output":"step 1\nstep 2\ndone\n"}`)
)

func httpDeployer(t *testing.T, url string, timeout time.Duration, log *slog.Logger) providers.Deployer {
	t.Helper()
	t.Setenv("TEST_DEPLOY_TOKEN", token)
	d, err := deploy.New(spec.Deploy{
		HTTP: &spec.HTTPDeploy{
			URL:          url,
			Headers:      map[string]string{"X-Team": "ops"},
			TokenEnv:     "TEST_DEPLOY_TOKEN",
			PollInterval: spec.Duration(10 * time.Millisecond),
		},
		Timeout: spec.Duration(timeout),
	}, deploy.Policy{}, log)
	require.NoError(t, err)
	return d
}

func serve(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestHTTPPostsTheRequestThenPollsUntilSucceeded(t *testing.T) {
	sys := &deploySystem{post: accepted, polls: []func(http.ResponseWriter){running, running, succeeded}}
	url := serve(t, sys)
	res, err := httpDeployer(t, url+"/deploy", 10*time.Second, nil).Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Equal(t, "step 1\nstep 2\ndone\n", res.Output)

	sys.mu.Lock()
	defer sys.mu.Unlock()
	require.Equal(t, request, sys.posted)
	require.Equal(t, "ops", sys.headers.Get("X-Team"))
	require.Equal(t, "application/json", sys.headers.Get("Content-Type"))
	require.Equal(t, 3, sys.polled)
	for _, a := range sys.auth {
		require.Equal(t, "Bearer "+token, a)
	}
}

func TestHTTPProtocolVariantsThatSucceed(t *testing.T) {
	for _, tc := range []struct {
		name string
		post func(http.ResponseWriter)
	}{
		{"status URL in the body's statusUrl", reply(http.StatusAccepted, `{"status":"running","statusUrl":"/jobs/1"}`)},
		{"absolute status URL in Location", nil},
		{"terminal answer without a status URL finishes at once", reply(http.StatusOK, `{"status":"succeeded","output":"step 1\nstep 2\ndone\n"}`)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := &deploySystem{post: tc.post, polls: []func(http.ResponseWriter){running, succeeded}}
			url := serve(t, sys)
			if sys.post == nil {
				sys.post = reply(http.StatusCreated, "", "Location", url+"/jobs/1")
			}
			res, err := httpDeployer(t, url+"/deploy", 10*time.Second, nil).Deploy(t.Context(), request)
			require.NoError(t, err)
			require.Equal(t, "step 1\nstep 2\ndone\n", res.Output)
		})
	}
}

func TestHTTPRetriesAPollThatFailsTransiently(t *testing.T) {
	sys := &deploySystem{post: accepted, polls: []func(http.ResponseWriter){
		running, reply(http.StatusBadGateway, "upstream down"), reply(http.StatusTooManyRequests, ""), succeeded,
	}}
	_, err := httpDeployer(t, serve(t, sys)+"/deploy", 10*time.Second, nil).Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Equal(t, 4, sys.polled)
}

func TestHTTPFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		post       func(http.ResponseWriter)
		polls      []func(http.ResponseWriter)
		timeout    time.Duration
		reason     string // "" = transient
		errorParts []string
	}{
		{
			name:       "reported failure is permanent DeployFailed with the message and output",
			post:       accepted,
			polls:      []func(http.ResponseWriter){running, reply(http.StatusOK, `{"status":"failed","message":"health check failed on b2","output":"step 1\nrollback\n"}`)},
			reason:     "DeployFailed",
			errorParts: []string{"deploying user-service group B to version 2.4.2", "health check failed on b2", "step 1 | rollback"},
		},
		{
			name:       "rejected request is permanent DeployRejected with the answer",
			post:       reply(http.StatusUnprocessableEntity, "unknown service user-service"),
			reason:     "DeployRejected",
			errorParts: []string{"POST http://", "422 Unprocessable Entity: unknown service user-service"},
		},
		{
			name:       "unavailable deploy system is transient",
			post:       reply(http.StatusServiceUnavailable, "maintenance"),
			errorParts: []string{"503 Service Unavailable: maintenance"},
		},
		{
			name:       "status URL that disappears is permanent",
			post:       accepted,
			polls:      []func(http.ResponseWriter){reply(http.StatusNotFound, "no such job")},
			reason:     "DeployRejected",
			errorParts: []string{"GET http://", "/jobs/1: 404 Not Found: no such job"},
		},
		{
			name:       "answer without a status URL is a permanent protocol error",
			post:       reply(http.StatusAccepted, `{"status":"running"}`),
			reason:     "DeployProtocol",
			errorParts: []string{"names no status URL"},
		},
		{
			name:       "unknown status is a permanent protocol error",
			post:       accepted,
			polls:      []func(http.ResponseWriter){reply(http.StatusOK, `{"status":"queued"}`)},
			reason:     "DeployProtocol",
			errorParts: []string{`unknown deploy status "queued"`},
		},
		{
			name:       "non-JSON answer is a permanent protocol error",
			post:       reply(http.StatusAccepted, "<html>ok</html>"),
			reason:     "DeployProtocol",
			errorParts: []string{"not a JSON status"},
		},
		{
			name:       "deploy outliving its timeout is permanent DeployTimeout",
			post:       accepted,
			polls:      []func(http.ResponseWriter){running},
			timeout:    200 * time.Millisecond,
			reason:     "DeployTimeout",
			errorParts: []string{"GET http://", "deploy timeout passed (deploy.timeout 200ms)"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sys := &deploySystem{post: tc.post, polls: tc.polls}
			var logs bytes.Buffer
			timeout := tc.timeout
			if timeout == 0 {
				timeout = 10 * time.Second
			}
			d := httpDeployer(t, serve(t, sys)+"/deploy", timeout, slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
			_, err := d.Deploy(t.Context(), request)
			require.Error(t, err)
			var perm *providers.PermanentError
			if tc.reason == "" {
				require.False(t, providers.IsPermanent(err), "%v", err)
			} else {
				require.ErrorAs(t, err, &perm)
				require.Equal(t, tc.reason, perm.Reason)
			}
			for _, part := range tc.errorParts {
				require.Contains(t, err.Error(), part)
			}
			require.NotContains(t, err.Error(), token)
			require.NotContains(t, fmt.Sprintf("%+v %#v", err, err), token)
			require.NotContains(t, logs.String(), token)
		})
	}
}

// The reconciler bounds the step by the same deploy.timeout, set first:
// its deadline passes first and must read as the deploy timeout too.
func TestHTTPTimeoutIsReportedWhenTheCallersEqualDeadlinePassesFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	sys := &deploySystem{post: accepted, polls: []func(http.ResponseWriter){running}}
	d := httpDeployer(t, serve(t, sys)+"/deploy", 200*time.Millisecond, nil)
	_, err := d.Deploy(ctx, request)
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "DeployTimeout", perm.Reason)
	require.Contains(t, err.Error(), "(deploy.timeout 200ms)")
}

func TestHTTPSendsTheTokenOnlyToTheDeploySystemsOwnHost(t *testing.T) {
	other := &deploySystem{polls: []func(http.ResponseWriter){succeeded}}
	otherURL := serve(t, other)
	sys := &deploySystem{post: reply(http.StatusAccepted, "", "Location", otherURL+"/jobs/1")}
	_, err := httpDeployer(t, serve(t, sys)+"/deploy", 10*time.Second, nil).Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Equal(t, []string{"Bearer " + token}, sys.auth)
	require.Equal(t, []string{""}, other.pollAuth)
}

func TestHTTPNewNeedsTheTokenVariable(t *testing.T) {
	_, err := deploy.New(spec.Deploy{HTTP: &spec.HTTPDeploy{URL: "http://127.0.0.1:1/deploy", TokenEnv: "TANDEM_TEST_UNSET_TOKEN"}}, deploy.Policy{}, nil)
	require.EqualError(t, err, "deploy.http.tokenEnv: environment variable TANDEM_TEST_UNSET_TOKEN is not set")
}
