// Package alb is the provider for Alibaba Cloud Application Load Balancer
// server groups, on the official SDK github.com/alibabacloud-go/alb-20200616/v2.
//
// It reads the servers of a group (ListServerGroupServers, paginated) and
// their health on a listener (GetListenerHealthStatus), and sets weights
// with UpdateServerGroupServersAttribute in batches of at most 40, each
// with a ClientToken, waiting for each asynchronous job (ListAsynJobs)
// and reading the group back before it returns.
package alb

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	albapi "github.com/alibabacloud-go/alb-20200616/v2/client"
	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	"github.com/alibabacloud-go/tea/dara"
	"github.com/alibabacloud-go/tea/tea"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/alibaba"
	"github.com/tandemhq/tandem/spec"
)

const (
	// maxBatch: "You can specify at most 40 servers in each call" (SDK doc,
	// UpdateServerGroupServersAttributeRequest.Servers).
	maxBatch = 40
	// pageSize: MaxResults is 1..100 (SDK doc, ListServerGroupServersRequest).
	pageSize = 100
	// healthPageSize: MaxResults is 1..30 (SDK doc, GetListenerHealthStatusRequest).
	healthPageSize = 30
)

// Provider is one ALB provider instance (an account and region).
type Provider struct {
	name       string
	cfg        *openapi.Config
	retry      alibaba.Retry
	jobTimeout time.Duration
	pollBase   time.Duration
	pollMax    time.Duration
	log        *slog.Logger
}

var (
	_ providers.LoadBalancer = (*Provider)(nil)
	_ providers.SlowStarter  = (*Provider)(nil)
)

func init() {
	providers.RegisterLoadBalancer(spec.KindALB, func(cfg spec.ProviderConfig, log *slog.Logger) (providers.LoadBalancer, error) {
		return New(*cfg.(*spec.AlibabaProvider), log)
	})
}

// New builds the provider of one `providers.alb` entry of tandem.yaml.
func New(cfg spec.AlibabaProvider, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	c, err := alibaba.Config(spec.KindALB, cfg)
	if err != nil {
		return nil, err
	}
	if _, err := albapi.NewClient(c); err != nil {
		return nil, fmt.Errorf("providers.alb[%s]: creating the ALB client: %w", cfg.Name, err)
	}
	jobTimeout := cfg.JobTimeout.D()
	if jobTimeout <= 0 {
		jobTimeout = spec.DefaultJobTimeout
	}
	provider := spec.KindALB + "/" + cfg.Name
	return &Provider{
		name:       cfg.Name,
		cfg:        c,
		retry:      alibaba.NewRetry(spec.KindALB, cfg, log),
		jobTimeout: jobTimeout,
		pollBase:   100 * time.Millisecond,
		pollMax:    2 * time.Second,
		log:        log.With("provider", provider),
	}, nil
}

// call runs one API call with retries, on an SDK client of its own: SDK
// clients must not be shared between goroutines (see alibaba.Config).
func (p *Provider) call(ctx context.Context, action string, f func(context.Context, *albapi.Client) error) error {
	return p.retry.Do(ctx, action, func(ctx context.Context) error {
		c, err := albapi.NewClient(p.cfg)
		if err != nil {
			return err
		}
		return f(ctx, c)
	})
}

func (p *Provider) check(b spec.Binding) error {
	switch {
	case b.Kind() != spec.KindALB:
		return providers.Permanentf("InvalidBinding", "%s: not an alb binding", b.Key())
	case b.ALB != p.name:
		return providers.Permanentf("InvalidBinding", "%s: binding names alb provider %q, this is %q", b.Key(), b.ALB, p.name)
	case b.ServerGroup == "":
		return providers.Permanentf("InvalidBinding", "%s: serverGroup is required", b.Key())
	}
	return nil
}

// Backends lists every server of the binding's server group with its
// weight, configuration status and, when the binding names a listener,
// health. The two reads run at once: an idle pass over many services is
// bound by the API's latency, not by the work. ALB reports no session
// counts (Sessions is -1).
func (p *Provider) Backends(ctx context.Context, b spec.Binding) ([]providers.Backend, error) {
	if err := p.check(b); err != nil {
		return nil, err
	}
	servers, health, err, healthErr := alibaba.ReadWithHealth(ctx, b.Listener != "",
		func(ctx context.Context) ([]*albapi.ListServerGroupServersResponseBodyServers, error) {
			return p.servers(ctx, b.ServerGroup)
		},
		func(ctx context.Context) (listenerHealth, error) { return p.health(ctx, b.Listener, b.ServerGroup) })
	if err != nil {
		return nil, fmt.Errorf("reading servers of %s: %w", b.Key(), err)
	}
	if healthErr != nil {
		return nil, fmt.Errorf("reading health of %s on listener %s: %w", b.Key(), b.Listener, healthErr)
	}
	out := make([]providers.Backend, len(servers))
	for i, s := range servers {
		weight := int(tea.Int32Value(s.Weight))
		h, reason := health.of(key(s.ServerId, s.Port), weight)
		out[i] = providers.Backend{
			ID:       tea.StringValue(s.ServerId),
			IP:       tea.StringValue(s.ServerIp),
			Port:     int(tea.Int32Value(s.Port)),
			Weight:   weight,
			Health:   h,
			Reason:   reason,
			Sessions: -1,
			Status:   tea.StringValue(s.Status),
		}
	}
	return out, nil
}

func key(id *string, port *int32) string {
	return fmt.Sprintf("%s:%d", tea.StringValue(id), tea.Int32Value(port))
}

// servers reads every page of ListServerGroupServers.
func (p *Provider) servers(ctx context.Context, group string) ([]*albapi.ListServerGroupServersResponseBodyServers, error) {
	var out []*albapi.ListServerGroupServersResponseBodyServers
	req := &albapi.ListServerGroupServersRequest{ServerGroupId: tea.String(group), MaxResults: tea.Int32(pageSize)}
	for {
		var res *albapi.ListServerGroupServersResponse
		err := p.call(ctx, "ListServerGroupServers", func(ctx context.Context, c *albapi.Client) (err error) {
			res, err = c.ListServerGroupServersWithContext(ctx, req, &dara.RuntimeOptions{})
			return err
		})
		if err != nil {
			return nil, err
		}
		if res.Body == nil {
			return nil, errors.New("ListServerGroupServers: empty answer")
		}
		out = append(out, res.Body.Servers...)
		// An empty NextToken means there is no next page (SDK doc).
		if tea.StringValue(res.Body.NextToken) == "" {
			return out, nil
		}
		req.NextToken = res.Body.NextToken
	}
}

// listenerHealth is what a listener reports about one server group:
// GetListenerHealthStatus lists only the servers that are not healthy
// (NonNormalServers), for the listener's default action and, with
// IncludeRule, for every forwarding rule that forwards to a server group
// (RuleHealthStatus). A server counts as healthy only where every
// listener entry and rule that uses the group reports it healthy: its
// status here is the worst seen. The zero value knows nothing.
type listenerHealth struct {
	checked   bool                 // the listener reports the group, with health checks on
	nonNormal map[string]nonNormal // server id:port -> worst status
}

type nonNormal struct {
	status string // Initial | Unhealthy | Unused | Unavailable (SDK doc, ...NonNormalServers.Status)
	reason string
}

// rank orders statuses from best to worst, for "the worst seen".
func rank(status string) int {
	switch status {
	case "Unhealthy":
		return 3
	case "Initial":
		return 2
	case "Unused":
		return 1
	}
	return 0
}

// of is the health of one server of the given weight, and the LB's reason.
// With health checks on, a server absent from the list is healthy;
// Unhealthy is unhealthy; Initial (checked, not yet past the healthy
// threshold) is initial. Unused means weight 0, and "backend servers with a
// weight of 0 do not participate in health checks"
// (https://www.alibabacloud.com/help/en/slb/application-load-balancer/user-guide/alb-health-check):
// unknown at weight 0, and initial for a server that has weight but whose
// checks ALB has not started yet (the answer can lag a weight change;
// UNVERIFIED for how long). Unavailable (checks off) says nothing: unknown.
// A group the listener does not report, or whose checks are off, is
// unknown throughout.
func (h listenerHealth) of(server string, weight int) (providers.Health, string) {
	if !h.checked {
		return providers.HealthUnknown, ""
	}
	n, listed := h.nonNormal[server]
	switch {
	case !listed:
		return providers.HealthHealthy, ""
	case n.status == "Unhealthy":
		return providers.HealthUnhealthy, n.reason
	case n.status == "Initial", n.status == "Unused" && weight > 0:
		return providers.HealthInitial, orStatus(n.reason, n.status)
	}
	return providers.HealthUnknown, ""
}

func orStatus(reason, status string) string {
	if reason != "" {
		return reason
	}
	return status
}

// describeReason renders ALB's reason for a non-normal server: the
// ReasonCode (CONNECT_TIMEOUT, CONNECT_FAILED, RECV_RESPONSE_FAILED,
// RECV_RESPONSE_TIMEOUT, SEND_REQUEST_FAILED, SEND_REQUEST_TIMEOUT,
// RESPONSE_FORMAT_ERROR, RESPONSE_MISMATCH; SDK doc, ...NonNormalServers.
// Reason.ReasonCode) with the expected and actual responses of a mismatch.
func describeReason(code, expected, actual, where string) string {
	out := code
	if expected != "" || actual != "" {
		out += fmt.Sprintf(" (expected %s, got %s)", expected, actual)
	}
	if out != "" && where != "" {
		out += " " + where
	}
	return out
}

// health reads every page of GetListenerHealthStatus (IncludeRule) for one
// server group.
func (p *Provider) health(ctx context.Context, listener, group string) (listenerHealth, error) {
	h := listenerHealth{nonNormal: map[string]nonNormal{}}
	reported, enabled := false, true
	add := func(groupID, checks, server, status, reason string) {
		if groupID != group {
			return
		}
		reported = true
		enabled = enabled && strings.EqualFold(checks, "on")
		if server == "" {
			return
		}
		if old, ok := h.nonNormal[server]; !ok || rank(status) > rank(old.status) {
			h.nonNormal[server] = nonNormal{status: status, reason: reason}
		}
	}
	req := &albapi.GetListenerHealthStatusRequest{ListenerId: tea.String(listener), MaxResults: tea.Int64(healthPageSize), IncludeRule: tea.Bool(true)}
	for {
		var res *albapi.GetListenerHealthStatusResponse
		err := p.call(ctx, "GetListenerHealthStatus", func(ctx context.Context, c *albapi.Client) (err error) {
			res, err = c.GetListenerHealthStatusWithContext(ctx, req, &dara.RuntimeOptions{})
			return err
		})
		if err != nil {
			return listenerHealth{}, err
		}
		if res.Body == nil {
			return listenerHealth{}, errors.New("GetListenerHealthStatus: empty answer")
		}
		for _, l := range res.Body.ListenerHealthStatus {
			for _, g := range l.ServerGroupInfos {
				id, checks := tea.StringValue(g.ServerGroupId), tea.StringValue(g.HealthCheckEnabled)
				add(id, checks, "", "", "")
				for _, s := range g.NonNormalServers {
					var reason string
					if r := s.Reason; r != nil {
						reason = describeReason(tea.StringValue(r.ReasonCode), tea.StringValue(r.ExpectedResponse), tea.StringValue(r.ActualResponse), "")
					}
					add(id, checks, key(s.ServerId, s.Port), tea.StringValue(s.Status), reason)
				}
			}
		}
		for _, rule := range res.Body.RuleHealthStatus {
			where := "on forwarding rule " + tea.StringValue(rule.RuleId)
			for _, g := range rule.ServerGroupInfos {
				id, checks := tea.StringValue(g.ServerGroupId), tea.StringValue(g.HealthCheckEnabled)
				add(id, checks, "", "", "")
				for _, s := range g.NonNormalServers {
					var reason string
					if r := s.Reason; r != nil {
						reason = describeReason(tea.StringValue(r.ReasonCode), tea.StringValue(r.ExpectedResponse), tea.StringValue(r.ActualResponse), where)
					}
					add(id, checks, key(s.ServerId, s.Port), tea.StringValue(s.Status), reason)
				}
			}
		}
		if tea.StringValue(res.Body.NextToken) == "" {
			break
		}
		req.NextToken = res.Body.NextToken
	}
	h.checked = reported && enabled
	return h, nil
}

// SlowStart reads the slow-start duration of the binding's server group
// (ListServerGroups, SlowStartConfig): 0 when slow start is off. With slow
// start on, ALB "gradually routes traffic to new backend servers" over the
// duration once they pass their health checks
// (https://www.alibabacloud.com/help/en/slb/application-load-balancer/use-cases/smooth-business-start-through-alb-slow-start).
// SlowStartDuration is in seconds (SDK doc example: 30).
func (p *Provider) SlowStart(ctx context.Context, b spec.Binding) (time.Duration, error) {
	if err := p.check(b); err != nil {
		return 0, err
	}
	req := &albapi.ListServerGroupsRequest{ServerGroupIds: []*string{tea.String(b.ServerGroup)}}
	var res *albapi.ListServerGroupsResponse
	err := p.call(ctx, "ListServerGroups", func(ctx context.Context, c *albapi.Client) (err error) {
		res, err = c.ListServerGroupsWithContext(ctx, req, &dara.RuntimeOptions{})
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("reading the slow start of %s: %w", b.Key(), err)
	}
	if res.Body == nil {
		return 0, errors.New("ListServerGroups: empty answer")
	}
	for _, g := range res.Body.ServerGroups {
		if tea.StringValue(g.ServerGroupId) != b.ServerGroup {
			continue
		}
		if c := g.SlowStartConfig; c != nil && tea.BoolValue(c.SlowStartEnabled) {
			return time.Duration(tea.Int32Value(c.SlowStartDuration)) * time.Second, nil
		}
		return 0, nil
	}
	return 0, providers.Permanentf("NotFound", "%s: ListServerGroups does not list server group %s", b.Key(), b.ServerGroup)
}

// SetWeights changes the weights of the named servers; see
// providers.TrafficApplier. The change goes in one call when it fits one
// batch of 40; otherwise the batches that raise weights go first. Each
// batch is one asynchronous job, awaited before the next. It returns after
// a read-back shows every new weight.
func (p *Provider) SetWeights(ctx context.Context, b spec.Binding, changes []providers.WeightChange) error {
	batches, err := p.plan(ctx, b, changes)
	if err != nil || len(batches) == 0 {
		return err
	}
	for i, batch := range batches {
		jobID, err := p.update(ctx, b.ServerGroup, batch, false)
		if err != nil {
			return fmt.Errorf("setting weights on %s (batch %d of %d, servers %s): %w", b.Key(), i+1, len(batches), alibaba.Names(batch), err)
		}
		if err := p.wait(ctx, jobID); err != nil {
			return fmt.Errorf("setting weights on %s (batch %d of %d, servers %s): %w", b.Key(), i+1, len(batches), alibaba.Names(batch), err)
		}
		p.log.Info("weight batch applied", "target", b.Key(), "action", "UpdateServerGroupServersAttribute", "job", jobID, "servers", len(batch))
	}
	servers, err := p.servers(ctx, b.ServerGroup)
	if err != nil {
		return fmt.Errorf("reading back %s: %w", b.Key(), err)
	}
	return alibaba.Verify(b.Key(), batches, members(servers))
}

// DryRun validates a weight change with the service (DryRun=true) without
// applying it: the same plan as SetWeights, each batch answered
// DryRunOperation when it would pass (SDK doc,
// UpdateServerGroupServersAttributeRequest.DryRun).
func (p *Provider) DryRun(ctx context.Context, b spec.Binding, changes []providers.WeightChange) error {
	batches, err := p.plan(ctx, b, changes)
	if err != nil {
		return err
	}
	for _, batch := range batches {
		_, err := p.update(ctx, b.ServerGroup, batch, true)
		if !alibaba.IsCode(err, alibaba.CodeDryRunOperation) {
			if err == nil {
				err = errors.New("the service did not acknowledge the dry run")
			}
			return fmt.Errorf("dry run of weights on %s (servers %s): %w", b.Key(), alibaba.Names(batch), err)
		}
	}
	return nil
}

func (p *Provider) plan(ctx context.Context, b spec.Binding, changes []providers.WeightChange) ([][]alibaba.Update, error) {
	if err := p.check(b); err != nil {
		return nil, err
	}
	servers, err := p.servers(ctx, b.ServerGroup)
	if err != nil {
		return nil, fmt.Errorf("reading servers of %s: %w", b.Key(), err)
	}
	return alibaba.Plan(b.Key(), members(servers), changes, maxBatch)
}

func members(servers []*albapi.ListServerGroupServersResponseBodyServers) []alibaba.Member {
	out := make([]alibaba.Member, len(servers))
	for i, s := range servers {
		out[i] = alibaba.Member{
			ID:     tea.StringValue(s.ServerId),
			IP:     tea.StringValue(s.ServerIp),
			Port:   int(tea.Int32Value(s.Port)),
			Type:   tea.StringValue(s.ServerType),
			Weight: int(tea.Int32Value(s.Weight)),
		}
	}
	return out
}

// update sends one batch. One ClientToken serves every attempt, so a retry
// after a lost answer returns the first attempt's job instead of starting
// another (SDK doc, ClientToken).
func (p *Provider) update(ctx context.Context, group string, batch []alibaba.Update, dryRun bool) (string, error) {
	req := &albapi.UpdateServerGroupServersAttributeRequest{
		ServerGroupId: tea.String(group),
		ClientToken:   tea.String(token()),
	}
	if dryRun {
		req.DryRun = tea.Bool(true)
	}
	for _, u := range batch {
		s := &albapi.UpdateServerGroupServersAttributeRequestServers{
			ServerId:   tea.String(u.ID),
			ServerType: tea.String(u.Type), // required; taken from the observed server
			Weight:     tea.Int32(int32(u.Weight)),
		}
		if u.Port != 0 {
			s.Port = tea.Int32(int32(u.Port))
		}
		if u.IP != "" {
			s.ServerIp = tea.String(u.IP)
		}
		req.Servers = append(req.Servers, s)
	}
	var res *albapi.UpdateServerGroupServersAttributeResponse
	err := p.call(ctx, "UpdateServerGroupServersAttribute", func(ctx context.Context, c *albapi.Client) (err error) {
		res, err = c.UpdateServerGroupServersAttributeWithContext(ctx, req, &dara.RuntimeOptions{})
		return err
	})
	if err != nil {
		return "", err
	}
	if res.Body == nil || tea.StringValue(res.Body.JobId) == "" {
		return "", errors.New("UpdateServerGroupServersAttribute: the answer has no JobId")
	}
	return tea.StringValue(res.Body.JobId), nil
}

// wait polls ListAsynJobs until the job succeeds, fails or jobTimeout
// passes (the pattern of alibaba-load-balancer-controller's ALB futures:
// Processing continues, Succeeded is done, Failed carries ErrorCode).
func (p *Provider) wait(ctx context.Context, jobID string) error {
	deadline := time.Now().Add(p.jobTimeout)
	req := &albapi.ListAsynJobsRequest{JobIds: []*string{tea.String(jobID)}}
	delay := p.pollBase
	for {
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("waiting for job %s: %w", jobID, ctx.Err())
		case <-t.C:
		}
		var res *albapi.ListAsynJobsResponse
		err := p.call(ctx, "ListAsynJobs", func(ctx context.Context, c *albapi.Client) (err error) {
			res, err = c.ListAsynJobsWithContext(ctx, req, &dara.RuntimeOptions{})
			return err
		})
		if err != nil {
			return fmt.Errorf("waiting for job %s: %w", jobID, err)
		}
		if res.Body == nil {
			return fmt.Errorf("waiting for job %s: ListAsynJobs: empty answer", jobID)
		}
		status := "Processing" // a job not listed yet is still starting
		var job *albapi.ListAsynJobsResponseBodyJobs
		for _, j := range res.Body.Jobs {
			if tea.StringValue(j.Id) == jobID {
				job, status = j, tea.StringValue(j.Status)
			}
		}
		switch status {
		case "Succeeded":
			return nil
		case "Failed":
			return fmt.Errorf("job %s failed: %w", jobID, alibaba.Classify(&alibaba.APIError{
				Action:  "UpdateServerGroupServersAttribute",
				Code:    tea.StringValue(job.ErrorCode),
				Message: tea.StringValue(job.ErrorMessage),
			}))
		}
		if time.Now().Add(delay).After(deadline) {
			return fmt.Errorf("job %s still %s after %s (jobTimeout)", jobID, status, p.jobTimeout)
		}
		delay = min(delay*2, p.pollMax)
	}
}

func token() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
