package spec

import "fmt"

// Warnings lists what is valid but weakens a guarantee, located like
// problems: bindings whose load balancer gives the shift no health to
// confirm the target group with. They are printed by tandem validate and
// tandem plan and never refuse a commit.
func (s *Service) Warnings() Problems {
	var ws Problems
	for i, b := range s.Traffic {
		path := fmt.Sprintf("traffic[%d]", i)
		if k, ok := b.LBKind(); ok && k.Unconfirmed != nil {
			if w := k.Unconfirmed(b); w != "" {
				ws = append(ws, s.Problem(path, "%s", w))
			}
		}
	}
	return ws
}

// Warnings lists the warnings of every service of the set.
func (set *Set) Warnings() Problems {
	var ws Problems
	for _, s := range set.Services {
		ws = append(ws, s.Warnings()...)
	}
	return ws
}
