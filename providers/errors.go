package providers

import (
	"errors"
	"fmt"
)

// ErrWouldDisableAll is returned by a registry that refuses to disable the
// last enabled instances of a service (design invariant 2).
var ErrWouldDisableAll = errors.New("refused: the change would leave no enabled instance of the service")

// PermanentError marks a provider error that retrying cannot fix: a missing
// resource, an illegal parameter, a permission problem. The reconciler
// reports it as Stalled (a person has to act). Every other error from a
// provider is treated as transient and retried with backoff.
type PermanentError struct {
	Reason string // short CamelCase reason for status, e.g. "PermissionDenied"
	Err    error
}

func (e *PermanentError) Error() string { return e.Err.Error() }
func (e *PermanentError) Unwrap() error { return e.Err }

// Permanent wraps err as a PermanentError with a reason.
func Permanent(reason string, err error) error {
	if err == nil {
		return nil
	}
	return &PermanentError{Reason: reason, Err: err}
}

// Permanentf builds a PermanentError from a message.
func Permanentf(reason, format string, args ...any) error {
	return &PermanentError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// IsPermanent reports whether err (or anything it wraps) is permanent.
func IsPermanent(err error) bool {
	var p *PermanentError
	return errors.As(err, &p)
}
