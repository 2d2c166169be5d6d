package stage

import (
	"fmt"
	"net"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/spec"
)

// A service with Preview set has a preview route behind its load balancer,
// as a user would set one up (README "Preview route"), bound in its spec
// with preview: true:
//
//   - HAProxy: backend <name>_preview, with the same servers, selected in
//     the service's frontend by an ACL on PreviewHeader;
//   - ALB: server group sgp-<name>-preview, reached by a forwarding rule of
//     the service's listener on PreviewHeader;
//   - SLB: a test listener on port previewListenerPort forwarding to vServer
//     group rsp-<name>-preview, with a frontend of its own.
//
// PreviewURL is where testers send requests (with the header set; the SLB
// test listener routes without it).
const (
	PreviewHeader       = "X-Tandem-Preview"
	PreviewHeaderValue  = "1"
	previewListenerPort = 8080
)

// PreviewURL is where a service's preview route is reached (send
// PreviewHeader with it): the main frontend for HAProxy and ALB, the test
// listener's for SLB; "" for a service without a preview route.
func (s *Stage) PreviewURL(service string) string { return s.previews[service] }

// previewHAProxy returns the preview backend of main backend b (the same
// servers and weights) and routes PreviewHeader from b's frontend to it.
func previewHAProxy(b *haproxytest.Backend) haproxytest.Backend {
	p := haproxytest.Backend{Name: b.Name + "_preview", Check: b.Check, Servers: append([]haproxytest.Server(nil), b.Servers...)}
	b.Routes = append(b.Routes, haproxytest.Route{Header: PreviewHeader, Value: PreviewHeaderValue, Backend: p.Name})
	return p
}

// previewAlibaba adds the preview server group (ALB, with its forwarding
// rule) or vServer group (SLB, with its test listener) of svc to state,
// whose last server group or load balancer is svc's own; servers are its
// main group's, copied with their weights.
func previewAlibaba(state *emulator.State, svc Service, servers []*emulator.Server, check emulator.HealthCheck) {
	var copies []*emulator.Server
	for _, srv := range servers {
		copies = append(copies, &emulator.Server{ID: srv.ID, IP: srv.IP, Port: srv.Port, Weight: srv.Weight})
	}
	if svc.LB == spec.KindALB {
		group := "sgp-" + svc.Name + "-preview"
		state.ServerGroups = append(state.ServerGroups, &emulator.ServerGroup{ID: group, Name: svc.Name + "-preview", Servers: copies, HealthCheck: &check})
		state.Rules = append(state.Rules, &emulator.Rule{ID: "rule-" + svc.Name + "-preview", Listener: "lsn-" + svc.Name, Priority: 1,
			Conditions:   []emulator.RuleCondition{{Type: "Header", Key: PreviewHeader, Values: []string{PreviewHeaderValue}}},
			ServerGroups: []emulator.ServerGroupTuple{{ServerGroup: group}}})
		return
	}
	lb := state.LoadBalancers[len(state.LoadBalancers)-1]
	group := "rsp-" + svc.Name + "-preview"
	lb.VServerGroups = append(lb.VServerGroups, &emulator.VServerGroup{ID: group, Name: svc.Name + "-preview", Servers: copies})
	lb.Listeners = append(lb.Listeners, &emulator.SLBListener{Port: previewListenerPort, Protocol: "http", VServerGroup: group, HealthCheck: &check})
}

// previewEntry serves the preview route of svc behind the Alibaba emulator
// and records its URL; main is the service's own entry.
func (s *Stage) previewEntry(emu *emulator.Emulator, svc Service, main string) error {
	if svc.LB != spec.KindSLB {
		s.previews[svc.Name] = main
		return nil
	}
	f, err := emu.NewSLBListenerFrontend("lb-"+svc.Name, previewListenerPort, s.opts.Timing.DrainTimeout)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	s.bg.Go(func() { _ = f.Serve(s.ctx, ln) })
	s.previews[svc.Name] = "http://" + ln.Addr().String()
	return nil
}

// previewBinding is the preview binding of svc in flow style ("" for none).
func previewBinding(svc Service) string {
	if !svc.Preview {
		return ""
	}
	switch svc.LB {
	case spec.KindHAProxy:
		return fmt.Sprintf("{haproxy: %s, backend: %s_preview, preview: true}", providerName, svc.Name)
	case spec.KindALB:
		return fmt.Sprintf("{alb: %s, serverGroup: sgp-%s-preview, listener: lsn-%s, preview: true}", providerName, svc.Name, svc.Name)
	case spec.KindSLB:
		return fmt.Sprintf("{slb: %s, loadBalancer: lb-%s, vServerGroup: rsp-%s-preview, listenerPort: %d, preview: true}", providerName, svc.Name, svc.Name, previewListenerPort)
	}
	return ""
}
