package emulator

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Health checks as Alibaba documents them.
//
// ALB, "ALB health checks"
// (https://www.alibabacloud.com/help/en/slb/application-load-balancer/user-guide/alb-health-check):
//   - health checks are configured per server group and are on by default;
//   - a server must pass HealthyThreshold consecutive checks before it is
//     declared healthy, and ALB routes only to healthy servers;
//   - a server that fails UnhealthyThreshold consecutive checks is declared
//     unhealthy and gets no new requests;
//   - "If all backend servers in a server group fail health checks, ALB still
//     attempts to route requests to them based on the scheduling algorithm";
//   - "Backend servers with a weight of 0 do not participate in health checks";
//   - ALB checks from its own addresses (vSwitch local IPs or 100.64.0.0/10):
//     a security group or iptables rule that blocks them fails every check
//     although the server is fine — BlockServers models that.
//
// The settings and their defaults and ranges are the SDK doc of
// CreateServerGroupRequestHealthCheckConfig (alb-20200616/v2 v2.3.2):
// HealthCheckInterval 1..50 s (default 2), HealthCheckTimeout 1..300 s
// (default 5), HealthyThreshold and UnhealthyThreshold 2..10 (default 3),
// HealthCheckConnectPort 0 = the server's port, HealthCheckMethod HEAD by
// default for HTTP. Statuses in GetListenerHealthStatus (SDK doc,
// ...NonNormalServers.Status): Initial (checks configured, no result yet),
// Unhealthy, Unused (weight 0), Unavailable (health checks off); a healthy
// server is not listed. Reason codes: SDK doc, ...NonNormalServers.Reason.
//
// CLB, "CLB health checks"
// (https://help.aliyun.com/en/slb/classic-load-balancer/user-guide/health-check-overview/)
// and "Configure and manage CLB health checks"
// (https://help.aliyun.com/en/slb/classic-load-balancer/user-guide/configure-and-manage-health-checks):
// checks are set per listener and on by default; TCP listeners check by TCP
// (or HTTP), HTTP listeners by HTTP; recommended (default) settings 5 s
// timeout, 2 s interval, thresholds 3 and 3 ("FAQ about health checks",
// https://www.alibabacloud.com/help/en/slb/classic-load-balancer/support/faq-about-health-checks).
// DescribeHealthStatus reports normal | abnormal | unavailable (SDK doc;
// unavailable: no health check, https://developer.aliyun.com/ask/208742).
//
// UNVERIFIED, with the choice made:
//   - whether ALB routes to servers still in Initial while others of the
//     group are healthy: it does not (the conservative reading of "routes
//     requests only to healthy servers"); when no weighted server is
//     healthy, Initial ones are routed to with the rest (the fail-open);
//   - that a server given weight again starts over in Initial;
//   - CLB's fail-open and its treatment of weight 0: modelled as ALB's;
//     a weight-0 server is reported "unavailable" (no check runs) and a
//     server not yet declared healthy "abnormal" (CLB has no initial status);
//   - CLB checks each listener separately; the emulator checks a server
//     once per group with the settings of the first listener (lowest port)
//     that forwards to the group;
//   - the default HealthCheckCodes of an ALB HTTP check: http_2xx, http_3xx.

// HealthCheck is the health-check settings of an ALB server group (its
// HealthCheckConfig) or of an SLB listener. The names are the SDK's
// (ALB HealthCheckConfig; SLB DescribeLoadBalancerHTTPListenerAttribute
// uses HealthCheck on|off and HealthCheckURI for Enabled and Path). Zero
// values take the documented defaults. Interval and Timeout are seconds
// of the emulator's clock (Options.HealthCheckUnit).
type HealthCheck struct {
	Enabled            *bool    `json:"healthCheckEnabled,omitempty"`     // default true
	Protocol           string   `json:"healthCheckProtocol,omitempty"`    // HTTP | TCP; default HTTP (SLB: TCP on tcp listeners)
	Method             string   `json:"healthCheckMethod,omitempty"`      // HEAD (default) | GET
	Path               string   `json:"healthCheckPath,omitempty"`        // default "/"
	ConnectPort        int      `json:"healthCheckConnectPort,omitempty"` // 0: the server's port
	Interval           int      `json:"healthCheckInterval,omitempty"`    // seconds, 1..50, default 2
	Timeout            int      `json:"healthCheckTimeout,omitempty"`     // seconds, 1..300, default 5
	HealthyThreshold   int      `json:"healthyThreshold,omitempty"`       // 2..10, default 3
	UnhealthyThreshold int      `json:"unhealthyThreshold,omitempty"`     // 2..10, default 3
	Codes              []string `json:"healthCheckCodes,omitempty"`       // default http_2xx, http_3xx
}

// Health statuses of a server (GetListenerHealthStatus; a Healthy server is
// absent from NonNormalServers there).
const (
	StatusInitial     = "Initial"
	StatusHealthy     = "Healthy"
	StatusUnhealthy   = "Unhealthy"
	StatusUnused      = "Unused"
	StatusUnavailable = "Unavailable"
)

// Reason is why a server is not healthy (GetListenerHealthStatus
// NonNormalServers.Reason).
type Reason struct {
	ReasonCode       string
	ExpectedResponse string `json:",omitempty"`
	ActualResponse   string `json:",omitempty"`
}

// Health is the health-check view of one server.
type Health struct {
	Server Server
	Status string  // Initial | Healthy | Unhealthy | Unused | Unavailable
	Reason *Reason // the last failed check, while not healthy
	// SlowStartUntil is when the server's slow start ends (zero: not in
	// slow start). GetListenerHealthStatus does not show it.
	SlowStartUntil time.Time
}

func (h HealthCheck) enabled() bool { return h.Enabled == nil || *h.Enabled }

// withDefaults fills the documented defaults; tcp says the check is TCP
// unless set (an SLB tcp listener).
func (h HealthCheck) withDefaults(tcp bool) HealthCheck {
	if h.Protocol == "" {
		h.Protocol = "HTTP"
		if tcp {
			h.Protocol = "TCP"
		}
	}
	h.Protocol = strings.ToUpper(h.Protocol)
	if h.Method == "" {
		h.Method = http.MethodHead
	}
	h.Method = strings.ToUpper(h.Method)
	if h.Path == "" {
		h.Path = "/"
	}
	if h.Interval == 0 {
		h.Interval = 2
	}
	if h.Timeout == 0 {
		h.Timeout = 5
	}
	if h.HealthyThreshold == 0 {
		h.HealthyThreshold = 3
	}
	if h.UnhealthyThreshold == 0 {
		h.UnhealthyThreshold = 3
	}
	if len(h.Codes) == 0 {
		h.Codes = []string{"http_2xx", "http_3xx"}
	}
	return h
}

// validate checks the documented ranges.
func (h HealthCheck) validate() error {
	var errs []error
	check := func(name string, v, lo, hi int) {
		if v != 0 && (v < lo || v > hi) {
			errs = append(errs, fmt.Errorf("%s %d is not in %d..%d", name, v, lo, hi))
		}
	}
	check("healthCheckInterval", h.Interval, 1, 50)
	check("healthCheckTimeout", h.Timeout, 1, 300)
	check("healthyThreshold", h.HealthyThreshold, 2, 10)
	check("unhealthyThreshold", h.UnhealthyThreshold, 2, 10)
	check("healthCheckConnectPort", h.ConnectPort, 0, 65535)
	if p := strings.ToUpper(h.Protocol); p != "" && p != "HTTP" && p != "TCP" {
		errs = append(errs, fmt.Errorf("healthCheckProtocol %q: the emulator checks by HTTP or TCP", h.Protocol))
	}
	if m := strings.ToUpper(h.Method); m != "" && m != "HEAD" && m != "GET" {
		errs = append(errs, fmt.Errorf("healthCheckMethod %q must be HEAD or GET", h.Method))
	}
	for _, c := range h.Codes {
		if !slices.Contains([]string{"http_2xx", "http_3xx", "http_4xx", "http_5xx"}, strings.ToLower(c)) {
			errs = append(errs, fmt.Errorf("healthCheckCodes: %q must be http_2xx, http_3xx, http_4xx or http_5xx", c))
		}
	}
	return errors.Join(errs...)
}

// expected renders the accepted codes as ExpectedResponse does ("HTTP_2xx,HTTP_3xx").
func (h HealthCheck) expected() string {
	out := make([]string, len(h.Codes))
	for i, c := range h.Codes {
		out[i] = strings.ToUpper(c[:4]) + strings.ToLower(c[4:])
	}
	return strings.Join(out, ",")
}

func (h HealthCheck) accepts(code int) bool {
	class := fmt.Sprintf("http_%dxx", code/100)
	return slices.ContainsFunc(h.Codes, func(c string) bool { return strings.EqualFold(c, class) })
}

// checkedGroup is a group of servers with the health check that covers it.
type checkedGroup struct {
	target  Target
	check   HealthCheck // defaults filled
	servers []*Server
}

// checkOfLocked returns the health check of t's servers (defaults filled).
// ok is false when nothing checks them: an SLB group no listener forwards to.
func (e *Emulator) checkOfLocked(t Target) (hc HealthCheck, ok bool) {
	if t.ServerGroup != "" {
		g := e.state.group(t.ServerGroup)
		if g == nil {
			return HealthCheck{}, false
		}
		if g.HealthCheck != nil {
			hc = *g.HealthCheck
		}
		return hc.withDefaults(false), true
	}
	lb := e.state.lb(t.LoadBalancer)
	if lb == nil {
		return HealthCheck{}, false
	}
	var first *SLBListener
	for _, l := range lb.Listeners {
		if l.VServerGroup == t.VServerGroup && (first == nil || l.Port < first.Port) {
			first = l
		}
	}
	if first == nil {
		return HealthCheck{}, false
	}
	return first.check(), true
}

// check is the listener's health check with its defaults filled.
func (l *SLBListener) check() HealthCheck {
	var hc HealthCheck
	if l.HealthCheck != nil {
		hc = *l.HealthCheck
	}
	if l.HealthCheckDisabled {
		off := false
		hc.Enabled = &off
	}
	p := slbProtocol(l.Protocol)
	return hc.withDefaults(p == "tcp" || p == "udp")
}

// groupsLocked lists every group of servers with its health check.
func (e *Emulator) groupsLocked() []checkedGroup {
	var out []checkedGroup
	add := func(t Target, servers []*Server) {
		if hc, ok := e.checkOfLocked(t); ok {
			out = append(out, checkedGroup{t, hc, servers})
		}
	}
	for _, g := range e.state.ServerGroups {
		add(Target{ServerGroup: g.ID}, g.Servers)
	}
	for _, lb := range e.state.LoadBalancers {
		add(Target{LoadBalancer: lb.ID}, lb.Servers)
		for _, vg := range lb.VServerGroups {
			add(Target{LoadBalancer: lb.ID, VServerGroup: vg.ID}, vg.Servers)
		}
	}
	return out
}

// statusOf is a server's status under hc.
func statusOf(hc HealthCheck, s *Server) string {
	switch {
	case !hc.enabled():
		return StatusUnavailable
	case s.Weight == 0:
		return StatusUnused
	case s.Health == "":
		return StatusInitial
	}
	return s.Health
}

// setWeightLocked changes a server's weight. A server that gets weight
// after having none starts its health checks over, in Initial (UNVERIFIED:
// weight-0 servers are not checked, so nothing is known of them).
func setWeightLocked(s *Server, w int) {
	if s.Weight == 0 && w > 0 {
		s.restart(StatusInitial)
	}
	s.Weight = w
}

// restart drops what the checks knew of s and sets its status.
func (s *Server) restart(status string) {
	s.Health, s.passes, s.fails, s.reason = status, 0, 0, nil
	s.slowFrom, s.slowUntil = time.Time{}, time.Time{}
	s.gen++
}

// SetHealthCheck replaces the health check of t: an ALB server group's
// HealthCheckConfig, or that of every SLB listener forwarding to the group
// (nil: the defaults). As after UpdateServerGroupAttribute, the weighted
// servers start their checks over in Initial (UNVERIFIED). It is how a test
// gives the LB a check that differs from what the app serves, e.g. another
// path or port.
func (e *Emulator) SetHealthCheck(t Target, hc *HealthCheck) error {
	if hc != nil {
		if err := hc.validate(); err != nil {
			return fmt.Errorf("health check of %s: %w", t, err)
		}
		c := *hc
		hc = &c
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(time.Now())
	list, err := e.state.servers(t)
	if err != nil {
		return fmt.Errorf("setting the health check: %w", err)
	}
	if t.ServerGroup != "" {
		e.state.group(t.ServerGroup).HealthCheck = hc
	} else {
		found := false
		for _, l := range e.state.lb(t.LoadBalancer).Listeners {
			if l.VServerGroup == t.VServerGroup {
				l.HealthCheck, l.HealthCheckDisabled, found = hc, false, true
			}
		}
		if !found {
			return fmt.Errorf("setting the health check: no listener of slb %s forwards to %s", t.LoadBalancer, t)
		}
	}
	restartChecksLocked(list)
	e.saveLocked()
	return nil
}

// slowStartLocked starts the slow start of s, which has just been declared
// healthy, when its group has SlowStartConfig on: "A new backend server
// enters slow start mode only if the server group already contains at least
// one healthy server that is not in slow start mode" ("Configure slow
// start", https://www.alibabacloud.com/help/en/slb/application-load-balancer/smooth-business-start-through-alb-slow-start).
// A server given weight again counts as new (UNVERIFIED). It lasts
// SlowStartDuration seconds of the emulator's clock; a server that turns
// unhealthy leaves it.
func (e *Emulator) slowStartLocked(t Target, s *Server, now time.Time) {
	g := e.state.group(t.ServerGroup)
	if g == nil || g.SlowStart == nil || !g.SlowStart.Enabled || g.SlowStart.Duration <= 0 {
		return
	}
	for _, o := range g.Servers {
		if o != s && o.Weight > 0 && o.Health == StatusHealthy && !now.Before(o.slowUntil) {
			s.slowFrom, s.slowUntil = now, now.Add(time.Duration(g.SlowStart.Duration)*e.unit())
			return
		}
	}
}

// restartChecksLocked puts the weighted servers back in Initial.
func restartChecksLocked(list []*Server) {
	for _, s := range list {
		if s.Weight > 0 {
			s.restart(StatusInitial)
		}
	}
}

// Health returns the health-check status of every server of t, with the
// reason of its last failed check while it is Initial or Unhealthy.
func (e *Emulator) Health(t Target) ([]Health, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(time.Now())
	list, err := e.state.servers(t)
	if err != nil {
		return nil, err
	}
	hc, ok := e.checkOfLocked(t)
	out := make([]Health, len(list))
	for i, s := range list {
		out[i] = Health{Server: *s, Status: StatusUnavailable}
		if time.Now().Before(s.slowUntil) {
			out[i].SlowStartUntil = s.slowUntil
		}
		if ok {
			out[i].Status = statusOf(hc, s)
		}
		if (out[i].Status == StatusInitial || out[i].Status == StatusUnhealthy) && s.reason != nil {
			r := *s.reason
			out[i].Reason = &r
		}
	}
	return out, nil
}

// Routable returns the servers of t that the data plane sends new requests
// to: the weighted servers that are healthy, or every weighted server when
// none is healthy (ALB's documented fail-open) or when checks are off. A
// healthy server in slow start has its weight scaled down by how much of
// the slow start has passed.
func (e *Emulator) Routable(t Target) ([]Server, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(time.Now())
	list, err := e.state.servers(t)
	if err != nil {
		return nil, err
	}
	hc, checked := e.checkOfLocked(t)
	now := time.Now()
	var weighted, healthy []Server
	for _, s := range list {
		if s.Weight <= 0 {
			continue
		}
		weighted = append(weighted, *s)
		if checked && hc.enabled() && statusOf(hc, s) == StatusHealthy {
			c := *s
			if now.Before(s.slowUntil) {
				// Slow start: the share grows linearly (UNVERIFIED for
				// ALB: its page says "gradually") from 1.
				c.Weight = max(1, int(float64(s.Weight)*float64(now.Sub(s.slowFrom))/float64(s.slowUntil.Sub(s.slowFrom))))
			}
			healthy = append(healthy, c)
		}
	}
	if !checked || !hc.enabled() || len(healthy) == 0 {
		return weighted, nil
	}
	return healthy, nil
}

// BlockServers cuts the emulated load balancer off from the servers at the
// given "ip:port" addresses, as a security group or iptables rule that
// drops the LB's addresses does: from now on its health checks of them fail
// (CONNECT_TIMEOUT) and every request the data plane forwards to them fails
// (504), while anyone else — Tandem's own probes — still reaches them.
// Connections already forwarded continue. The emulator does not wait out
// the timeouts: a blocked check or request fails at once.
func (e *Emulator) BlockServers(addrs ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range addrs {
		e.blocked[a] = true
	}
}

// UnblockServers undoes BlockServers for the given addresses.
func (e *Emulator) UnblockServers(addrs ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, a := range addrs {
		delete(e.blocked, a)
	}
}

func (e *Emulator) isBlocked(addr string) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.blocked[addr]
}

func addrOf(s *Server) string { return net.JoinHostPort(s.IP, strconv.Itoa(s.Port)) }

// CheckHealth runs one health-check round now, over every weighted server
// of every group whose checks are on, and returns when its results are
// applied: the deterministic hook for tests. A server already being checked
// is skipped.
func (e *Emulator) CheckHealth(ctx context.Context) {
	e.round(ctx, func(checkedGroup) bool { return true })
}

// RunHealthChecks checks every group on its own HealthCheckInterval until
// ctx ends, then waits for the checks under way. One second of the
// settings lasts Options.HealthCheckUnit.
func (e *Emulator) RunHealthChecks(ctx context.Context) {
	unit := e.unit()
	t := time.NewTicker(unit)
	defer t.Stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	for tick := 0; ; tick++ {
		wg.Go(func() {
			e.round(ctx, func(g checkedGroup) bool { return tick%g.check.Interval == 0 })
		})
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (e *Emulator) unit() time.Duration {
	if e.opts.HealthCheckUnit > 0 {
		return e.opts.HealthCheckUnit
	}
	return time.Second
}

type probe struct {
	server  *Server
	group   Target
	gen     int
	check   HealthCheck
	addr    string // where the check connects
	forced  bool   // the server fails its checks (SetHealthy false)
	blocked bool
}

func (e *Emulator) round(ctx context.Context, due func(checkedGroup) bool) {
	e.mu.Lock()
	e.advanceLocked(time.Now())
	var probes []probe
	for _, g := range e.groupsLocked() {
		if !g.check.enabled() || !due(g) {
			continue
		}
		for _, s := range g.servers {
			if s.Weight == 0 || s.checking {
				continue // weight 0: not checked (ALB health check doc)
			}
			port := s.Port
			if g.check.ConnectPort != 0 {
				port = g.check.ConnectPort
			}
			s.checking = true
			probes = append(probes, probe{server: s, group: g.target, gen: s.gen, check: g.check,
				addr: net.JoinHostPort(s.IP, strconv.Itoa(port)), forced: s.Unhealthy, blocked: e.blocked[addrOf(s)]})
		}
	}
	unit := e.unit()
	e.mu.Unlock()

	results := make([]*Reason, len(probes))
	var wg sync.WaitGroup
	for i, p := range probes {
		wg.Go(func() { results[i] = probeOnce(ctx, p, unit) })
	}
	wg.Wait()

	e.mu.Lock()
	defer e.mu.Unlock()
	now := time.Now()
	changed := false
	for i, p := range probes {
		s := p.server
		s.checking = false
		if ctx.Err() != nil || s.gen != p.gen || s.Weight == 0 {
			continue // stopped, or the server lost or regained weight meanwhile
		}
		before := s.Health
		if r := results[i]; r == nil {
			s.passes, s.fails = s.passes+1, 0
			if s.Health != StatusHealthy && s.passes >= p.check.HealthyThreshold {
				s.Health, s.reason = StatusHealthy, nil
				e.slowStartLocked(p.group, s, now)
			}
		} else {
			s.passes, s.fails, s.reason = 0, s.fails+1, r
			if s.Health != StatusUnhealthy && s.fails >= p.check.UnhealthyThreshold {
				s.Health, s.slowFrom, s.slowUntil = StatusUnhealthy, time.Time{}, time.Time{}
			}
		}
		changed = changed || s.Health != before
	}
	if changed {
		e.saveLocked()
	}
}

// probeOnce checks one server: nil when it passes, else why it failed. The
// timeout is HealthCheckTimeout seconds of the emulator's clock, but never
// less than 1 s of real time, so a busy test machine does not fail checks.
func probeOnce(ctx context.Context, p probe, unit time.Duration) *Reason {
	switch {
	case p.blocked:
		return &Reason{ReasonCode: "CONNECT_TIMEOUT"}
	case p.forced:
		return &Reason{ReasonCode: "RESPONSE_MISMATCH", ExpectedResponse: p.check.expected(), ActualResponse: "503"}
	}
	ctx, cancel := context.WithTimeout(ctx, max(time.Duration(p.check.Timeout)*unit, time.Second))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return &Reason{ReasonCode: "CONNECT_TIMEOUT"}
		}
		return &Reason{ReasonCode: "CONNECT_FAILED"}
	}
	if p.check.Protocol == "TCP" {
		conn.Close()
		return nil
	}
	// HTTP: a short-lived connection per check (ALB health check doc).
	tr := &http.Transport{DisableKeepAlives: true, DialContext: func(context.Context, string, string) (net.Conn, error) { return conn, nil }}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, p.check.Method, "http://"+p.addr+p.check.Path, nil)
	if err != nil {
		conn.Close()
		return &Reason{ReasonCode: "SEND_REQUEST_FAILED"}
	}
	req.Header.Set("User-Agent", "tandem-emulator-health-check")
	res, err := tr.RoundTrip(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) || os.IsTimeout(err) {
			return &Reason{ReasonCode: "RECV_RESPONSE_TIMEOUT"}
		}
		return &Reason{ReasonCode: "RECV_RESPONSE_FAILED"}
	}
	res.Body.Close()
	if !p.check.accepts(res.StatusCode) {
		return &Reason{ReasonCode: "RESPONSE_MISMATCH", ExpectedResponse: p.check.expected(), ActualResponse: strconv.Itoa(res.StatusCode)}
	}
	return nil
}
