// Package backoff is the one retry delay of Tandem: capped exponential
// backoff with jitter, used by the reconcile worker (a failing pass), the
// Alibaba OpenAPI retry loop and the notification sinks.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Policy is Base·2^(attempt-1) capped at Max, with "equal jitter": the
// delay is drawn from [d/2, d], so that retries spread out but always wait
// a little.
type Policy struct {
	Base, Max time.Duration
}

// Delay returns the delay before retry number attempt (1-based).
func (p Policy) Delay(attempt int) time.Duration {
	d := p.Base
	for i := 1; i < attempt && d < p.Max; i++ {
		d *= 2
	}
	d = min(d, p.Max)
	if d <= 0 {
		return 0
	}
	half := d / 2
	return half + rand.N(d-half+1)
}
