package spec

import (
	"net/url"
	"time"
)

// ApprovalGate pauses a release after verify (and the smoke tests and
// analysis, when set), before the target group gets any traffic, until
// someone promotes or aborts it: `tandem promote|abort SERVICE`, the API
// (POST /api/v1/services/NAME/promote|abort), the dashboard's buttons or a
// signed link in the chat message that announces the pause.
//
//	gates:
//	  approval:
//	    timeout: 1h        # optional; without it the pause lasts until someone decides
//	    onTimeout: abort   # abort | promote; required with timeout
type ApprovalGate struct {
	// Timeout ends the pause on its own after this long (0: never).
	Timeout Duration `yaml:"timeout" json:"timeout,omitempty"`
	// OnTimeout is what the timeout decides: abort or promote.
	OnTimeout ApprovalDecision `yaml:"onTimeout" json:"onTimeout,omitempty"`
}

// ApprovalDecision ends an approval pause.
type ApprovalDecision string

const (
	ApprovalPromote ApprovalDecision = "promote" // the release goes on to the shift
	ApprovalAbort   ApprovalDecision = "abort"   // the release is undone; its target never got traffic
)

// MinApprovalTimeout is the shortest gates.approval.timeout: a shorter one
// leaves no time for a person to act.
const MinApprovalTimeout = time.Second

// validateApproval checks gates.approval; bad reports a located problem.
func (s *Service) validateApproval(bad func(path, format string, args ...any)) {
	a := s.Gates.Approval
	if a == nil {
		return
	}
	switch a.OnTimeout {
	case "", ApprovalPromote, ApprovalAbort:
	default:
		bad("gates.approval.onTimeout", "must be abort or promote, got %q", a.OnTimeout)
	}
	switch {
	case a.Timeout < 0:
		bad("gates.approval.timeout", "must not be negative, got %s", a.Timeout)
	case a.Timeout > 0 && a.Timeout.D() < MinApprovalTimeout:
		bad("gates.approval.timeout", "must be at least %s (or left out to wait until someone decides), got %s", MinApprovalTimeout, a.Timeout)
	case a.Timeout > 0 && a.OnTimeout == "":
		bad("gates.approval.onTimeout", "is required with gates.approval.timeout: say what the timeout decides (abort or promote)")
	case a.Timeout == 0 && a.OnTimeout != "":
		bad("gates.approval.onTimeout", "needs gates.approval.timeout: without a timeout the pause lasts until someone decides")
	}
}

// validateLinks checks api.externalURL, api.linkKeyEnv and api.linkTTL.
func (c *Config) validateLinks(bad func(path, format string, args ...any)) {
	a := c.API
	checkEnv(bad, "api.linkKeyEnv", a.LinkKeyEnv)
	if a.ExternalURL != "" {
		u, err := url.Parse(a.ExternalURL)
		switch {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("api.externalURL", "must be an http or https URL where people reach this API (e.g. https://tandem.example.com), got %q", a.ExternalURL)
		case URLCredentials(a.ExternalURL) != "":
			bad("api.externalURL", "must not contain %s: it would be sent in every chat message", URLCredentials(a.ExternalURL))
		case u.RawQuery != "" || u.Fragment != "":
			bad("api.externalURL", "must have no query or fragment, got %q", a.ExternalURL)
		}
	}
	if (a.ExternalURL == "") != (a.LinkKeyEnv == "") {
		if a.ExternalURL == "" {
			bad("api.linkKeyEnv", "needs api.externalURL: the links' base")
		} else {
			bad("api.externalURL", "needs api.linkKeyEnv: the key that signs the approval links")
		}
	}
	if a.LinkTTL.D() < time.Minute || a.LinkTTL.D() > 7*24*time.Hour {
		bad("api.linkTTL", "must be from 1m to 168h, got %s", a.LinkTTL)
	}
}
