package spec

import (
	"net"
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

// checkNoURLCredentials reports a user:password@ part in an address of
// tandem.yaml: credentials belong in the environment (*Env fields), where
// they are never printed.
func checkNoURLCredentials(bad func(path, format string, args ...any), field, addr string) {
	host := addr
	if u, err := url.Parse(addr); err == nil && u.Host != "" {
		if u.User == nil {
			return
		}
		host = u.Host
	} else if i := strings.LastIndex(addr, "@"); i >= 0 {
		host = addr[i+1:]
	} else {
		return
	}
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = "host"
	}
	bad(field, "must not carry credentials (user:password@%s): tandem.yaml is printed and copied; keep them in environment variables and name those in the *Env fields", host)
}
