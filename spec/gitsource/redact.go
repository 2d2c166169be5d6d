package gitsource

import (
	"context"
	"errors"
	"regexp"
	"strings"
)

// Credentials must never reach status, logs, events or notifications, and
// go-git puts the URL it was given (userinfo included) into some of its
// errors. tandem.yaml refuses credentials in git.url (spec.URLCredentials);
// a URL given another way (a remote of the working tree for
// `tandem release --push`, a caller of this package) is redacted here.

var (
	// http(s)://anything@ : the user part may be a token.
	httpUserinfo = regexp.MustCompile(`(?i)\b(https?://)[^/@\s"']*@`)
	// scheme://user:password@ : keep the user, drop the password.
	urlPassword = regexp.MustCompile(`\b([a-zA-Z][a-zA-Z0-9+.-]*://[^/:@\s"']*):[^/@\s"']*@`)
)

const redacted = "REDACTED"

// redactText removes URL credentials and the given secret values from s.
func redactText(s string, secrets ...string) string {
	for _, v := range secrets {
		if len(v) >= 4 { // shorter values would redact ordinary words
			s = strings.ReplaceAll(s, v, redacted)
		}
	}
	s = httpUserinfo.ReplaceAllString(s, "${1}"+redacted+"@")
	return urlPassword.ReplaceAllString(s, "${1}:"+redacted+"@")
}

// redactedError is an error whose text had credentials removed. It wraps
// nothing: the original text, which holds them, is not reachable through
// errors.Unwrap. Context ends are kept recognisable.
type redactedError struct {
	msg string
	ctx error // context.Canceled or DeadlineExceeded, when the original was one
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.ctx }

// redactErr returns err with URL credentials and secrets removed from its
// text; err itself when there was nothing to remove.
func redactErr(err error, secrets ...string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := redactText(msg, secrets...)
	if clean == msg {
		return err
	}
	out := &redactedError{msg: clean}
	for _, c := range contextErrors {
		if errors.Is(err, c) {
			out.ctx = c
		}
	}
	return out
}

var contextErrors = []error{context.Canceled, context.DeadlineExceeded}
