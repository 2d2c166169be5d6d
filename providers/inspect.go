package providers

import (
	"context"

	"github.com/tandemhq/tandem/spec"
)

// Inspector is implemented by load balancers that can tell a read-only
// preflight (`tandem check`) more about a binding than its backends:
// whether the resources it names exist, whether the load balancer checks
// the health of its servers, and whether the credentials may change
// weights. Inspect must change nothing; where the API offers a dry run of
// the weight write (ALB DryRun), it may use it. A missing resource is a
// PermanentError with reason NotFound.
type Inspector interface {
	Inspect(ctx context.Context, b spec.Binding) (Inspection, error)
}

// Inspection is what Inspect learned about one binding.
type Inspection struct {
	// HealthChecks says whether the load balancer checks the servers'
	// health where the binding reads it (its listener).
	HealthChecks HealthChecks `json:"healthChecks"`
	// HealthDetail says why, in the load balancer's terms, when health
	// checks are not on (e.g. "listener port 80 has health checks off").
	HealthDetail string `json:"healthDetail,omitempty"`
	// WriteChecked names the side-effect-free call that proved write
	// permission (e.g. "DryRun of UpdateServerGroupServersAttribute"), or
	// is empty when the API offers none.
	WriteChecked string `json:"writeChecked,omitempty"`
}

// HealthChecks is whether a load balancer checks a binding's servers.
type HealthChecks string

const (
	HealthChecksOn         HealthChecks = "on"
	HealthChecksOff        HealthChecks = "off"         // the listener exists, its checks are off
	HealthChecksNoListener HealthChecks = "no-listener" // the binding names no listener to read health from
)
