package spec

import (
	"net/url"
	"strings"
)

// URLCredentials says what secret a repository URL carries, or "" when it
// carries none: a password in any URL, or any user part in an http(s) URL
// (https://TOKEN@host/ is how hosts document personal access tokens). An
// ssh user name (ssh://git@host/..., git@host:path) is a login, not a
// secret.
func URLCredentials(raw string) string {
	if !strings.Contains(raw, "://") {
		return "" // a local path or scp-like user@host:path
	}
	u, err := url.Parse(raw)
	if err != nil || u.User == nil {
		return ""
	}
	if _, ok := u.User.Password(); ok {
		return "a password (user:password@)"
	}
	if s := strings.ToLower(u.Scheme); s == "http" || s == "https" {
		return "credentials (user@ or token@)"
	}
	return ""
}
