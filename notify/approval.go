package notify

import (
	"fmt"
	"time"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// actionLink is a signed link a chat message offers, as a button or a
// link, whichever the platform has.
type actionLink struct {
	action     spec.ApprovalDecision
	label, url string
}

// addLinks adds fresh promote and abort links (each with its own nonce,
// expiring at the signer's TTL or the pause's deadline) to the summary of
// an approval pause, or says why there are none.
func (s *summary) addLinks(signer *approvallink.Signer, e reconcile.Event, now time.Time) error {
	if e.Reason != reconcile.ReasonApprovalPending {
		return nil
	}
	if signer == nil {
		s.lines = append(s.lines, "No promote/abort links: api.linkKeyEnv and api.externalURL are not set.")
		return nil
	}
	for _, a := range []struct {
		action spec.ApprovalDecision
		label  string
	}{{spec.ApprovalPromote, "Promote"}, {spec.ApprovalAbort, "Abort"}} {
		u, err := signer.URL(e.Service, e.Transition, e.PauseStep, a.action, now, e.Deadline)
		if err != nil {
			return fmt.Errorf("signing the %s link: %w", a.action, err)
		}
		s.links = append(s.links, actionLink{action: a.action, label: a.label, url: u})
	}
	s.lines = append(s.lines, "The links open a confirmation page; each works once and expires.")
	return nil
}

// linkMap is the links by action, for the generic webhook.
func (s summary) linkMap() map[string]string {
	if len(s.links) == 0 {
		return nil
	}
	m := map[string]string{}
	for _, l := range s.links {
		m[string(l.action)] = l.url
	}
	return m
}
