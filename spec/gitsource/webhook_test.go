package gitsource

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

const hookSecret = "hook-secret-42"

func sign(body string) string {
	mac := hmac.New(sha256.New, []byte(hookSecret))
	mac.Write([]byte(body))
	return hex.EncodeToString(mac.Sum(nil))
}

// webhookSource is a source with the webhook configured; it is not run, so
// the only effect a delivery can have is a pending trigger.
func webhookSource(t testing.TB, logs *logBuffer) *Source {
	t.Helper()
	t.Setenv("T_HOOK_SECRET", hookSecret)
	f := newFixture(t)
	cfg := gitConfig("file://" + f.bare)
	cfg.Webhook = &spec.GitWebhook{SecretEnv: "T_HOOK_SECRET"}
	s, err := New(cfg, nil, t.TempDir(), logs.logger())
	require.NoError(t, err)
	return s
}

func TestWebhookVerifiesSignaturesBeforeTriggering(t *testing.T) {
	const body = `{"ref":"refs/heads/main"}`
	for _, tc := range []struct {
		name    string
		method  string
		headers map[string]string
		body    string
		code    int
	}{
		{name: "a valid GitHub signature triggers", headers: map[string]string{"X-Hub-Signature-256": "sha256=" + sign(body)}, code: http.StatusAccepted},
		{name: "a valid GitLab token triggers", headers: map[string]string{"X-Gitlab-Token": hookSecret}, code: http.StatusAccepted},
		{name: "a valid Gitea signature triggers", headers: map[string]string{"X-Gitea-Signature": sign(body)}, code: http.StatusAccepted},
		{name: "Gitea's pair of valid headers triggers", headers: map[string]string{"X-Gitea-Signature": sign(body), "X-Hub-Signature-256": "sha256=" + sign(body)}, code: http.StatusAccepted},
		{name: "no signature is refused", code: http.StatusUnauthorized},
		{name: "a GitHub signature of another body is refused", headers: map[string]string{"X-Hub-Signature-256": "sha256=" + sign(body+" ")}, code: http.StatusUnauthorized},
		{name: "a GitHub signature without its prefix is refused", headers: map[string]string{"X-Hub-Signature-256": sign(body)}, code: http.StatusUnauthorized},
		{name: "a GitHub signature that is not hex is refused", headers: map[string]string{"X-Hub-Signature-256": "sha256=zz"}, code: http.StatusUnauthorized},
		{name: "a wrong GitLab token is refused", headers: map[string]string{"X-Gitlab-Token": hookSecret + "x"}, code: http.StatusUnauthorized},
		{name: "an empty GitLab token is refused", headers: map[string]string{"X-Gitlab-Token": ""}, code: http.StatusUnauthorized},
		{name: "a wrong Gitea signature is refused", headers: map[string]string{"X-Gitea-Signature": sign("other")}, code: http.StatusUnauthorized},
		{name: "one wrong header among valid ones is refused", headers: map[string]string{"X-Gitea-Signature": sign("other"), "X-Hub-Signature-256": "sha256=" + sign(body)}, code: http.StatusUnauthorized},
		{name: "GET is not allowed", method: http.MethodGet, headers: map[string]string{"X-Gitlab-Token": hookSecret}, code: http.StatusMethodNotAllowed},
		{name: "an oversized body is refused", headers: map[string]string{"X-Gitlab-Token": hookSecret}, body: strings.Repeat("x", MaxWebhookBody+1), code: http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs logBuffer
			s := webhookSource(t, &logs)
			payload := body
			if tc.body != "" {
				payload = tc.body
			}
			req := httptest.NewRequest(tc.method, "/hooks/git", strings.NewReader(payload))
			if tc.method == "" {
				req.Method = http.MethodPost
			}
			for k, v := range tc.headers {
				req.Header.Set(k, v)
			}
			rec := httptest.NewRecorder()
			s.WebhookHandler().ServeHTTP(rec, req)
			require.Equal(t, tc.code, rec.Code, rec.Body.String())
			require.Equal(t, tc.code == http.StatusAccepted, len(s.trigger) == 1, "a fetch is triggered only by an authentic delivery")
			require.NotContains(t, rec.Body.String()+logs.String(), hookSecret)
			require.NotContains(t, logs.String(), sign(body))
		})
	}
}

func TestWebhookWithoutConfigurationIsNotFound(t *testing.T) {
	f := newFixture(t)
	s, err := New(gitConfig("file://"+f.bare), nil, t.TempDir(), nil)
	require.NoError(t, err)
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/hooks/git", strings.NewReader("{}"))
	req.Header.Set("X-Gitlab-Token", "")
	s.WebhookHandler().ServeHTTP(rec, req)
	require.Equal(t, http.StatusNotFound, rec.Code)
	require.Empty(t, s.trigger)
}

func TestWebhookSecretMustBeInTheEnvironment(t *testing.T) {
	f := newFixture(t)
	cfg := gitConfig("file://" + f.bare)
	cfg.Webhook = &spec.GitWebhook{SecretEnv: "T_HOOK_SECRET_UNSET"}
	_, err := New(cfg, nil, t.TempDir(), nil)
	require.ErrorContains(t, err, "git.webhook.secretEnv: environment variable T_HOOK_SECRET_UNSET is not set")
}

// TestWebhookDeliveryFetchesTheNewHead pushes to a repository served over
// HTTP, then delivers a signed push event to the handler on a real server;
// with an hour-long poll interval only the webhook can bring the commit.
func TestWebhookDeliveryFetchesTheNewHead(t *testing.T) {
	t.Setenv("T_HOOK_SECRET", hookSecret)
	f := newFixture(t)
	remote := serveHTTP(t, f.root, "", "")
	cfg := gitConfig(remote.url())
	cfg.Webhook = &spec.GitWebhook{SecretEnv: "T_HOOK_SECRET"}
	s, err := New(cfg, nil, t.TempDir(), nil)
	require.NoError(t, err)
	hooks := httptest.NewServer(s.WebhookHandler())
	t.Cleanup(hooks.Close)
	start(t, s)
	waitFor(t, s, "the first good revision", goodIs(f.head()))

	next := f.commit("release user 1.1.0", map[string]string{"services/user.yaml": service("user", "B", "1.1.0", 1)})
	body := `{"ref":"refs/heads/main","after":"` + next + `"}`
	req, err := http.NewRequest(http.MethodPost, hooks.URL, strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("X-GitHub-Event", "push")
	req.Header.Set("X-Hub-Signature-256", "sha256="+sign(body))
	resp, err := hooks.Client().Do(req)
	require.NoError(t, err)
	_, _ = io.Copy(io.Discard, resp.Body)
	require.NoError(t, resp.Body.Close())
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	st := waitFor(t, s, "the pushed commit", goodIs(next))
	require.Equal(t, "1.1.0/B", versionOf(t, st.Good, "user"))
}
