package alb

import (
	"context"
	"errors"
	"fmt"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba"
	"github.com/tandemhq/tandem/spec"
)

var _ providers.Inspector = (*Provider)(nil)

// Inspect answers the preflight for one binding without changing anything:
// the listener's health view of the server group (GetListenerHealthStatus:
// HealthCheckEnabled of the group on the listener), and write permission by
// a DryRun of UpdateServerGroupServersAttribute that sets the group's first
// server to the weight it already has. A DryRun request is checked
// (permissions, parameters, resource state) and answered DryRunOperation
// without being carried out (SDK doc, UpdateServerGroupServersAttributeRequest.DryRun;
// https://www.alibabacloud.com/help/en/slb/application-load-balancer/developer-reference/api-alb-2020-06-16-updateservergroupserversattribute).
func (p *Provider) Inspect(ctx context.Context, b spec.Binding) (providers.Inspection, error) {
	var in providers.Inspection
	if err := p.check(b); err != nil {
		return in, err
	}
	switch {
	case b.Listener == "":
		in.HealthChecks = providers.HealthChecksNoListener
	default:
		h, err := p.health(ctx, b.Listener, b.ServerGroup)
		if err != nil {
			return in, fmt.Errorf("reading health of %s on listener %s: %w", b.Key(), b.Listener, err)
		}
		in.HealthChecks = providers.HealthChecksOn
		if !h.checked {
			in.HealthChecks = providers.HealthChecksOff
			in.HealthDetail = fmt.Sprintf("listener %s reports no health checks for server group %s (HealthCheckEnabled is off, or the listener does not forward to the group)", b.Listener, b.ServerGroup)
		}
	}
	servers, err := p.servers(ctx, b.ServerGroup)
	if err != nil {
		return in, fmt.Errorf("reading servers of %s: %w", b.Key(), err)
	}
	if len(servers) == 0 {
		return in, nil // nothing to name in a dry run
	}
	m := members(servers)[0]
	_, err = p.update(ctx, b.ServerGroup, []alibaba.Update{{Member: m, Weight: m.Weight}}, true)
	if !alibaba.IsCode(err, alibaba.CodeDryRunOperation) {
		if err == nil {
			err = errors.New("the service did not acknowledge the dry run")
		}
		return in, fmt.Errorf("dry run of a weight change on %s: %w", b.Key(), err)
	}
	in.WriteChecked = "DryRun of UpdateServerGroupServersAttribute"
	return in, nil
}
