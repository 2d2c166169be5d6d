package reconcile

import (
	"errors"
	"fmt"
	"time"

	"github.com/tandemhq/tandem/internal/backoff"
	"github.com/tandemhq/tandem/providers"
)

// Every pass ends in exactly one of four ways, and each has one expression:
//
//   - nil error: in sync (come back at the next resync), or a step was
//     applied (Result.Requeue: come back at once);
//   - *WaitingError: progress is being made (a drain, a health check); come
//     back after RequeueAfter, the one expression of "later" (a registry
//     push may bring the pass earlier); not a failure and not logged as one;
//   - *StalledError: a person has to act (invalid spec, refused invariant,
//     permission, a failed release); no retry until the desired state changes
//     or someone asks for a sync;
//   - any other error: transient; retried with capped exponential backoff
//     and jitter.

// StalledError means retrying cannot help.
type StalledError struct {
	Reason  string // CamelCase, for conditions and metrics
	Message string // what happened and what a person can do
}

func (e *StalledError) Error() string { return e.Message }

// Stalled builds a StalledError.
func Stalled(reason, format string, args ...any) *StalledError {
	return &StalledError{Reason: reason, Message: fmt.Sprintf(format, args...)}
}

// WaitingError means progress needs time, not a person.
type WaitingError struct {
	Reason       string
	Message      string
	RequeueAfter time.Duration
}

func (e *WaitingError) Error() string { return e.Message }

// InvariantError is a step refused because it would break one of the
// invariants listed in the README ("The transition"). It is a stalled
// condition: the plan and the live state disagree in a way Tandem will not
// paper over.
type InvariantError struct {
	Invariant int    // 1..4
	Step      string // the refused step, as described in plans
	Explain   string
}

func (e *InvariantError) Error() string {
	return fmt.Sprintf("refused %s: it would break invariant %d (%s): %s", e.Step, e.Invariant, invariantNames[e.Invariant], e.Explain)
}

var invariantNames = map[int]string{
	1: "every binding keeps weight on healthy instances, ones the LB reports healthy where it reports health",
	2: "the registry keeps an enabled instance",
	3: "deploy only to a group without traffic",
	4: "weight only for a group verified at the target version",
}

// Class is how an error is handled.
type Class string

const (
	ClassNone      Class = ""
	ClassWaiting   Class = "waiting"
	ClassStalled   Class = "stalled"
	ClassTransient Class = "transient"
)

// Classify tells how err must be handled. Provider errors marked permanent
// and refused invariants stall; everything unknown is transient.
func Classify(err error) Class {
	var (
		w *WaitingError
		s *StalledError
		i *InvariantError
	)
	switch {
	case err == nil:
		return ClassNone
	case errors.As(err, &w):
		return ClassWaiting
	case errors.As(err, &s), errors.As(err, &i), providers.IsPermanent(err),
		errors.Is(err, providers.ErrWouldDisableAll):
		return ClassStalled
	}
	return ClassTransient
}

// Reason returns the condition reason carried by err.
func Reason(err error) string {
	var (
		w *WaitingError
		s *StalledError
		i *InvariantError
		p *providers.PermanentError
	)
	switch {
	case errors.As(err, &w):
		return w.Reason
	case errors.As(err, &s):
		return s.Reason
	case errors.As(err, &i):
		return fmt.Sprintf("Invariant%dRefused", i.Invariant)
	case errors.As(err, &p):
		return p.Reason
	case errors.Is(err, providers.ErrWouldDisableAll):
		return "Invariant2Refused"
	}
	return "TransientError"
}

// Backoff is the delay between retries of a failing pass.
type Backoff = backoff.Policy

func errorAs[T error](err error) (T, bool) {
	var t T
	ok := errors.As(err, &t)
	return t, ok
}
