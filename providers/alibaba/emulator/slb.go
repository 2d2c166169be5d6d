package emulator

import (
	"bytes"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

// SLB (CLB, version 2014-05-15) actions. All are synchronous: the answer
// reflects the new state (SDK doc: no SLB answer carries a JobId).
var slbActions = map[string]func(*Emulator, *request) (any, *apiError){
	"DescribeVServerGroupAttribute": (*Emulator).describeVServerGroupAttribute,
	"SetVServerGroupAttribute":      (*Emulator).setVServerGroupAttribute,
	"DescribeLoadBalancerAttribute": (*Emulator).describeLoadBalancerAttribute,
	"SetBackendServers":             (*Emulator).setBackendServers,
	"DescribeHealthStatus":          (*Emulator).describeHealthStatus,
	"DescribeLoadBalancerHTTPListenerAttribute": func(e *Emulator, r *request) (any, *apiError) {
		return e.describeListenerAttribute(r, "http")
	},
	"DescribeLoadBalancerTCPListenerAttribute": func(e *Emulator, r *request) (any, *apiError) {
		return e.describeListenerAttribute(r, "tcp")
	},
}

// slbMaxServersPerCall: "You can specify at most 20 backend servers in each
// call" (SDK doc, SetVServerGroupAttributeRequest.BackendServers and
// SetBackendServersRequest.BackendServers). cloud-provider-alibaba-cloud
// batches 39 (MaxBackendNum), so the real limit may be higher (UNVERIFIED); the
// emulator enforces the documented 20.
const slbMaxServersPerCall = 20

// slbRegion checks RegionId, which every SLB call requires (SDK doc: "This
// parameter is required"). The code for a missing RegionId is UNVERIFIED
// (MissingParameter chosen); a resource of another region is not found.
func (e *Emulator) slbRegion(r *request) *apiError {
	if r.get("RegionId") == "" {
		return errf(http.StatusBadRequest, "MissingParameter", "The input parameter \"RegionId\" that is mandatory for processing this request is not supplied.")
	}
	return nil
}

// lbNotFound: InvalidLoadBalancerId.NotFound (Terraform's not-found
// check for SLB); HTTP 404 UNVERIFIED.
func lbNotFound(id string) *apiError {
	return errf(http.StatusNotFound, "InvalidLoadBalancerId.NotFound", "The specified LoadBalancerId %s does not exist.", id)
}

func (e *Emulator) lbLocked(r *request) (*LoadBalancer, *apiError) {
	if aerr := e.slbRegion(r); aerr != nil {
		return nil, aerr
	}
	id := r.get("LoadBalancerId")
	lb := e.state.lb(id)
	if lb == nil || r.get("RegionId") != e.opts.Region {
		return nil, lbNotFound(id)
	}
	return lb, nil
}

// vgroupLocked finds a vServer group. Not found: code InvalidParameter with
// "The specified VServerGroupId does not exist" (Terraform alicloud
// errors.go VServerGroupNotFoundMessage); HTTP 400 UNVERIFIED.
func (e *Emulator) vgroupLocked(r *request) (*LoadBalancer, *VServerGroup, *apiError) {
	if aerr := e.slbRegion(r); aerr != nil {
		return nil, nil, aerr
	}
	id := r.get("VServerGroupId")
	if r.get("RegionId") == e.opts.Region {
		for _, lb := range e.state.LoadBalancers {
			if vg := lb.vgroup(id); vg != nil {
				return lb, vg, nil
			}
		}
	}
	return nil, nil, errf(http.StatusBadRequest, "InvalidParameter", "The specified VServerGroupId does not exist.")
}

type slbServer struct {
	ServerID    string `json:"ServerId"`
	ServerIP    string `json:"ServerIp,omitempty"`
	Port        int    `json:",omitempty"`
	Weight      int
	Type        string
	Description string `json:",omitempty"`
}

func slbServers(list []*Server, withPort bool) map[string]any {
	out := make([]slbServer, len(list))
	for i, s := range list {
		out[i] = slbServer{ServerID: s.ID, ServerIP: s.IP, Weight: s.Weight, Type: slbType(s.Type), Description: s.Description}
		if withPort {
			out[i].Port = s.Port
		}
	}
	return map[string]any{"BackendServer": out}
}

func slbType(t string) string {
	if t == "" {
		return "ecs"
	}
	return t
}

// describeVServerGroupAttribute: BackendServers.BackendServer[] with
// ServerId, ServerIp, Port, Weight, Type, Description; no pagination (SDK doc).
func (e *Emulator) describeVServerGroupAttribute(r *request) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb, vg, aerr := e.vgroupLocked(r)
	if aerr != nil {
		return nil, aerr
	}
	return map[string]any{
		"VServerGroupId":   vg.ID,
		"VServerGroupName": vg.Name,
		"LoadBalancerId":   lb.ID,
		"BackendServers":   slbServers(vg.Servers, true),
	}, nil
}

// setVServerGroupAttribute changes only weights, descriptions and the
// group's name (SDK doc, SetVServerGroupAttributeRequest.BackendServers).
func (e *Emulator) setVServerGroupAttribute(r *request) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb, vg, aerr := e.vgroupLocked(r)
	if aerr != nil {
		return nil, aerr
	}
	if r.get("BackendServers") != "" {
		if aerr := e.setWeightsLocked(r, lb, vg); aerr != nil {
			return nil, aerr
		}
	}
	if name := r.get("VServerGroupName"); name != "" {
		vg.Name = name
	}
	e.saveLocked()
	return map[string]any{
		"VServerGroupId":   vg.ID,
		"VServerGroupName": vg.Name,
		// The answer echoes the backend servers (SDK response model); echoing
		// the whole group rather than only those named is UNVERIFIED.
		"BackendServers": slbServers(vg.Servers, true),
	}, nil
}

// describeLoadBalancerAttribute: the default server group is
// BackendServers.BackendServer[] with ServerId, ServerIp, Type, Description,
// Weight and no Port (SDK response model).
func (e *Emulator) describeLoadBalancerAttribute(r *request) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb, aerr := e.lbLocked(r)
	if aerr != nil {
		return nil, aerr
	}
	ports := []int{}
	protos := []map[string]any{}
	for _, l := range lb.Listeners {
		ports = append(ports, l.Port)
		protos = append(protos, map[string]any{"ListenerPort": l.Port, "ListenerProtocol": slbProtocol(l.Protocol)})
	}
	return map[string]any{
		"LoadBalancerId":           lb.ID,
		"LoadBalancerName":         lb.Name,
		"LoadBalancerStatus":       "active",
		"RegionId":                 e.opts.Region,
		"AddressType":              "intranet",
		"NetworkType":              "vpc",
		"BackendServers":           slbServers(lb.Servers, false),
		"ListenerPorts":            map[string]any{"ListenerPort": ports},
		"ListenerPortsAndProtocol": map[string]any{"ListenerPortAndProtocol": protos},
	}, nil
}

// setBackendServers sets weights in the default server group. Its answer
// carries Weight as a string (SDK model SetBackendServersResponseBody...
// Weight *string).
func (e *Emulator) setBackendServers(r *request) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb, aerr := e.lbLocked(r)
	if aerr != nil {
		return nil, aerr
	}
	if aerr := e.setWeightsLocked(r, lb, nil); aerr != nil {
		return nil, aerr
	}
	e.saveLocked()
	type server struct {
		ServerID    string `json:"ServerId"`
		Type        string
		Weight      string
		Description string `json:",omitempty"`
	}
	out := make([]server, len(lb.Servers))
	for i, s := range lb.Servers {
		out[i] = server{s.ID, slbType(s.Type), strconv.Itoa(s.Weight), s.Description}
	}
	return map[string]any{"LoadBalancerId": lb.ID, "BackendServers": map[string]any{"BackendServer": out}}, nil
}

// setWeightsLocked applies a BackendServers JSON list to group. The list is
// a JSON string with string values in the docs and numbers in
// cloud-provider-alibaba-cloud; both are accepted.
func (e *Emulator) setWeightsLocked(r *request, lb *LoadBalancer, vg *VServerGroup) *apiError {
	group, vserver, target := lb.Servers, false, Target{LoadBalancer: lb.ID}
	if vg != nil {
		group, vserver, target.VServerGroup = vg.Servers, true, vg.ID
	}
	// BackendServer.configuring: "A previous configuration of the load
	// balancer is pending" when another change of the same load balancer
	// is under way, whichever group it touches (Terraform SlbIsBusy;
	// a note in yunion cloudpods: concurrent changes to different groups
	// of one SLB fail the same way). HTTP 400 UNVERIFIED.
	if until, ok := e.slbBusy[lb.ID]; ok && r.now.Before(until) {
		return errf(http.StatusBadRequest, "BackendServer.configuring", "A previous configuration of the load balancer is pending, please try again later.")
	}
	d := json.NewDecoder(bytes.NewReader([]byte(r.get("BackendServers"))))
	d.UseNumber()
	var items []map[string]any
	if err := d.Decode(&items); err != nil || len(items) == 0 {
		return errf(http.StatusBadRequest, "InvalidParameter", "The parameter BackendServers is not a JSON list of backend servers.")
	}
	if len(items) > slbMaxServersPerCall {
		// The limit is documented; the code for exceeding it is UNVERIFIED.
		return errf(http.StatusBadRequest, "InvalidParameter", "At most %d backend servers in each call, got %d.", slbMaxServersPerCall, len(items))
	}
	type change struct {
		server *Server
		weight *int
		desc   *string
	}
	var changes []change
	for i, it := range items {
		id := str(it["ServerId"])
		if id == "" {
			return errf(http.StatusBadRequest, "InvalidParameter", "BackendServers[%d].ServerId is required.", i)
		}
		c := change{}
		if v, ok := it["Weight"]; ok {
			// Weight 0..100 (SDK doc).
			n, err := strconv.Atoi(str(v))
			if err != nil || n < 0 || n > 100 {
				return errf(http.StatusBadRequest, "InvalidParameter", "BackendServers[%d].Weight must be 0..100.", i)
			}
			c.weight = &n
		}
		port := 0
		if v, ok := it["Port"]; ok && vserver {
			n, err := strconv.Atoi(str(v))
			if err != nil || n < 1 || n > 65535 {
				return errf(http.StatusBadRequest, "InvalidParameter", "BackendServers[%d].Port must be 1..65535.", i)
			}
			port = n
		}
		ip := str(it["ServerIp"])
		typ := slbType(str(it["Type"]))
		// Type ecs (default), eni or eci; ServerIp required for eni/eci (SDK doc).
		if !slices.Contains([]string{"ecs", "eni", "eci"}, typ) {
			return errf(http.StatusBadRequest, "InvalidParameter", "BackendServers[%d].Type must be ecs, eni or eci.", i)
		}
		if typ != "ecs" && ip == "" {
			return errf(http.StatusBadRequest, "InvalidParameter", "BackendServers[%d].ServerIp is required for type %s.", i, typ)
		}
		if v, ok := it["Description"]; ok {
			s := str(v)
			c.desc = &s
		}
		for _, s := range group {
			if s.ID == id && (port == 0 || s.Port == port) && (ip == "" || s.IP == ip) {
				if c.server != nil {
					return errf(http.StatusBadRequest, "InvalidParameter", "BackendServers[%d]: server %s is in the group several times; name Port or ServerIp.", i, id)
				}
				c.server = s
			}
		}
		if c.server == nil {
			// Naming a server that is not a member: UNVERIFIED code
			// (InvalidParameter chosen, as for a missing vServer group).
			return errf(http.StatusBadRequest, "InvalidParameter", "The backend server %s is not in the server group.", id)
		}
		changes = append(changes, c)
	}
	for _, c := range changes {
		if c.weight != nil {
			setWeightLocked(c.server, *c.weight)
		}
		if c.desc != nil {
			c.server.Description = *c.desc
		}
	}
	e.noteLocked(target)
	if e.opts.SLBBusy > 0 {
		e.slbBusy[lb.ID] = r.now.Add(e.opts.SLBBusy)
	}
	return nil
}

// str renders a decoded JSON value (string or number) as a string.
func str(v any) string {
	switch x := v.(type) {
	case string:
		return x
	case json.Number:
		return x.String()
	case nil:
		return ""
	}
	b, _ := json.Marshal(v)
	return string(b)
}

func slbProtocol(p string) string {
	if p == "" {
		return "tcp"
	}
	return strings.ToLower(p)
}

// describeHealthStatus: one entry per listener and backend server, with
// ServerHealthStatus normal | abnormal | unavailable (unavailable: no health
// check, https://developer.aliyun.com/ask/208742). ListenerPort and
// ListenerProtocol filter. Initial is reported abnormal and Unused (weight 0)
// unavailable (UNVERIFIED, see health.go).
func (e *Emulator) describeHealthStatus(r *request) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb, aerr := e.lbLocked(r)
	if aerr != nil {
		return nil, aerr
	}
	type entry struct {
		ServerID           string `json:"ServerId"`
		ServerIP           string `json:"ServerIp"`
		Port               int    `json:",omitempty"`
		ListenerPort       int
		Protocol           string
		ServerHealthStatus string
	}
	if p := r.get("ListenerPort"); p != "" && !slices.ContainsFunc(lb.Listeners, func(l *SLBListener) bool { return strconv.Itoa(l.Port) == p }) {
		// ListenerNotFound, HTTP 404: CLB's error-code list names it for
		// DescribeHealthStatus (error table); that a missing listener port is
		// what triggers it is UNVERIFIED.
		return nil, errf(http.StatusNotFound, "ListenerNotFound", "The specified listener %s does not exist.", p)
	}
	out := []entry{}
	for _, l := range lb.Listeners {
		if p := r.get("ListenerPort"); p != "" && p != strconv.Itoa(l.Port) {
			continue
		}
		if p := r.get("ListenerProtocol"); p != "" && !strings.EqualFold(p, slbProtocol(l.Protocol)) {
			continue
		}
		servers := lb.Servers
		if l.VServerGroup != "" {
			servers = lb.vgroup(l.VServerGroup).Servers
		}
		// The group's status (checked once per group, see health.go),
		// unless this listener's own checks are off.
		hc, _ := e.checkOfLocked(Target{LoadBalancer: lb.ID, VServerGroup: l.VServerGroup})
		if !l.check().enabled() {
			hc = l.check()
		}
		for _, s := range servers {
			out = append(out, entry{s.ID, s.IP, s.Port, l.Port, slbProtocol(l.Protocol), slbStatus(statusOf(hc, s))})
		}
	}
	return map[string]any{"BackendServers": map[string]any{"BackendServer": out}}, nil
}

// slbStatus maps a health status to CLB's ServerHealthStatus.
func slbStatus(status string) string {
	switch status {
	case StatusHealthy:
		return "normal"
	case StatusInitial, StatusUnhealthy:
		return "abnormal"
	}
	return "unavailable"
}
