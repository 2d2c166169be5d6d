package slb

import (
	"context"
	"errors"
	"fmt"

	"github.com/alibabacloud-go/tea/tea"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba"
	"github.com/tandemhq/tandem/spec"
)

var _ providers.Inspector = (*Provider)(nil)

// Inspect answers the preflight for one binding without changing anything:
// whether the listener port the binding names exists and checks health
// (DescribeHealthStatus: ListenerNotFound, CheckedListenerNotFound, or
// every server "unavailable", which means no health check). The CLB API has
// no DryRun for weight changes, so write permission cannot be proven
// without a change (WriteChecked stays empty).
func (p *Provider) Inspect(ctx context.Context, b spec.Binding) (providers.Inspection, error) {
	var in providers.Inspection
	if err := p.check(b); err != nil {
		return in, err
	}
	if b.ListenerPort == 0 {
		in.HealthChecks = providers.HealthChecksNoListener
		return in, nil
	}
	servers, err := p.listenerHealth(ctx, b)
	switch {
	case alibaba.IsCode(err, "ListenerNotFound"):
		return in, providers.Permanentf(alibaba.ReasonNotFound, "load balancer %s has no listener on port %d: %w", b.LoadBalancer, b.ListenerPort, err)
	case errors.Is(err, alibaba.ErrNoListenerHealth):
		// The shift goes ahead unconfirmed on such a binding (see health);
		// the preflight says so as an error naming the API's answer.
		return in, err
	case err != nil:
		return in, fmt.Errorf("reading health of %s on listener port %d: %w", b.Key(), b.ListenerPort, err)
	}
	in.HealthChecks = providers.HealthChecksOff
	in.HealthDetail = fmt.Sprintf("listener port %d of %s reports every server unavailable (no health check)", b.ListenerPort, b.LoadBalancer)
	if len(servers) == 0 {
		in.HealthDetail = fmt.Sprintf("listener port %d of %s reports no servers (no listener on that port, or it forwards to an empty group)", b.ListenerPort, b.LoadBalancer)
	}
	for _, s := range servers {
		if tea.StringValue(s.ServerHealthStatus) != "unavailable" {
			in.HealthChecks, in.HealthDetail = providers.HealthChecksOn, ""
			break
		}
	}
	return in, nil
}
