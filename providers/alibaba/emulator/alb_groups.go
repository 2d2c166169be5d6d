package emulator

import (
	"net/http"
	"strconv"
	"strings"
)

// SlowStart is a server group's SlowStartConfig (SDK doc,
// ListServerGroupsResponseBodyServerGroupsSlowStartConfig): after a new
// server is declared healthy its share of new requests grows over Duration
// seconds (see slowStartLocked).
type SlowStart struct {
	Enabled  bool `json:"slowStartEnabled"`
	Duration int  `json:"slowStartDuration,omitempty"` // seconds, 30..900
}

// albHealthCheckConfig renders a group's settings as HealthCheckConfig
// (SDK ListServerGroupsResponseBodyServerGroupsHealthCheckConfig).
func albHealthCheckConfig(hc HealthCheck) map[string]any {
	return map[string]any{
		"HealthCheckEnabled":     hc.enabled(),
		"HealthCheckProtocol":    hc.Protocol,
		"HealthCheckMethod":      hc.Method,
		"HealthCheckPath":        hc.Path,
		"HealthCheckConnectPort": hc.ConnectPort,
		"HealthCheckInterval":    hc.Interval,
		"HealthCheckTimeout":     hc.Timeout,
		"HealthyThreshold":       hc.HealthyThreshold,
		"UnhealthyThreshold":     hc.UnhealthyThreshold,
		"HealthCheckCodes":       hc.Codes,
		"HealthCheckHttpVersion": "HTTP1.1",
	}
}

// listServerGroups: ServerGroupIds filter, paginated (MaxResults 1..100,
// default 20; SDK doc, ListServerGroupsRequest). ServerGroupStatus is
// Configuring while a job works on the group, else Available (SDK doc,
// UpdateServerGroupAttribute). Groups are type Instance, protocol HTTP.
func (e *Emulator) listServerGroups(r *request) (any, *apiError) {
	offset, size, aerr := page(r, 20, 100)
	if aerr != nil {
		return nil, aerr
	}
	ids := map[string]bool{}
	for _, m := range r.indexed("ServerGroupIds") {
		ids[m[""]] = true
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(r.now)
	var all []map[string]any
	for _, g := range e.state.ServerGroups {
		if len(ids) > 0 && !ids[g.ID] {
			continue
		}
		hc, _ := e.checkOfLocked(Target{ServerGroup: g.ID})
		status := "Available"
		if busy, _ := e.configuringLocked(g.ID); busy {
			status = "Configuring"
		}
		out := map[string]any{
			"ServerGroupId":     g.ID,
			"ServerGroupName":   g.Name,
			"ServerGroupStatus": status,
			"ServerGroupType":   "Instance",
			"Protocol":          "HTTP",
			"Scheduler":         "Wrr",
			"ServerCount":       len(g.Servers),
			"HealthCheckConfig": albHealthCheckConfig(hc),
		}
		if g.SlowStart != nil {
			out["SlowStartConfig"] = map[string]any{"SlowStartEnabled": g.SlowStart.Enabled, "SlowStartDuration": g.SlowStart.Duration}
		}
		all = append(all, out)
	}
	return pageAnswer(r, "ServerGroups", all, offset, size), nil
}

// updateServerGroupAttribute changes a group's HealthCheckConfig fields
// (the ones given; the others keep their value) and SlowStartConfig. It is
// asynchronous like the weight changes (SDK doc: "an asynchronous
// operation"; the group is Configuring until the job ends). When the
// health-check settings change, the weighted servers start their checks
// over in Initial (UNVERIFIED).
func (e *Emulator) updateServerGroupAttribute(r *request) (any, *apiError) {
	groupID := r.get("ServerGroupId")
	if groupID == "" {
		return nil, illegalParam("ServerGroupId", "is required")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(r.now)
	g := e.state.group(groupID)
	if g == nil {
		return nil, albGroupNotFound(groupID)
	}
	var hc *HealthCheck
	if changed, next, aerr := healthCheckParams(r, g.HealthCheck); aerr != nil {
		return nil, aerr
	} else if changed {
		hc = next
	}
	var slow *SlowStart
	if v := r.get("SlowStartConfig.SlowStartEnabled"); v != "" {
		slow = &SlowStart{Enabled: v == "true"}
		if g.SlowStart != nil {
			slow.Duration = g.SlowStart.Duration
		}
		if d := r.get("SlowStartConfig.SlowStartDuration"); d != "" {
			n, err := strconv.Atoi(d)
			if err != nil || n < 30 || n > 900 {
				return nil, illegalParam("SlowStartConfig.SlowStartDuration", "must be 30..900")
			}
			slow.Duration = n
		}
	}
	if r.get("DryRun") == "true" {
		return nil, errf(http.StatusBadRequest, "DryRunOperation", "Request validation has been passed with DryRun flag set.")
	}
	if busy, _ := e.configuringLocked(groupID); busy {
		return nil, errf(http.StatusBadRequest, "IncorrectStatus.serverGroup", "The status of %s is incorrect: Configuring.", groupID)
	}
	j := e.newJobLocked(r, groupID)
	j.healthCheck, j.slowStart = hc, slow
	return map[string]string{"JobId": j.id}, nil
}

// healthCheckParams reads HealthCheckConfig.* over cur (SDK
// UpdateServerGroupAttributeRequestHealthCheckConfig field names).
func healthCheckParams(r *request, cur *HealthCheck) (bool, *HealthCheck, *apiError) {
	next := HealthCheck{}
	if cur != nil {
		next = *cur
	}
	changed := false
	get := func(name string) (string, bool) {
		v, ok := r.params["HealthCheckConfig."+name]
		changed = changed || ok
		return v, ok
	}
	num := func(name string, dst *int) *apiError {
		if v, ok := get(name); ok {
			n, err := strconv.Atoi(v)
			if err != nil {
				return illegalParam("HealthCheckConfig."+name, "must be a number")
			}
			*dst = n
		}
		return nil
	}
	if v, ok := get("HealthCheckEnabled"); ok {
		b := v == "true"
		next.Enabled = &b
	}
	if v, ok := get("HealthCheckProtocol"); ok {
		next.Protocol = v
	}
	if v, ok := get("HealthCheckMethod"); ok {
		next.Method = v
	}
	if v, ok := get("HealthCheckPath"); ok {
		next.Path = v
	}
	for name, dst := range map[string]*int{"HealthCheckConnectPort": &next.ConnectPort, "HealthCheckInterval": &next.Interval,
		"HealthCheckTimeout": &next.Timeout, "HealthyThreshold": &next.HealthyThreshold, "UnhealthyThreshold": &next.UnhealthyThreshold} {
		if aerr := num(name, dst); aerr != nil {
			return false, nil, aerr
		}
	}
	var codes []string
	for _, m := range r.indexed("HealthCheckConfig.HealthCheckCodes") {
		codes = append(codes, m[""])
	}
	if len(codes) > 0 {
		next.Codes, changed = codes, true
	}
	if err := next.validate(); err != nil {
		return false, nil, illegalParam("HealthCheckConfig", "%v", err)
	}
	return changed, &next, nil
}

// listRules: ListenerIds and RuleIds filter, paginated (MaxResults 1..100,
// default 20, UNVERIFIED as for the other List calls). Each rule shows its
// Header/Cookie conditions and one ForwardGroup action (SDK
// ListRulesResponseBodyRules field names).
func (e *Emulator) listRules(r *request) (any, *apiError) {
	offset, size, aerr := page(r, 20, 100)
	if aerr != nil {
		return nil, aerr
	}
	set := func(name string) map[string]bool {
		m := map[string]bool{}
		for _, v := range r.indexed(name) {
			m[v[""]] = true
		}
		return m
	}
	listeners, ruleIDs := set("ListenerIds"), set("RuleIds")
	e.mu.Lock()
	defer e.mu.Unlock()
	var all []map[string]any
	for _, l := range e.state.Listeners {
		if len(listeners) > 0 && !listeners[l.ID] {
			continue
		}
		for _, rule := range e.state.rules(l.ID) {
			if len(ruleIDs) > 0 && !ruleIDs[rule.ID] {
				continue
			}
			var conds []map[string]any
			for _, c := range rule.Conditions {
				cond := map[string]any{"Type": c.Type}
				if c.Type == "Header" {
					cond["HeaderConfig"] = map[string]any{"Key": c.Key, "Values": c.Values}
				} else {
					var kv []map[string]string
					for _, v := range c.Values {
						kv = append(kv, map[string]string{"Key": c.Key, "Value": v})
					}
					cond["CookieConfig"] = map[string]any{"Values": kv}
				}
				conds = append(conds, cond)
			}
			var tuples []map[string]any
			for _, t := range rule.ServerGroups {
				tuples = append(tuples, map[string]any{"ServerGroupId": t.ServerGroup, "Weight": t.weight()})
			}
			all = append(all, map[string]any{
				"RuleId": rule.ID, "RuleName": rule.ID, "ListenerId": l.ID, "Priority": rule.Priority,
				"RuleStatus": "Available", "Direction": "Request", "RuleConditions": conds,
				"RuleActions": []map[string]any{{"Order": 1, "Type": "ForwardGroup",
					"ForwardGroupConfig": map[string]any{"ServerGroupTuples": tuples}}},
			})
		}
	}
	return pageAnswer(r, "Rules", all, offset, size), nil
}

// describeListenerAttribute answers DescribeLoadBalancerHTTPListenerAttribute
// and DescribeLoadBalancerTCPListenerAttribute with the listener's health
// check (SDK response field names: HealthCheck on|off, HealthCheckURI,
// HealthCheckConnectPort, HealthCheckInterval, HealthCheckTimeout (TCP:
// HealthCheckConnectTimeout), HealthyThreshold, UnhealthyThreshold,
// HealthCheckHttpCode, HealthCheckMethod; TCP also HealthCheckType).
func (e *Emulator) describeListenerAttribute(r *request, protocol string) (any, *apiError) {
	e.mu.Lock()
	defer e.mu.Unlock()
	lb, aerr := e.lbLocked(r)
	if aerr != nil {
		return nil, aerr
	}
	port, err := strconv.Atoi(r.get("ListenerPort"))
	if err != nil {
		return nil, errf(http.StatusBadRequest, "MissingParameter", "The input parameter \"ListenerPort\" that is mandatory for processing this request is not supplied.")
	}
	var l *SLBListener
	for _, x := range lb.Listeners {
		if x.Port == port && (slbProtocol(x.Protocol) == protocol || (protocol == "http" && slbProtocol(x.Protocol) == "https")) {
			l = x
		}
	}
	if l == nil {
		// ListenerNotFound (error table, CLB), HTTP 404 UNVERIFIED here.
		return nil, errf(http.StatusNotFound, "ListenerNotFound", "The specified listener %d/%s does not exist.", port, protocol)
	}
	hc := l.check()
	on := "on"
	if !hc.enabled() {
		on = "off"
	}
	out := map[string]any{
		"LoadBalancerId": lb.ID, "ListenerPort": l.Port, "Status": "running", "VServerGroupId": l.VServerGroup,
		"HealthCheck": on, "HealthCheckURI": hc.Path, "HealthCheckInterval": hc.Interval,
		"HealthyThreshold": hc.HealthyThreshold, "UnhealthyThreshold": hc.UnhealthyThreshold,
		"HealthCheckHttpCode": strings.Join(hc.Codes, ","), "HealthCheckMethod": strings.ToLower(hc.Method),
	}
	if hc.ConnectPort != 0 {
		out["HealthCheckConnectPort"] = hc.ConnectPort
	}
	if protocol == "tcp" {
		out["HealthCheckType"] = strings.ToLower(hc.Protocol)
		out["HealthCheckConnectTimeout"] = hc.Timeout
	} else {
		out["HealthCheckTimeout"] = hc.Timeout
	}
	return out, nil
}
