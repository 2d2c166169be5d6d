package gitsource

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
)

// MaxWebhookBody is the largest webhook payload accepted (GitHub caps its
// own deliveries at 25 MB, but a push event for a desired-state repo is a
// few KiB; the body is only read to check its signature).
const MaxWebhookBody = 1 << 20

// Signature headers, as documented by each forge:
//   - GitHub: X-Hub-Signature-256 = "sha256=" + hex(HMAC-SHA256(secret, body))
//     (docs.github.com, "Validating webhook deliveries")
//   - GitLab: X-Gitlab-Token = the secret token itself
//     (docs.gitlab.com, "Webhooks", secret token)
//   - Gitea: X-Gitea-Signature = hex(HMAC-SHA256(secret, body)); it also
//     sends the same MAC as X-Hub-Signature-256 (and X-Gogs-Signature,
//     X-Hub-Signature with SHA-1, which are not checked here), per
//     go-gitea/gitea services/webhook/deliver.go, addDefaultHeaders.
const (
	headerGitHub = "X-Hub-Signature-256"
	headerGitLab = "X-Gitlab-Token"
	headerGitea  = "X-Gitea-Signature"
)

// WebhookHandler serves POST /hooks/git. A delivery must carry at least one
// of the GitHub, GitLab or Gitea signature headers, and every one it
// carries must match the secret of git.webhook.secretEnv (compared in
// constant time); then a fetch is triggered and the answer is 202. A
// missing or wrong signature gets 401 and triggers nothing; a body over
// MaxWebhookBody gets 413. The payload itself is not trusted: it only says
// "look now", and the fetch decides what changed. Without git.webhook in
// the config every request gets 404.
func (s *Source) WebhookHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.webhook.Empty() {
			http.Error(w, "git webhook is not configured (git.webhook.secretEnv)", http.StatusNotFound)
			return
		}
		if r.Method != http.MethodPost {
			w.Header().Set("Allow", http.MethodPost)
			http.Error(w, "git webhook accepts POST only", http.StatusMethodNotAllowed)
			return
		}
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxWebhookBody))
		var tooBig *http.MaxBytesError
		switch {
		case errors.As(err, &tooBig):
			http.Error(w, "git webhook body is over 1 MiB", http.StatusRequestEntityTooLarge)
			return
		case err != nil:
			http.Error(w, "reading git webhook body failed", http.StatusBadRequest)
			return
		}
		if msg := checkSignatures(r.Header, body, []byte(s.webhook.Reveal())); msg != "" {
			s.log.Warn("git webhook refused", "reason", msg, "remote", r.RemoteAddr)
			http.Error(w, msg, http.StatusUnauthorized)
			return
		}
		s.Trigger()
		w.WriteHeader(http.StatusAccepted)
		_, _ = io.WriteString(w, "fetch triggered\n")
	})
}

// checkSignatures returns why the delivery is not authentic, or "".
func checkSignatures(h http.Header, body, secret []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	want := mac.Sum(nil)
	hexMAC := func(v string) bool {
		got, err := hex.DecodeString(v)
		return err == nil && hmac.Equal(got, want)
	}
	checks := []struct {
		header string
		valid  func(v string) bool
	}{
		{headerGitHub, func(v string) bool {
			hexSig, ok := strings.CutPrefix(v, "sha256=")
			return ok && hexMAC(hexSig)
		}},
		{headerGitLab, func(v string) bool {
			// Compare digests so that the time does not depend on the length either.
			a, b := sha256.Sum256([]byte(v)), sha256.Sum256(secret)
			return subtle.ConstantTimeCompare(a[:], b[:]) == 1
		}},
		{headerGitea, hexMAC},
	}
	present := 0
	for _, c := range checks {
		values := h.Values(c.header)
		if len(values) == 0 {
			continue
		}
		present++
		if len(values) > 1 || !c.valid(values[0]) {
			return c.header + " does not match the webhook secret"
		}
	}
	if present == 0 {
		return "no signature: send " + headerGitHub + ", " + headerGitLab + " or " + headerGitea
	}
	return ""
}
