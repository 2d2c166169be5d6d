package gitsource

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzWebhook: whatever the method, headers and body, a delivery triggers a
// fetch only when it carries a valid signature, and is answered with one of
// the documented codes.
func FuzzWebhook(f *testing.F) {
	const body = `{"ref":"refs/heads/main"}`
	f.Add("POST", "X-Hub-Signature-256", "sha256="+sign(body), body)
	f.Add("POST", "X-Gitlab-Token", hookSecret, body)
	f.Add("POST", "X-Gitea-Signature", sign(body), body)
	f.Add("POST", "X-Hub-Signature-256", "sha256=", "")
	f.Add("POST", "X-Gitlab-Token", "", "\xff\xfe")
	f.Add("GET", "X-Gitlab-Token", hookSecret, body)
	f.Add("POST", "X-Hub-Signature-256", "sha1="+sign(body), body)
	f.Add("POST", "Content-Length", "-1", strings.Repeat("x", 1<<10))
	s := webhookSource(f, &logBuffer{})
	h := s.WebhookHandler()
	f.Fuzz(func(t *testing.T, method, header, value, payload string) {
		if !validMethod(method) || !validHeader(header, value) {
			return // net/http would refuse such a request before any handler
		}
		req := httptest.NewRequest(method, "/hooks/git", strings.NewReader(payload))
		req.Header.Set(header, value)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		triggered := len(s.trigger) > 0
		if triggered {
			<-s.trigger
		}
		valid := method == http.MethodPost && authentic(header, value, payload)
		switch rec.Code {
		case http.StatusAccepted:
			if !valid || !triggered {
				t.Fatalf("202 for %s %s=%q (valid %t, triggered %t)", method, header, value, valid, triggered)
			}
		case http.StatusUnauthorized, http.StatusMethodNotAllowed, http.StatusRequestEntityTooLarge, http.StatusBadRequest:
			if triggered {
				t.Fatalf("%d but a fetch was triggered", rec.Code)
			}
		default:
			t.Fatalf("undocumented status %d", rec.Code)
		}
	})
}

func authentic(header, value, payload string) bool {
	switch http.CanonicalHeaderKey(header) {
	case "X-Hub-Signature-256": // hex digits in either case are the same MAC
		hexMAC, ok := strings.CutPrefix(value, "sha256=")
		return ok && strings.EqualFold(hexMAC, sign(payload))
	case "X-Gitlab-Token":
		return value == hookSecret
	case "X-Gitea-Signature":
		return strings.EqualFold(value, sign(payload))
	}
	return false
}

func validMethod(m string) bool {
	if m == "" {
		return false
	}
	for _, r := range m {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune("()<>@,;:\\\"/[]?={}", r) {
			return false
		}
	}
	return true
}

func validHeader(name, value string) bool {
	if !validMethod(name) { // header names are tokens too
		return false
	}
	for _, r := range value {
		if r == '\r' || r == '\n' || r == 0 {
			return false
		}
	}
	return true
}
