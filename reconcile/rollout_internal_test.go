package reconcile

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// shareWeights keeps the share within rounding, never gives a carrying
// group weight 0 between 0 and 100 percent, never exceeds the binding's
// weight, and only raises the target and lowers the source as the share
// rises.
func TestShareWeightsHoldTheShareWithinRounding(t *testing.T) {
	for _, w := range []int{1, 2, 10, 100, 256} {
		for _, n := range [][2]int{{1, 1}, {2, 2}, {1, 3}, {3, 1}, {4, 7}} {
			prevTo, prevFrom := 0, w
			for share := 0; share <= 100; share++ {
				to, from := shareWeights(w, n[0], n[1], share)
				require.LessOrEqual(t, to, w)
				require.LessOrEqual(t, from, w)
				switch share {
				case 0:
					require.Equal(t, [2]int{0, w}, [2]int{to, from})
				case 100:
					require.Equal(t, [2]int{w, 0}, [2]int{to, from})
				default:
					require.Positive(t, to, "w=%d n=%v share=%d", w, n, share)
					require.Positive(t, from, "w=%d n=%v share=%d", w, n, share)
				}
				require.GreaterOrEqual(t, to, prevTo, "the target's weight only rises")
				require.LessOrEqual(t, from, prevFrom, "the source's weight only falls")
				prevTo, prevFrom = to, from
				if w == 100 && share > 0 && share < 100 {
					// The larger side is 100: the other is within half a
					// unit, i.e. the share within about one percent.
					require.InDelta(t, float64(share), effectiveShare(to, from, n[0], n[1]), 100.0*float64(max(n[0], n[1]))/float64(w*min(n[0], n[1])), "n=%v share=%d", n, share)
				}
			}
		}
	}
	to, from := shareWeights(100, 2, 2, 10)
	require.Equal(t, [2]int{11, 100}, [2]int{to, from})
	to, from = shareWeights(100, 2, 2, 90)
	require.Equal(t, [2]int{100, 11}, [2]int{to, from})
}
