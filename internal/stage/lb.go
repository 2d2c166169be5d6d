package stage

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/spec"
)

// The AccessKey of the stage's Alibaba emulator (it accepts no other) and
// the environment variables the provider configuration reads it from;
// Start sets them in the process environment.
const (
	alibabaKeyID        = "LTAIstageemulator"
	alibabaKeySecret    = "stage-emulator-secret"
	alibabaKeyIDEnv     = "TANDEM_STAGE_ALIBABA_AK_ID"
	alibabaKeySecretEnv = "TANDEM_STAGE_ALIBABA_AK_SECRET"
)

// javaCheckInterval is HAProxy's check interval when a Java service is
// behind it.
const javaCheckInterval = time.Second

// albJobDelay is how long the emulated ALB keeps a weight change
// Processing; the real one takes seconds.
const albJobDelay = 300 * time.Millisecond

// DefaultLBHealthCheck is the emulated load balancers' health check of the
// apps: GET of the apps' health path (the same as the specs' health.http),
// two passes to become healthy, two failures to become unhealthy, every
// 2 s of the emulator's clock (defaultLBHealthCheckUnit each).
var DefaultLBHealthCheck = emulator.HealthCheck{Path: "/healthz", Method: "GET", Interval: 2, HealthyThreshold: 2, UnhealthyThreshold: 2}

const defaultLBHealthCheckUnit = 25 * time.Millisecond

// loadBalancers are the stage's load balancers.
type loadBalancers struct {
	haproxy *haproxytest.HAProxy
	alibaba *alibabaSide
}

// alibabaSide is the Alibaba OpenAPI emulator (ALB and SLB) with a data
// plane frontend per service.
type alibabaSide struct {
	emu      *emulator.Emulator
	provider spec.AlibabaProvider
	addrs    map[string]map[spec.Group][]string // ip:port of the apps behind each service's LB, by group
	calls    *lbCalls                           // the ALB weight changes it received (LBCalls)
}

// startLoadBalancers starts the LBs the services need, with the active
// group of each at weight 100 and the idle one at 0, and a frontend per
// service.
func (s *Stage) startLoadBalancers(apps instances) (*loadBalancers, error) {
	lbs := &loadBalancers{}
	var backends []haproxytest.Backend
	java := false
	var alb []Service
	for _, svc := range s.opts.Services {
		switch svc.LB {
		case spec.KindHAProxy:
			b := haproxytest.Backend{Name: svc.Name}
			if svc.Java {
				b.Check = "/actuator/health"
				java = true
			}
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				for _, in := range apps[svc.Name][g] {
					b.Servers = append(b.Servers, haproxytest.Server{Name: in.ID, Addr: in.Addr(), Weight: weight(svc, g)})
				}
			}
			if svc.Preview {
				backends = append(backends, previewHAProxy(&b))
			}
			backends = append(backends, b)
		case spec.KindALB, spec.KindSLB:
			alb = append(alb, svc)
		}
	}
	if len(backends) > 0 {
		dir := filepath.Join(s.opts.Dir, "haproxy")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
		cfg := haproxytest.Config{Backends: backends}
		if java {
			// A JVM on two busy cores may take longer than the default
			// 100 ms to answer a check (also its time-out): a check
			// that times out twice takes a healthy server down.
			cfg.CheckInterval = javaCheckInterval
		}
		h, err := haproxytest.Launch(dir, cfg)
		if err != nil {
			return nil, fmt.Errorf("starting haproxy: %w", err)
		}
		lbs.haproxy = h
		s.closers = append(s.closers, func() error { h.Stop(); return nil })
		for _, b := range backends {
			s.entries[b.Name] = h.URL(b.Name)
			if len(b.Routes) > 0 {
				s.previews[b.Name] = h.URL(b.Name)
			}
		}
		s.log.Info("stage haproxy running", "socket", h.Socket)
	}
	if len(alb) > 0 {
		a, err := s.startAlibaba(alb, apps)
		if err != nil {
			return nil, err
		}
		lbs.alibaba = a
	}
	return lbs, nil
}

func weight(svc Service, g spec.Group) int {
	if g == svc.Active {
		return spec.DefaultWeight
	}
	return 0
}

func (s *Stage) startAlibaba(services []Service, apps instances) (*alibabaSide, error) {
	for env, v := range map[string]string{alibabaKeyIDEnv: alibabaKeyID, alibabaKeySecretEnv: alibabaKeySecret} {
		if err := os.Setenv(env, v); err != nil {
			return nil, err
		}
	}
	unit := s.opts.LBHealthCheckUnit
	if unit <= 0 {
		unit = defaultLBHealthCheckUnit
	}
	check := DefaultLBHealthCheck
	if s.opts.LBHealthCheck != nil {
		check = *s.opts.LBHealthCheck
	}
	emu := emulator.New(emulator.Options{Keys: []emulator.Key{{ID: alibabaKeyID, Secret: alibabaKeySecret}},
		JobDelay: albJobDelay, HealthCheckUnit: unit, Log: s.log})
	var state emulator.State
	targets := map[string]emulator.Target{}
	addrs := map[string]map[spec.Group][]string{}
	for _, svc := range services {
		var servers []*emulator.Server
		addrs[svc.Name] = map[spec.Group][]string{}
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for _, in := range apps[svc.Name][g] {
				servers = append(servers, &emulator.Server{ID: in.ID, IP: in.IP, Port: in.Port, Weight: weight(svc, g)})
				addrs[svc.Name][g] = append(addrs[svc.Name][g], in.Addr())
			}
		}
		if svc.LB == spec.KindALB {
			group := "sgp-" + svc.Name
			state.ServerGroups = append(state.ServerGroups, &emulator.ServerGroup{ID: group, Name: svc.Name, Servers: servers, HealthCheck: &check})
			state.Listeners = append(state.Listeners, &emulator.Listener{ID: "lsn-" + svc.Name, Port: 80, ServerGroup: group})
			targets[svc.Name] = emulator.Target{ServerGroup: group}
			if svc.Preview {
				previewAlibaba(&state, svc, servers, check)
			}
			continue
		}
		lb, group := "lb-"+svc.Name, "rsp-"+svc.Name
		state.LoadBalancers = append(state.LoadBalancers, &emulator.LoadBalancer{ID: lb, Name: svc.Name,
			VServerGroups: []*emulator.VServerGroup{{ID: group, Name: svc.Name, Servers: servers}},
			Listeners:     []*emulator.SLBListener{{Port: 80, Protocol: "http", VServerGroup: group, HealthCheck: &check}}})
		targets[svc.Name] = emulator.Target{LoadBalancer: lb, VServerGroup: group}
		if svc.Preview {
			previewAlibaba(&state, svc, servers, check)
		}
	}
	if err := emu.Seed(state); err != nil {
		return nil, err
	}
	calls := &lbCalls{}
	endpoint, err := s.serve(calls.wrap(emu))
	if err != nil {
		return nil, fmt.Errorf("serving the alibaba emulator: %w", err)
	}
	s.bg.Go(func() { emu.RunHealthChecks(s.ctx) })
	for name, t := range targets {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		// The LB's own connection drain outlasts Tandem's drain. An ALB
		// service is entered through its listener, so forwarding rules
		// added to it apply.
		f := emu.NewFrontend(t, s.opts.Timing.DrainTimeout)
		if t.ServerGroup != "" {
			if f, err = emu.NewListenerFrontend("lsn-"+name, s.opts.Timing.DrainTimeout); err != nil {
				return nil, err
			}
		}
		s.bg.Go(func() { _ = f.Serve(s.ctx, ln) })
		s.entries[name] = "http://" + ln.Addr().String()
	}
	for _, svc := range services {
		if svc.Preview {
			if err := s.previewEntry(emu, svc, s.entries[svc.Name]); err != nil {
				return nil, err
			}
		}
	}
	s.log.Info("stage alibaba emulator running", "endpoint", endpoint)
	return &alibabaSide{emu: emu, addrs: addrs, calls: calls, provider: spec.AlibabaProvider{
		Name: providerName, Region: "cn-hangzhou", Endpoint: endpoint, Protocol: "http",
		AccessKeyIDEnv: alibabaKeyIDEnv, AccessKeySecretEnv: alibabaKeySecretEnv, SignatureVersion: "v3",
		ConnectTimeout: spec.Duration(2 * time.Second), ReadTimeout: spec.Duration(5 * time.Second),
		JobTimeout: spec.Duration(30 * time.Second), RetryTimeout: spec.Duration(30 * time.Second),
	}}, nil
}

// BlockLB cuts the emulated ALB/SLB off from the apps of group g of the
// service (blocked true), or lets it reach them again: while cut off, the
// LB's health checks of them and the requests it forwards to them fail, as
// when a security group drops the LB's addresses, and Tandem's own probes
// still reach them (emulator.BlockServers).
func (s *Stage) BlockLB(service string, g spec.Group, blocked bool) error {
	if s.lbs.alibaba == nil || s.lbs.alibaba.addrs[service] == nil {
		return fmt.Errorf("service %s is not behind the Alibaba emulator", service)
	}
	addrs := s.lbs.alibaba.addrs[service][g]
	if blocked {
		s.lbs.alibaba.emu.BlockServers(addrs...)
	} else {
		s.lbs.alibaba.emu.UnblockServers(addrs...)
	}
	return nil
}

// binding is the traffic binding of svc in flow style ("" for none).
func (lbs *loadBalancers) binding(svc Service) string {
	switch svc.LB {
	case spec.KindHAProxy:
		return fmt.Sprintf("{haproxy: %s, backend: %s}", providerName, svc.Name)
	case spec.KindALB:
		return fmt.Sprintf("{alb: %s, serverGroup: sgp-%s, listener: lsn-%s}", providerName, svc.Name, svc.Name)
	case spec.KindSLB:
		return fmt.Sprintf("{slb: %s, loadBalancer: lb-%s, vServerGroup: rsp-%s, listenerPort: 80}", providerName, svc.Name, svc.Name)
	}
	return ""
}

// GroupOf returns the group of the app that answered as backend (the
// X-Backend header: the instance id), e.g. "web-b2" -> B.
func GroupOf(backend string) spec.Group {
	i := strings.LastIndex(backend, "-")
	if i < 0 || i+1 >= len(backend) {
		return ""
	}
	return spec.Group(strings.ToUpper(backend[i+1 : i+2]))
}
