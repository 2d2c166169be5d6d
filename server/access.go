package server

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"html/template"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Who may read, from where, and how much: the read token with the
// dashboard's login, the Host allowlist and the stream limit. The policy is
// written out in docs/security.md.

// DefaultMaxStreams bounds the event streams open at once when
// Options.MaxStreams is 0.
const DefaultMaxStreams = 32

// sessionCookie is the dashboard's login: "<expiry unix seconds>.<hex
// HMAC-SHA256 of the expiry>", keyed by a hash of the read token. It holds
// no token, survives a restart, expires, and dies with a changed token.
const (
	sessionCookie = "tandem_session"
	sessionTTL    = 12 * time.Hour
)

// tokens holds the hashes of the tokens that grant reading (the read
// token and the write token) and the session key.
type tokens struct {
	read, write [sha256.Size]byte
	hasRead     bool
	hasWrite    bool
	sessionKey  []byte
}

func newTokens(o Options) *tokens {
	t := &tokens{hasRead: !o.ReadToken.Empty(), hasWrite: !o.Token.Empty()}
	if t.hasRead {
		t.read = sha256.Sum256([]byte(o.ReadToken.Reveal()))
		k := sha256.Sum256([]byte("tandem dashboard session\x00" + o.ReadToken.Reveal()))
		t.sessionKey = k[:]
	}
	if t.hasWrite {
		t.write = sha256.Sum256([]byte(o.Token.Reveal()))
	}
	return t
}

// equal compares a hashed candidate with a token hash in constant time.
func equal(got, want [sha256.Size]byte) bool {
	return subtle.ConstantTimeCompare(got[:], want[:]) == 1
}

// grantsRead reports whether token is the read or the write token. Both
// comparisons always run.
func (t *tokens) grantsRead(token string) bool {
	got := sha256.Sum256([]byte(token))
	r := t.hasRead && equal(got, t.read)
	w := t.hasWrite && equal(got, t.write)
	return r || w
}

func (t *tokens) session(expiry time.Time) string {
	exp := strconv.FormatInt(expiry.Unix(), 10)
	mac := hmac.New(sha256.New, t.sessionKey)
	mac.Write([]byte(exp))
	return exp + "." + hex.EncodeToString(mac.Sum(nil))
}

func (t *tokens) validSession(v string, now time.Time) bool {
	exp, _, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	sec, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || !now.Before(time.Unix(sec, 0)) {
		return false
	}
	want := t.session(time.Unix(sec, 0))
	return hmac.Equal([]byte(v), []byte(want))
}

// canRead reports whether r may read: no read token is configured, or r
// carries one (credentialed).
func (s *Server) canRead(r *http.Request) bool {
	return !s.tokens.hasRead || s.credentialed(r)
}

// credentialed reports whether r carries the read or write token as a
// bearer token, or a valid session.
func (s *Server) credentialed(r *http.Request) bool {
	if token, ok := bearer(r); ok {
		return s.tokens.grantsRead(token)
	}
	if !s.tokens.hasRead {
		return false // no sessions without a read token
	}
	c, err := r.Cookie(sessionCookie)
	return err == nil && s.tokens.validSession(c.Value, time.Now())
}

// readable guards a read endpoint with allowed (canRead, or credentialed
// for /metrics with api.metricsRequireToken): 401 when it refuses.
func (s *Server) readable(h http.Handler, allowed func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !allowed(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="tandem"`)
			writeError(w, http.StatusUnauthorized, errors.New("a token is required to read (Authorization: Bearer <the token api.readTokenEnv or api.tokenEnv names>)"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// dashboardGate serves the dashboard to readers and the login form to
// anyone else who asks for the page (its assets get 401).
func (s *Server) dashboardGate(dash http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case s.canRead(r):
			dash.ServeHTTP(w, r)
		case r.URL.Path == "/":
			s.loginPage(w, http.StatusUnauthorized, "")
		default:
			writeText(w, http.StatusUnauthorized, "log in first")
		}
	})
}

// loginContentSecurityPolicy: the login form and the signed links' pages
// (writePage) have no script and no style, and post only here.
const loginContentSecurityPolicy = "default-src 'none'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"

var loginTemplate = template.Must(template.New("login").Parse(`<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Tandem: log in</title></head>
<body>
<h1>Tandem</h1>
<form method="post" action="login">
<p><label for="token">Token (api.readTokenEnv or api.tokenEnv)</label></p>
<p><input id="token" name="token" type="password" autocomplete="current-password" required autofocus></p>
{{with .}}<p id="login-error" role="alert">{{.}}</p>{{end}}
<p><button type="submit">Log in</button></p>
</form>
</body>
</html>
`))

func (s *Server) loginPage(w http.ResponseWriter, code int, msg string) {
	writePage(w, code, loginTemplate, msg)
}

// writePage answers with a page of its own (the login form, a signed
// link's page): no script, not cached, sent with no referrer.
func writePage(w http.ResponseWriter, code int, t *template.Template, data any) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", loginContentSecurityPolicy)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = t.Execute(w, data)
}

// login serves POST /login (a form with the token): a right token gets
// the session cookie and a redirect to the dashboard.
func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		s.loginPage(w, http.StatusBadRequest, "The form could not be read.")
		return
	}
	if !s.tokens.grantsRead(r.PostForm.Get("token")) {
		s.log.Warn("dashboard login refused", "remote", r.RemoteAddr)
		s.loginPage(w, http.StatusUnauthorized, "Wrong token.")
		return
	}
	expiry := time.Now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: s.tokens.session(expiry), Path: "/",
		Expires: expiry, MaxAge: int(sessionTTL / time.Second), HttpOnly: true, Secure: r.TLS != nil, SameSite: http.SameSiteStrictMode})
	s.log.Info("dashboard login", "remote", r.RemoteAddr)
	http.Redirect(w, r, "./", http.StatusSeeOther)
}

// hostAllowed reports whether a Host header may reach the API and the
// dashboard. An IP address is always allowed (a page of another site
// cannot have it as its origin, so DNS rebinding cannot use it), and so is
// localhost; other names only when listed (or when the list is "*").
func (s *Server) hostAllowed(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.ToLower(strings.Trim(host, "[]")), ".")
	if host == "" {
		return false
	}
	if net.ParseIP(host) != nil || host == "localhost" {
		return true
	}
	for _, a := range s.opts.AllowedHosts {
		if a == "*" || strings.EqualFold(strings.Trim(a, "[]"), host) {
			return true
		}
	}
	return false
}

// AllowedHosts is api.allowedHosts plus the host of the listen address
// when that is a name (listen: tandem.internal:8080 serves that name).
func AllowedHosts(listen string, configured []string) []string {
	out := slices.Clone(configured)
	host, _, err := net.SplitHostPort(listen)
	if err == nil && host != "" && net.ParseIP(host) == nil && !slices.Contains(out, "*") {
		out = append(out, host)
	}
	return out
}

// checkHost answers 421 to a request whose Host is not allowed, except
// for the probes, the metrics and the Git webhook (which checks its own
// signatures): probes and scrapers may use any name, and none of them
// serves what a rebinding page could misuse.
func (s *Server) checkHost(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/healthz", "/readyz", "/metrics", "/hooks/git":
			h.ServeHTTP(w, r)
			return
		}
		if !s.hostAllowed(r.Host) {
			s.log.Warn("request for a host that is not allowed refused", "host", r.Host, "remote", r.RemoteAddr)
			writeError(w, http.StatusMisdirectedRequest, fmt.Errorf("host %q is not served here: add it to api.allowedHosts", r.Host))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// streamSlots bounds the streams open at once.
type streamSlots struct {
	max  int64
	open atomic.Int64
}

func (l *streamSlots) acquire() bool {
	if l.open.Add(1) > l.max {
		l.open.Add(-1)
		return false
	}
	return true
}

func (l *streamSlots) release() { l.open.Add(-1) }

// streamRetryAfter is what a refused stream is told to wait, in seconds.
const streamRetryAfter = "10"

// limitStreams refuses a stream beyond the limit with 503 and Retry-After.
func (s *Server) limitStreams(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !s.streams.acquire() {
			w.Header().Set("Retry-After", streamRetryAfter)
			writeError(w, http.StatusServiceUnavailable, fmt.Errorf("too many event streams open (api.maxStreams is %d): try again later", s.streams.max))
			return
		}
		defer s.streams.release()
		h(w, r)
	}
}
