package reconcile

import (
	"fmt"
	"strings"

	"github.com/tandemhq/tandem/providers"
)

// lbHealthyAfterLower is invariant 1 as the load balancer sees it: a weight
// change that lowers any backend must leave weight on at least one backend
// the LB itself reports healthy, or one it gives no health for (no
// listener, checks off, a HAProxy server without checks: there the probes
// alone decide, as before). Raises are never refused by it: they add, never
// take away. It returns "" when the change may go ahead, else why not.
// after holds every backend's weight once the change is applied.
func lbHealthyAfterLower(bl BindingLive, changes []providers.WeightChange, after map[string]int) string {
	if !lowers(bl, changes) {
		return ""
	}
	var left []string
	for _, b := range bl.Backends {
		if after[b.ID] == 0 {
			continue
		}
		if b.Health == providers.HealthHealthy || !b.Health.Reported() {
			return ""
		}
		left = append(left, fmt.Sprintf("%s %s%s", b.ID, b.Health, because(b.Reason)))
	}
	if len(left) == 0 {
		return "" // nothing keeps weight: the probes' check of invariant 1 speaks
	}
	return fmt.Sprintf("%s would keep weight only on servers the load balancer does not report healthy: %s", bl.Binding.Key(), strings.Join(left, ", "))
}

// lowers reports whether changes take weight from any backend of bl. A
// change that only raises never breaks invariant 1: it takes nothing away.
func lowers(bl BindingLive, changes []providers.WeightChange) bool {
	for _, c := range changes {
		for _, b := range bl.Backends {
			if b.ID == c.ID && c.Weight < b.Weight {
				return true
			}
		}
	}
	return false
}

// weightsAfter is every backend's weight once changes are applied.
func weightsAfter(bl BindingLive, changes []providers.WeightChange) map[string]int {
	after := map[string]int{}
	for _, b := range bl.Backends {
		after[b.ID] = b.Weight
	}
	for _, c := range changes {
		after[c.ID] = c.Weight
	}
	return after
}

// raisesAndLowers names a backend that changes raise and one they lower
// ("" when none).
func raisesAndLowers(bl BindingLive, changes []providers.WeightChange) (up, down string) {
	for _, c := range changes {
		for _, b := range bl.Backends {
			switch {
			case b.ID != c.ID:
			case c.Weight > b.Weight && up == "":
				up = fmt.Sprintf("%s %d->%d", b.ID, b.Weight, c.Weight)
			case c.Weight < b.Weight && down == "":
				down = fmt.Sprintf("%s %d->%d", b.ID, b.Weight, c.Weight)
			}
		}
	}
	return up, down
}
