package backoff

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

func TestDelayGrowsWithJitterUpToTheCap(t *testing.T) {
	p := Policy{Base: 100 * time.Millisecond, Max: 5 * time.Second}
	for attempt := 1; attempt < 70; attempt++ {
		want := min(100*time.Millisecond<<min(attempt-1, 20), 5*time.Second)
		d := p.Delay(attempt)
		require.GreaterOrEqual(t, d, want/2, "attempt %d", attempt)
		require.LessOrEqual(t, d, want, "attempt %d", attempt)
	}
}

func TestDelayOfAZeroPolicyIsZero(t *testing.T) {
	require.Zero(t, Policy{}.Delay(3))
}
