// Package slb is the provider for Alibaba Cloud Server Load Balancer (CLB)
// server groups, on the official SDK github.com/alibabacloud-go/slb-20140515/v4.
//
// A binding names a load balancer and a vServer group (read with
// DescribeVServerGroupAttribute, written with SetVServerGroupAttribute) or,
// without one, the default server group (DescribeLoadBalancerAttribute,
// SetBackendServers). Writes are synchronous, in batches of at most 20,
// and are read back before SetWeights returns. Health comes from
// DescribeHealthStatus on the binding's listener port.
package slb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	slbapi "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba"
	"github.com/tandemhq/tandem/spec"
)

// maxBatch: "You can specify at most 20 backend servers in each call" (SDK
// doc, SetVServerGroupAttributeRequest and SetBackendServersRequest
// BackendServers). cloud-provider-alibaba-cloud batches 39, so the real
// limit may be higher (UNVERIFIED); the documented 20 is the safe choice.
const maxBatch = 20

// Provider is one SLB provider instance (an account and region).
type Provider struct {
	name   string
	region string
	cfg    *openapi.Config
	retry  alibaba.Retry
	log    *slog.Logger
}

var _ providers.LoadBalancer = (*Provider)(nil)

func init() {
	providers.RegisterLoadBalancer(spec.KindSLB, func(cfg spec.ProviderConfig, log *slog.Logger) (providers.LoadBalancer, error) {
		return New(*cfg.(*spec.AlibabaProvider), log)
	})
}

// New builds the provider of one `providers.slb` entry of tandem.yaml.
func New(cfg spec.AlibabaProvider, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := alibaba.Config(spec.KindSLB, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := slbapi.NewClient(c); err != nil {
		return nil, fmt.Errorf("providers.slb[%s]: creating the SLB client: %w", cfg.Name, err)
	}
	provider := spec.KindSLB + "/" + cfg.Name
	return &Provider{
		name:   cfg.Name,
		region: cfg.Region,
		cfg:    c,
		retry:  alibaba.NewRetry(spec.KindSLB, cfg, log),
		log:    log.With("provider", provider),
	}, nil
}

// call runs one API call with retries, on an SDK client of its own: SDK
// clients must not be shared between goroutines (see alibaba.Config).
func (p *Provider) call(ctx context.Context, action string, f func(context.Context, *slbapi.Client) error) error {
	return p.retry.Do(ctx, action, func(ctx context.Context) error {
		c, err := slbapi.NewClient(p.cfg)
		if err != nil {
			return err
		}
		return f(ctx, c)
	})
}

func (p *Provider) check(b spec.Binding) error {
	switch {
	case b.Kind() != spec.KindSLB:
		return providers.Permanentf("InvalidBinding", "%s: not an slb binding", b.Key())
	case b.SLB != p.name:
		return providers.Permanentf("InvalidBinding", "%s: binding names slb provider %q, this is %q", b.Key(), b.SLB, p.name)
	case b.LoadBalancer == "":
		return providers.Permanentf("InvalidBinding", "%s: loadBalancer is required", b.Key())
	}
	return nil
}

// Backends lists every server of the binding's group with its weight and,
// when the binding names a listener port, health. The two reads run at
// once: an idle pass over many services is bound by the API's latency, not
// by the work. SLB reports no session counts (Sessions is -1).
func (p *Provider) Backends(ctx context.Context, b spec.Binding) ([]providers.Backend, error) {
	if err := p.check(b); err != nil {
		return nil, err
	}
	members, health, err, healthErr := alibaba.ReadWithHealth(ctx, b.ListenerPort != 0,
		func(ctx context.Context) ([]alibaba.Member, error) { return p.members(ctx, b) },
		func(ctx context.Context) ([]*slbapi.DescribeHealthStatusResponseBodyBackendServersBackendServer, error) {
			return p.health(ctx, b)
		})
	if err != nil {
		return nil, fmt.Errorf("reading servers of %s: %w", b.Key(), err)
	}
	if healthErr != nil {
		return nil, fmt.Errorf("reading health of %s on listener port %d: %w", b.Key(), b.ListenerPort, healthErr)
	}
	out := make([]providers.Backend, len(members))
	for i, m := range members {
		out[i] = providers.Backend{ID: m.ID, IP: m.IP, Port: m.Port, Weight: m.Weight, Health: providers.HealthUnknown, Sessions: -1}
		for _, h := range health {
			if tea.StringValue(h.ServerId) != m.ID || (m.Port != 0 && int(tea.Int32Value(h.Port)) != m.Port) {
				continue
			}
			// ServerHealthStatus: normal | abnormal | unavailable, the last
			// meaning no health check
			// (https://developer.aliyun.com/ask/208742). A server listed more
			// than once (one entry per listener protocol on the port) is as
			// healthy as its worst entry. CLB has no initial status: a server
			// not yet past its healthy threshold is abnormal too
			// (https://www.alibabacloud.com/help/en/slb/classic-load-balancer/developer-reference/api-slb-2014-05-15-describehealthstatus).
			status := tea.StringValue(h.ServerHealthStatus)
			switch {
			case status == "abnormal":
				out[i].Health, out[i].Status = providers.HealthUnhealthy, status
				out[i].Reason = fmt.Sprintf("abnormal on listener %s:%d", tea.StringValue(h.Protocol), tea.Int32Value(h.ListenerPort))
			case status == "normal" && out[i].Health == providers.HealthUnknown && out[i].Status == "":
				out[i].Health, out[i].Status = providers.HealthHealthy, status
			case out[i].Status == "":
				out[i].Status = status
			}
		}
	}
	return out, nil
}

// members reads the binding's server group.
func (p *Provider) members(ctx context.Context, b spec.Binding) ([]alibaba.Member, error) {
	if b.VServerGroup != "" {
		req := &slbapi.DescribeVServerGroupAttributeRequest{RegionId: tea.String(p.region), VServerGroupId: tea.String(b.VServerGroup)}
		var res *slbapi.DescribeVServerGroupAttributeResponse
		err := p.call(ctx, "DescribeVServerGroupAttribute", func(ctx context.Context, c *slbapi.Client) (err error) {
			res, err = c.DescribeVServerGroupAttributeWithContext(ctx, req, &dara.RuntimeOptions{})
			return err
		})
		if err != nil {
			return nil, err
		}
		if res.Body == nil {
			return nil, errors.New("DescribeVServerGroupAttribute: empty answer")
		}
		if lb := tea.StringValue(res.Body.LoadBalancerId); lb != b.LoadBalancer {
			return nil, providers.Permanentf("InvalidBinding", "vserver group %s belongs to load balancer %s, not %s", b.VServerGroup, lb, b.LoadBalancer)
		}
		var out []alibaba.Member
		if res.Body.BackendServers != nil {
			for _, s := range res.Body.BackendServers.BackendServer {
				out = append(out, alibaba.Member{
					ID: tea.StringValue(s.ServerId), IP: tea.StringValue(s.ServerIp), Port: int(tea.Int32Value(s.Port)),
					Type: tea.StringValue(s.Type), Weight: int(tea.Int32Value(s.Weight)),
				})
			}
		}
		return out, nil
	}
	req := &slbapi.DescribeLoadBalancerAttributeRequest{RegionId: tea.String(p.region), LoadBalancerId: tea.String(b.LoadBalancer)}
	var res *slbapi.DescribeLoadBalancerAttributeResponse
	err := p.call(ctx, "DescribeLoadBalancerAttribute", func(ctx context.Context, c *slbapi.Client) (err error) {
		res, err = c.DescribeLoadBalancerAttributeWithContext(ctx, req, &dara.RuntimeOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.Body == nil {
		return nil, errors.New("DescribeLoadBalancerAttribute: empty answer")
	}
	var out []alibaba.Member
	if res.Body.BackendServers != nil {
		// The default server group has no ports (SDK model of
		// DescribeLoadBalancerAttribute's BackendServer).
		for _, s := range res.Body.BackendServers.BackendServer {
			out = append(out, alibaba.Member{
				ID: tea.StringValue(s.ServerId), IP: tea.StringValue(s.ServerIp),
				Type: tea.StringValue(s.Type), Weight: int(tea.Int32Value(s.Weight)),
			})
		}
	}
	return out, nil
}

// listenerHealth reads DescribeHealthStatus for the binding's listener
// port, as the API answers it (ListenerNotFound and CheckedListenerNotFound
// are errors here; tandem check reports them).
func (p *Provider) listenerHealth(ctx context.Context, b spec.Binding) ([]*slbapi.DescribeHealthStatusResponseBodyBackendServersBackendServer, error) {
	req := &slbapi.DescribeHealthStatusRequest{
		RegionId:       tea.String(p.region),
		LoadBalancerId: tea.String(b.LoadBalancer),
		ListenerPort:   tea.Int32(int32(b.ListenerPort)),
	}
	var res *slbapi.DescribeHealthStatusResponse
	err := p.call(ctx, "DescribeHealthStatus", func(ctx context.Context, c *slbapi.Client) (err error) {
		res, err = c.DescribeHealthStatusWithContext(ctx, req, &dara.RuntimeOptions{})
		return err
	})
	if err != nil {
		return nil, err
	}
	if res.Body == nil || res.Body.BackendServers == nil {
		return nil, nil
	}
	return res.Body.BackendServers.BackendServer, nil
}

// health reads the health of b's listener port for the shift: a listener
// port that gives no health is no health, not an error.
func (p *Provider) health(ctx context.Context, b spec.Binding) ([]*slbapi.DescribeHealthStatusResponseBodyBackendServersBackendServer, error) {
	servers, err := p.listenerHealth(ctx, b)
	if code := alibaba.Code(err); code == "ListenerNotFound" || code == "CheckedListenerNotFound" {
		// The binding's listenerPort names no listener (or none whose
		// checks can be read). That must not stall the service: the LB
		// gives no health for this binding, as when no listenerPort is set,
		// so the shift goes ahead unconfirmed by the LB's checks, as it
		// does for bindings without a listener; the warning says which
		// setting to fix.
		p.log.Warn("the binding's listener gives no health; the shift cannot be confirmed by the LB's health checks",
			"target", b.Key(), "listenerPort", b.ListenerPort, "code", code)
		return nil, nil
	}
	return servers, err
}

// SetWeights changes the weights of the named servers; see
// providers.TrafficApplier. The change goes in one call when it fits one
// batch of 20; otherwise the batches that raise weights go first. SLB
// writes are synchronous; a load balancer still busy with an earlier
// change answers BackendServer.configuring, which is retried. It returns
// after a read-back shows every new weight.
func (p *Provider) SetWeights(ctx context.Context, b spec.Binding, changes []providers.WeightChange) error {
	if err := p.check(b); err != nil {
		return err
	}
	members, err := p.members(ctx, b)
	if err != nil {
		return fmt.Errorf("reading servers of %s: %w", b.Key(), err)
	}
	batches, err := alibaba.Plan(b.Key(), members, changes, maxBatch)
	if err != nil || len(batches) == 0 {
		return err
	}
	for i, batch := range batches {
		if err := p.write(ctx, b, batch); err != nil {
			return fmt.Errorf("setting weights on %s (batch %d of %d, servers %s): %w", b.Key(), i+1, len(batches), alibaba.Names(batch), err)
		}
		p.log.Info("weight batch applied", "target", b.Key(), "servers", len(batch))
	}
	if members, err = p.members(ctx, b); err != nil {
		return fmt.Errorf("reading back %s: %w", b.Key(), err)
	}
	return alibaba.Verify(b.Key(), batches, members)
}

// backendServer is one entry of the BackendServers JSON string, with the
// documented string values (SDK doc example: "Weight": "100", "Port":"80").
type backendServer struct {
	ServerID string `json:"ServerId"`
	Weight   string `json:"Weight"`
	Type     string `json:"Type,omitempty"`
	ServerIP string `json:"ServerIp,omitempty"` // required for eni and eci (SDK doc)
	Port     string `json:"Port,omitempty"`
}

func (p *Provider) write(ctx context.Context, b spec.Binding, batch []alibaba.Update) error {
	list := make([]backendServer, len(batch))
	for i, u := range batch {
		list[i] = backendServer{ServerID: u.ID, Weight: strconv.Itoa(u.Weight), Type: u.Type}
		if u.Type != "" && u.Type != "ecs" {
			list[i].ServerIP = u.IP
		}
		if b.VServerGroup != "" && u.Port != 0 {
			list[i].Port = strconv.Itoa(u.Port)
		}
	}
	js, err := json.Marshal(list)
	if err != nil {
		return err
	}
	if b.VServerGroup != "" {
		req := &slbapi.SetVServerGroupAttributeRequest{RegionId: tea.String(p.region), VServerGroupId: tea.String(b.VServerGroup), BackendServers: tea.String(string(js))}
		return p.call(ctx, "SetVServerGroupAttribute", func(ctx context.Context, c *slbapi.Client) error {
			_, err := c.SetVServerGroupAttributeWithContext(ctx, req, &dara.RuntimeOptions{})
			return err
		})
	}
	req := &slbapi.SetBackendServersRequest{RegionId: tea.String(p.region), LoadBalancerId: tea.String(b.LoadBalancer), BackendServers: tea.String(string(js))}
	return p.call(ctx, "SetBackendServers", func(ctx context.Context, c *slbapi.Client) error {
		_, err := c.SetBackendServersWithContext(ctx, req, &dara.RuntimeOptions{})
		return err
	})
}
