// Package redact removes secrets from text the daemon writes or serves:
// events (the events log, the API, the stream), status answers, logs and
// notifications. Its Redactor is also what the ALB/SLB providers and the
// Git source use on the errors they return, so every secret is replaced
// by the same text (spec.Redacted) under the same rules.
//
// A Redactor replaces two kinds of things with "<redacted>":
//
//   - every secret value it knows: in the daemon, the value of each variable
//     a *Env field of tandem.yaml names, of each variable a service's
//     deploy.http.tokenEnv names, and of every variable of the daemon's
//     environment whose name says it holds a credential (TOKEN, SECRET,
//     PASSWORD, ...; see SecretName); in the raw form and the forms an
//     encoder gives it (URL escapes, once and twice, Base64, JSON escapes);
//   - text that looks like a credential wherever it comes from (a deploy
//     hook's output, for example): Alibaba AccessKey ids (LTAI...), AWS
//     access key ids (AKIA...), the credentials of an Authorization header,
//     the value after password=, token: and similar, the user part of an
//     http(s) URL (it may be a token), the password of any other URL's
//     user part, and PEM private key blocks.
//
// Values shorter than MinLength are not redacted as values (they would
// blank out ordinary words); the patterns still apply. The patterns are a
// safety net, not a promise: a hook that prints a credential in a form
// none of them knows can still leak it, unless its value is known.
package redact

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Mask is what replaces a secret.
const Mask = spec.Redacted

// MinLength is the shortest value redacted as a known secret.
const MinLength = 6

// Redactor holds the secrets to remove. The zero value and nil redact
// patterns only. It is safe for concurrent use.
type Redactor struct {
	mu       sync.RWMutex
	values   map[string]bool // every form of every value
	replacer *strings.Replacer
}

// New returns a Redactor that knows values.
func New(values ...string) *Redactor {
	r := &Redactor{}
	r.Add(values...)
	return r
}

// Add makes the Redactor know more values (a deploy token named by a new
// revision of the desired state, for example).
func (r *Redactor) Add(values ...string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.values == nil {
		r.values = map[string]bool{}
	}
	added := false
	for _, v := range values {
		if len(v) < MinLength {
			continue
		}
		for _, f := range forms(v) {
			if !r.values[f] {
				r.values[f], added = true, true
			}
		}
	}
	if !added {
		return
	}
	all := make([]string, 0, len(r.values))
	for v := range r.values {
		all = append(all, v)
	}
	// Longest first: a value that contains another is replaced whole.
	slices.SortFunc(all, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	pairs := make([]string, 0, 2*len(all))
	for _, v := range all {
		pairs = append(pairs, v, Mask)
	}
	r.replacer = strings.NewReplacer(pairs...)
}

// forms are the ways an encoder may write v. A query value escaped twice is
// how it appears in a string-to-sign that a signed API echoes back.
func forms(v string) []string {
	out := []string{v, url.QueryEscape(v), url.QueryEscape(url.QueryEscape(v)), url.PathEscape(v),
		base64.StdEncoding.EncodeToString([]byte(v)), base64.URLEncoding.EncodeToString([]byte(v)),
		base64.RawStdEncoding.EncodeToString([]byte(v)), base64.RawURLEncoding.EncodeToString([]byte(v))}
	if b, err := json.Marshal(v); err == nil { // HTML-escaped, as json.Marshal writes
		out = append(out, strings.Trim(string(b), `"`))
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if enc.Encode(v) == nil {
		out = append(out, strings.Trim(strings.TrimSpace(b.String()), `"`))
	}
	return out
}

// pattern is a credential in free text: re's match is replaced by repl.
// It is tried only when the lower-cased text holds one of hints (most text
// holds none, and a regular expression over megabytes of status is slow).
type pattern struct {
	re    *regexp.Regexp
	repl  string
	hints []string
}

// Kept: what names the secret (group 1, and group 2 when there is one).
const (
	keep1  = "${1}" + Mask
	keep12 = "${1}" + Mask + "${2}"
)

// Patterns of credentials in free text. No value class takes a quote or a
// backslash, so a JSON string's end is never crossed, nor '<', so a mask is
// not masked again.
var patterns = []pattern{
	// Authorization and Proxy-Authorization headers: with a scheme, and
	// without one (then only a long value, so that a scheme alone is kept).
	{regexp.MustCompile(`(?i)((?:proxy-)?authorization["']?\s*[:=]\s*["']?(?:bearer|basic|token|digest|negotiate|acs3-hmac-sha256|acs)\s+)[^\s"'\\,;<>]+`),
		keep1, []string{"authorization"}},
	{regexp.MustCompile(`(?i)((?:proxy-)?authorization["']?\s*[:=]\s*["']?)[^\s"'\\,;<>]{12,}`), keep1, []string{"authorization"}},
	// "Bearer x" anywhere.
	{regexp.MustCompile(`(?i)(\bbearer\s+)[A-Za-z0-9\-._~+/]{8,}=*`), keep1, []string{"bearer"}},
	// key=value and key: value where the key names a credential.
	{regexp.MustCompile(`(?i)((?:\b|_)(?:password|passwd|pwd|secret|token|api[-_]?key|access[-_]?key[-_]?secret|accesskeysecret|` +
		`private[-_]?key|client[-_]?secret|security[-_]?token|access_token)["']?\s*[:=]\s*["']?)[^\s"'\\&,;<>]+`),
		keep1, []string{"passw", "pwd", "secret", "token", "apikey", "api_key", "api-key", "privatekey", "private_key", "private-key"}},
	// A signed URL's signature (Alibaba's legacy v2 signs in the query).
	{regexp.MustCompile(`(?i)([?&]signature=)[^\s"'\\&<>]+`), keep1, []string{"signature="}},
	// URL credentials: the whole user part of an http(s) URL
	// (https://TOKEN@host/ is how hosts document tokens, and
	// https://TOKEN:x-oauth-basic@ puts one in the user name), the password
	// of any other URL's user part (ssh://git@host/ is a login, kept).
	{regexp.MustCompile(`(?i)(\bhttps?://)[^/?#@\s"'\\<>]+(@)`), keep12, []string{"://"}},
	{regexp.MustCompile(`(://[^/?#:@\s"'\\<>]*:)[^/?#@\s"'\\<>]+(@)`), keep12, []string{"://"}},
	// Alibaba Cloud AccessKey ids: LTAI and 12 to 28 letters and digits;
	// STS AccessKey ids; AWS access key ids.
	{regexp.MustCompile(`\bLTAI[0-9A-Za-z]{12,28}\b`), Mask, []string{"ltai"}},
	{regexp.MustCompile(`\bSTS\.[0-9A-Za-z]{16,40}\b`), Mask, []string{"sts."}},
	{regexp.MustCompile(`\b(?:AKIA|ASIA)[0-9A-Z]{16}\b`), Mask, []string{"akia", "asia"}},
	// PEM private keys; one cut short runs to the end of the text (or of
	// the JSON string).
	{regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[^"]*?-----END [A-Z ]*PRIVATE KEY-----`), Mask, []string{"private key-----"}},
	{regexp.MustCompile(`-----BEGIN [A-Z ]*PRIVATE KEY-----[^"]*`), Mask, []string{"private key-----"}},
}

// String returns s without the secrets it knows and the credentials the
// patterns find.
func (r *Redactor) String(s string) string {
	if s == "" {
		return s
	}
	if r != nil {
		r.mu.RLock()
		rep := r.replacer
		r.mu.RUnlock()
		if rep != nil {
			s = rep.Replace(s)
		}
	}
	lower := strings.ToLower(s)
	for _, p := range patterns {
		for _, h := range p.hints {
			if strings.Contains(lower, h) {
				s = p.re.ReplaceAllString(s, p.repl)
				lower = strings.ToLower(s)
				break
			}
		}
	}
	return s
}

// Bytes is String for bytes (a JSON answer, for example). The patterns
// never cross a JSON string's quotes, so valid JSON stays valid.
func (r *Redactor) Bytes(b []byte) []byte {
	return []byte(r.String(string(b)))
}

// secretName matches the names of variables that hold credentials.
var secretName = regexp.MustCompile(`(?i)(TOKEN|SECRET|PASSWORD|PASSWD|PASSPHRASE|CREDENTIAL|PRIVATE_?KEY|API_?KEY|ACCESS_?KEY)`)

// SecretName reports whether an environment variable's name says it holds
// a credential. Such values are redacted as a safety net, not because
// deploy hooks see them: hooks receive only PATH, HOME, LANG, TZ and what
// policy.hooks.env passes (spec.Config.HookEnvAllowed). They can still
// show up where the daemon did not put them: a variable the operator
// passes to hooks on purpose, a deploy system or library that echoes one
// in an error, a credential the daemon holds for a tool tandem.yaml does
// not know about.
func SecretName(name string) bool { return secretName.MatchString(name) }

// FromEnviron returns the values of the variables of environ (KEY=VALUE)
// whose names SecretName accepts, plus the values of the variables named.
func FromEnviron(environ []string, named ...string) []string {
	var out []string
	for _, kv := range environ {
		k, v, ok := strings.Cut(kv, "=")
		if ok && v != "" && (SecretName(k) || slices.Contains(named, k)) {
			out = append(out, v)
		}
	}
	return out
}

// Env returns the values of the named variables that are set, plus every
// variable of the process whose name says it holds a credential.
func Env(named ...string) []string { return FromEnviron(os.Environ(), named...) }

// Event returns e with its free text redacted.
func (r *Redactor) Event(e reconcile.Event) reconcile.Event {
	e.Message = r.String(e.Message)
	e.Subject = r.String(e.Subject)
	e.Author = r.String(e.Author)
	return e
}
