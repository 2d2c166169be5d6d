package alibaba

import (
	"fmt"
	"strings"

	"github.com/tandemhq/tandem/providers"
)

// Member is one server of a server group as the load balancer reports it.
type Member struct {
	ID     string
	IP     string
	Port   int    // 0 where the group has no ports (SLB default server group)
	Type   string // the LB's server type, echoed in writes (ALB ServerType, SLB Type)
	Weight int
}

// Update sets one member's weight.
type Update struct {
	Member     // as observed, with the old weight
	Weight int // the new weight
}

// MaxWeight is the highest weight ALB and SLB accept (SDK docs: 0..100).
const MaxWeight = 100

// Plan turns weight changes into batches of at most batch updates each.
// where names the binding in errors (e.g. alb:prod-hz/sgp-1).
//
// A change names a server by id (spec.Instance.ID); when it also has a
// port, only that port of the server matches, and when the id and port
// still match several members (an ENI with several IPs), its IP narrows
// them. Members not named keep their weight; members already at their new
// weight are left out. When the updates fit one batch they go in one call.
// When they do not, the batches that raise weights come before the ones
// that lower them, so that weight is never taken away before it was given
// elsewhere. A change that would leave every member at weight 0, names an
// unknown server or a weight outside 0..100 is refused as permanent
// (retrying cannot fix it) before anything is sent.
func Plan(where string, members []Member, changes []providers.WeightChange, batch int) ([][]Update, error) {
	next := make([]int, len(members))
	setBy := make([]int, len(members))
	for i, m := range members {
		next[i] = m.Weight
		setBy[i] = -1
	}
	for ci, c := range changes {
		if c.Weight < 0 || c.Weight > MaxWeight {
			return nil, providers.Permanentf("InvalidParameter", "%s: weight %d for server %s is not in 0..%d", where, c.Weight, c.ID, MaxWeight)
		}
		idx := match(members, c)
		if len(idx) == 0 {
			if c.Port != 0 {
				return nil, providers.Permanentf("NotFound", "%s: server %s port %d is not in the server group", where, c.ID, c.Port)
			}
			return nil, providers.Permanentf("NotFound", "%s: server %s is not in the server group", where, c.ID)
		}
		for _, i := range idx {
			if setBy[i] >= 0 && changes[setBy[i]].Weight != c.Weight {
				return nil, providers.Permanentf("InvalidParameter", "%s: server %s is given weights %d and %d in one change", where, c.ID, changes[setBy[i]].Weight, c.Weight)
			}
			setBy[i], next[i] = ci, c.Weight
		}
	}
	total := 0
	for _, w := range next {
		total += w
	}
	if len(members) > 0 && total == 0 {
		return nil, providers.Permanentf("WouldZeroAll", "%s: refused: the change would leave every server of the group at weight 0", where)
	}
	var raise, lower []Update
	for i, m := range members {
		switch {
		case next[i] > m.Weight:
			raise = append(raise, Update{Member: m, Weight: next[i]})
		case next[i] < m.Weight:
			lower = append(lower, Update{Member: m, Weight: next[i]})
		}
	}
	if len(raise)+len(lower) == 0 {
		return nil, nil
	}
	if len(raise)+len(lower) <= batch {
		return [][]Update{append(raise, lower...)}, nil
	}
	return append(chunk(raise, batch), chunk(lower, batch)...), nil
}

func match(members []Member, c providers.WeightChange) []int {
	var idx []int
	for i, m := range members {
		if m.ID == c.ID && (c.Port == 0 || m.Port == 0 || m.Port == c.Port) {
			idx = append(idx, i)
		}
	}
	if len(idx) > 1 && c.IP != "" {
		var byIP []int
		for _, i := range idx {
			if members[i].IP == c.IP {
				byIP = append(byIP, i)
			}
		}
		if len(byIP) > 0 {
			idx = byIP
		}
	}
	return idx
}

func chunk(list []Update, n int) [][]Update {
	var out [][]Update
	for len(list) > n {
		out = append(out, list[:n:n])
		list = list[n:]
	}
	if len(list) > 0 {
		out = append(out, list)
	}
	return out
}

// Verify checks a read-back: every update must show its new weight.
func Verify(where string, batches [][]Update, members []Member) error {
	for _, b := range batches {
		for _, u := range b {
			found := false
			for _, m := range members {
				if m.ID == u.ID && m.Port == u.Port && m.IP == u.IP {
					found = true
					if m.Weight != u.Weight {
						return fmt.Errorf("%s: read-back shows server %s at weight %d, want %d", where, u.ID, m.Weight, u.Weight)
					}
				}
			}
			if !found {
				return fmt.Errorf("%s: read-back no longer lists server %s", where, u.ID)
			}
		}
	}
	return nil
}

// Names lists the server ids of a batch for messages, the first few only.
func Names(batch []Update) string {
	list := make([]string, 0, 5)
	for i, u := range batch {
		if i == 5 {
			return strings.Join(list, ",") + fmt.Sprintf(",… (%d servers)", len(batch))
		}
		list = append(list, u.ID)
	}
	return strings.Join(list, ",")
}
