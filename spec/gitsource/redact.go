package gitsource

import (
	"context"
	"errors"

	"github.com/tandemhq/tandem/redact"
)

// Credentials must never reach status, logs, events or notifications, and
// go-git puts the URL it was given (userinfo included) into some of its
// errors. tandem.yaml refuses credentials in git.url (spec.URLCredentials);
// a URL given another way (a remote of the working tree for
// `tandem release --push`, a caller of this package) is redacted here, by
// the daemon-wide rules of package redact (the user part of an http(s)
// URL, the password of any URL, credential patterns) and the given secret
// values.

// redactText removes URL credentials and the given secret values from s.
func redactText(s string, secrets ...string) string {
	return redact.New(secrets...).String(s)
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
