package alibaba

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Retry runs OpenAPI calls, retrying transient failures (busy, throttled,
// 5xx, network) with capped exponential backoff and jitter. It gives up
// when Timeout has passed since the first attempt, or earlier when the
// next wait would outlast the context's deadline. Permanent failures
// return at once. The SDK itself never retries (RetryOptions is nil).
type Retry struct {
	Timeout time.Duration // ceiling for one call with its retries (RetryTimeout); 0: until ctx ends
	Base    time.Duration // first backoff; 0: 100ms
	Max     time.Duration // backoff cap; 0: 5s
	Log     *slog.Logger  // nil: discard
	// Provider names the provider instance in logs, e.g. "alb/prod-hz".
	Provider string
	// Redact strips credentials from every error before it is logged or
	// returned (the zero Redactor strips signed parameters and headers).
	Redact Redactor
}

// NewRetry is the retry loop of one provider instance of tandem.yaml. (Its
// API budget, rateLimit, is kept by the HTTP client of its SDK
// configuration, which every attempt goes through: see Config.)
func NewRetry(kind string, p spec.AlibabaProvider, log *slog.Logger) Retry {
	return Retry{Timeout: p.RetryTimeout.D(), Log: log, Provider: kind + "/" + p.Name, Redact: NewRedactor(p)}
}

// Do calls call until it succeeds, fails permanently or time runs out.
// action is the OpenAPI action, for errors and logs. The error returned is
// an *APIError (wrapped with providers.Permanent when retrying cannot fix
// it), a network error, or the context's error, with credentials stripped
// (Redactor).
func (r Retry) Do(ctx context.Context, action string, call func(ctx context.Context) error) error {
	start := time.Now()
	base, maxWait := r.Base, r.Max
	if base <= 0 {
		base = 100 * time.Millisecond
	}
	if maxWait <= 0 {
		maxWait = 5 * time.Second
	}
	log := r.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	for attempt := 1; ; attempt++ {
		err := r.Redact.Error(classify(action, call(ctx)))
		if err == nil || providers.IsPermanent(err) {
			return err
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return fmt.Errorf("%s: %w (last error: %w)", action, ctxErr, err)
		}
		wait := backoff(base, maxWait, attempt)
		if r.Timeout > 0 && time.Since(start)+wait > r.Timeout {
			return fmt.Errorf("%s: still failing after %d attempts in %s: %w", action, attempt, time.Since(start).Round(time.Millisecond), err)
		}
		if dl, ok := ctx.Deadline(); ok && time.Until(dl) < wait {
			return fmt.Errorf("%s: context deadline too close for another attempt after %d: %w", action, attempt, err)
		}
		log.Debug("retrying transient api error", "provider", r.Provider, "action", action, "attempt", attempt, "wait", wait, "err", err)
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%s: %w (last error: %w)", action, ctx.Err(), err)
		case <-t.C:
		}
	}
}

// backoff is base·2^(attempt-1) capped at max, with "equal jitter": half
// fixed, half random, so that retries spread out but always wait a little.
func backoff(base, maxWait time.Duration, attempt int) time.Duration {
	d := maxWait
	if attempt < 32 {
		if e := base << (attempt - 1); e > 0 && e < maxWait {
			d = e
		}
	}
	half := d / 2
	return half + rand.N(half+1)
}

// IsCode reports whether err carries the OpenAPI error code code.
func IsCode(err error, code string) bool {
	var a *APIError
	return errors.As(err, &a) && codeIn(a.Code, code)
}
