package emulator

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ALB (version 2020-06-16) actions.
var albActions = map[string]func(*Emulator, *request) (any, *apiError){
	"ListServerGroupServers":            (*Emulator).listServerGroupServers,
	"UpdateServerGroupServersAttribute": (*Emulator).updateServerGroupServersAttribute,
	"ListAsynJobs":                      (*Emulator).listAsynJobs,
	"GetListenerHealthStatus":           (*Emulator).getListenerHealthStatus,
	"ListServerGroups":                  (*Emulator).listServerGroups,
	"UpdateServerGroupAttribute":        (*Emulator).updateServerGroupAttribute,
	"ListRules":                         (*Emulator).listRules,
}

const (
	// albMaxServersPerCall: "You can specify at most 40 servers in each
	// call" (SDK doc, UpdateServerGroupServersAttributeRequest.Servers).
	albMaxServersPerCall = 40
	// maxJobs bounds the job history kept for ListAsynJobs.
	maxJobs = 10000
)

// job is an ALB asynchronous job (SDK doc: JobId, then ListAsynJobs).
type job struct {
	id, api, resource string
	status            string // Processing | Succeeded | Failed (SDK doc, ListAsynJobsResponseBodyJobs.Status)
	created, modified time.Time
	doneAt            time.Time
	weights           []pendingWeight
	healthCheck       *HealthCheck // UpdateServerGroupAttribute
	slowStart         *SlowStart
	failCode          string
}

type pendingWeight struct {
	server *Server
	weight *int
	desc   *string
}

// advanceLocked finishes the jobs whose time has come. Jobs finish lazily,
// on the next look at the state, which is indistinguishable from a timer
// to anyone observing through the API or the data plane.
func (e *Emulator) advanceLocked(now time.Time) {
	changed := false
	for _, j := range e.jobs {
		if j.status != "Processing" || now.Before(j.doneAt) {
			continue
		}
		j.modified = j.doneAt
		if j.failCode != "" {
			j.status = "Failed"
			continue
		}
		for _, p := range j.weights {
			if p.weight != nil {
				setWeightLocked(p.server, *p.weight)
			}
			if p.desc != nil {
				p.server.Description = *p.desc
			}
		}
		if g := e.state.group(j.resource); g != nil {
			if j.healthCheck != nil {
				g.HealthCheck = j.healthCheck
				restartChecksLocked(g.Servers)
			}
			if j.slowStart != nil {
				g.SlowStart = j.slowStart
			}
		}
		j.status = "Succeeded"
		e.noteLocked(Target{ServerGroup: j.resource})
		changed = true
	}
	if changed {
		e.saveLocked()
	}
}

// configuringLocked reports whether a job is still working on a group, and
// which servers it touches.
func (e *Emulator) configuringLocked(groupID string) (bool, map[*Server]bool) {
	busy, servers := false, map[*Server]bool{}
	for _, j := range e.jobs {
		if j.status == "Processing" && j.resource == groupID {
			busy = true
			for _, p := range j.weights {
				servers[p.server] = true
			}
		}
	}
	return busy, servers
}

// albGroupNotFound: ResourceNotFound.serverGroup, HTTP 404 (error table
// and the NLB sibling table; UNVERIFIED for ALB).
func albGroupNotFound(id string) *apiError {
	return errf(http.StatusNotFound, "ResourceNotFound.serverGroup", "The specified resource %s is not found.", id)
}

// illegalParam: IllegalParam.<name>, HTTP 400 (error table "IllegalParam.%s";
// UNVERIFIED whether ALB also uses it for missing parameters).
func illegalParam(name, format string, args ...any) *apiError {
	return errf(http.StatusBadRequest, "IllegalParam."+name, "The param of %s is illegal: "+format, append([]any{name}, args...)...)
}

// page reads MaxResults and NextToken. Tokens are opaque strings bound to
// the action (SDK doc: "set the value to the value of NextToken that is
// returned from the last call").
func page(r *request, def, maxResults int) (offset, size int, aerr *apiError) {
	size = def
	if v := r.get("MaxResults"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > maxResults {
			return 0, 0, illegalParam("MaxResults", "must be 1..%d", maxResults)
		}
		size = n
	}
	if t := r.get("NextToken"); t != "" {
		b, err := base64.RawURLEncoding.DecodeString(t)
		prefix, num, ok := strings.Cut(string(b), ":")
		n, nerr := strconv.Atoi(num)
		if err != nil || !ok || prefix != r.action || nerr != nil || n < 0 {
			return 0, 0, illegalParam("NextToken", "unknown token")
		}
		offset = n
	}
	return offset, size, nil
}

// nextToken is "" when nothing follows (SDK doc: empty NextToken = last page).
// pageAnswer is one page of a paginated ALB list answer: the items under
// key, MaxResults, TotalCount and, when more follow, NextToken.
func pageAnswer[T any](r *request, key string, all []T, offset, size int) map[string]any {
	out := map[string]any{
		key:          all[min(offset, len(all)):min(offset+size, len(all))],
		"MaxResults": size,
		"TotalCount": len(all),
	}
	if t := nextToken(r.action, offset, size, len(all)); t != "" {
		out["NextToken"] = t
	}
	return out
}

func nextToken(action string, offset, size, total int) string {
	if offset+size >= total {
		return ""
	}
	return base64.RawURLEncoding.EncodeToString([]byte(action + ":" + strconv.Itoa(offset+size)))
}

// listServerGroupServers: paginated, MaxResults 1..100 default 20 (SDK doc,
// ListServerGroupServersRequest.MaxResults), optional ServerIds filter.
// Status is the configuration state, Configuring while a job works on the
// server (SDK doc, ListServerGroupServersResponseBodyServers.Status). The
// weight shown is the applied one: a pending change appears when its job
// succeeds (UNVERIFIED; the stricter choice, so callers must wait for jobs).
func (e *Emulator) listServerGroupServers(r *request) (any, *apiError) {
	offset, size, aerr := page(r, 20, 100)
	if aerr != nil {
		return nil, aerr
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(r.now)
	groups := e.state.ServerGroups
	if id := r.get("ServerGroupId"); id != "" {
		g := e.state.group(id)
		if g == nil {
			return nil, albGroupNotFound(id)
		}
		groups = []*ServerGroup{g}
	}
	var ids map[string]bool
	if list := r.indexed("ServerIds"); len(list) > 0 {
		ids = map[string]bool{}
		for _, m := range list {
			ids[m[""]] = true
		}
	}
	type server struct {
		ServerGroupID   string `json:"ServerGroupId"`
		ServerID        string `json:"ServerId"`
		ServerIP        string `json:"ServerIp"`
		ServerType      string
		Port            int
		Weight          int
		Status          string
		Description     string `json:",omitempty"`
		RemoteIPEnabled bool   `json:"RemoteIpEnabled"`
	}
	var all []server
	for _, g := range groups {
		_, busy := e.configuringLocked(g.ID)
		for _, s := range g.Servers {
			if ids != nil && !ids[s.ID] {
				continue
			}
			status := "Available"
			if busy[s] {
				status = "Configuring"
			}
			all = append(all, server{g.ID, s.ID, s.IP, albType(s.Type), s.Port, s.Weight, status, s.Description, false})
		}
	}
	return pageAnswer(r, "Servers", all, offset, size), nil
}

func albType(t string) string {
	if t == "" {
		return "Ecs"
	}
	return t
}

// updateServerGroupServersAttribute changes weights asynchronously (SDK
// doc, UpdateServerGroupServersAttribute: "an asynchronous operation";
// group and servers Configuring, then Available).
func (e *Emulator) updateServerGroupServersAttribute(r *request) (any, *apiError) {
	groupID := r.get("ServerGroupId")
	if groupID == "" {
		return nil, illegalParam("ServerGroupId", "is required")
	}
	items := r.indexed("Servers")
	switch {
	case len(items) == 0:
		return nil, illegalParam("Servers", "is required")
	case len(items) > albMaxServersPerCall:
		// The limit is documented; the error code for exceeding it is
		// UNVERIFIED (IllegalParam.Servers chosen).
		return nil, illegalParam("Servers", "at most %d servers in each call, got %d", albMaxServersPerCall, len(items))
	}
	type change struct {
		id, typ string
		port    int
		weight  *int
		desc    *string
	}
	changes := make([]change, len(items))
	for i, m := range items {
		c := change{id: m["ServerId"], typ: m["ServerType"]}
		if c.id == "" {
			return nil, illegalParam("ServerId", "Servers.%d.ServerId is required", i+1)
		}
		// ServerType: "This parameter is required"; Ecs|Eni|Eci|Ip|Fc (SDK doc).
		if !slices.Contains([]string{"ecs", "eni", "eci", "ip", "fc"}, strings.ToLower(c.typ)) {
			return nil, illegalParam("ServerType", "Servers.%d.ServerType must be Ecs, Eni, Eci, Ip or Fc", i+1)
		}
		if v, ok := m["Port"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 || n > 65535 {
				return nil, illegalParam("Port", "Servers.%d.Port must be 1..65535", i+1)
			}
			c.port = n
		}
		// Weight: 0..100; 0 forwards no requests (SDK doc). An omitted
		// weight leaves the weight unchanged (UNVERIFIED).
		if v, ok := m["Weight"]; ok {
			n, err := strconv.Atoi(v)
			if err != nil || n < 0 || n > 100 {
				return nil, illegalParam("Weight", "Servers.%d.Weight must be 0..100", i+1)
			}
			c.weight = &n
		}
		if v, ok := m["Description"]; ok {
			c.desc = &v
		}
		changes[i] = c
	}

	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(r.now)
	g := e.state.group(groupID)
	if g == nil {
		return nil, albGroupNotFound(groupID)
	}
	var pending []pendingWeight
	for _, c := range changes {
		var match []*Server
		for _, s := range g.Servers {
			if s.ID == c.id && (c.port == 0 || s.Port == c.port) && strings.EqualFold(albType(s.Type), c.typ) {
				match = append(match, s)
			}
		}
		switch {
		case len(match) == 0:
			// ResourceNotFound.BackendServer, HTTP 404 (error table).
			return nil, errf(http.StatusNotFound, "ResourceNotFound.BackendServer", "The specified resource %s is not found.", c.id)
		case len(match) > 1:
			return nil, illegalParam("Port", "server %s is in the group on several ports; name the port", c.id)
		}
		pending = append(pending, pendingWeight{server: match[0], weight: c.weight, desc: c.desc})
	}

	// DryRun: a request that passes the checks is answered DryRunOperation
	// (SDK doc, UpdateServerGroupServersAttributeRequest.DryRun); HTTP 400
	// as in the NLB sibling docs (UNVERIFIED for ALB).
	if r.get("DryRun") == "true" {
		return nil, errf(http.StatusBadRequest, "DryRunOperation", "Request validation has been passed with DryRun flag set.")
	}

	// ClientToken: the same token with the same request returns the first
	// call's job instead of starting another (SDK doc, ClientToken
	// "ensure the idempotence of the request"); the same token with a
	// different request is IdempotenceSignatureMismatch (error table).
	token := r.get("ClientToken")
	digest := requestDigest(r)
	if token != "" {
		if use, ok := e.tokens[token]; ok {
			if use.digest != digest {
				return nil, errf(http.StatusBadRequest, "IdempotenceSignatureMismatch", "The ClientToken %s was used for a different request.", token)
			}
			return map[string]string{"JobId": use.jobID}, nil
		}
	}
	// IncorrectStatus.serverGroup, HTTP 400: a job is still configuring the
	// group (Terraform's retry list for ALB server groups).
	if busy, _ := e.configuringLocked(groupID); busy {
		return nil, errf(http.StatusBadRequest, "IncorrectStatus.serverGroup", "The status of %s is incorrect: Configuring.", groupID)
	}
	j := e.newJobLocked(r, groupID)
	j.weights = pending
	if token != "" {
		e.tokens[token] = tokenUse{digest: digest, jobID: j.id}
	}
	return map[string]string{"JobId": j.id}, nil
}

// newJobLocked starts an asynchronous job on a server group.
func (e *Emulator) newJobLocked(r *request, groupID string) *job {
	j := &job{
		id:       fmt.Sprintf("%x", e.rng.Uint64()),
		api:      r.action,
		resource: groupID,
		status:   "Processing",
		created:  r.now,
		modified: r.now,
		doneAt:   r.now.Add(max(e.opts.JobDelay, e.faults.JobDelay)),
	}
	if len(e.failJobs) > 0 {
		j.failCode, e.failJobs = e.failJobs[0], e.failJobs[1:]
	}
	e.jobs = append(e.jobs, j)
	if len(e.jobs) > maxJobs {
		e.jobs = e.jobs[len(e.jobs)-maxJobs:]
	}
	return j
}

// requestDigest identifies a request's content, less the signature
// parameters that differ between attempts.
func requestDigest(r *request) string {
	keys := make([]string, 0, len(r.params))
	for k := range r.params {
		switch k {
		case "Signature", "SignatureNonce", "Timestamp", "AccessKeyId", "SignatureMethod", "SignatureVersion", "SecurityToken", "Format":
			continue
		}
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%s=%s\n", k, r.params[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}

// listAsynJobs: filters by JobIds, ResourceIds, ApiName, ResourceType and
// time range; paginated (SDK doc, ListAsynJobsRequest). MaxResults limits
// are UNVERIFIED (1..100, default 20 chosen as for the other List calls).
func (e *Emulator) listAsynJobs(r *request) (any, *apiError) {
	offset, size, aerr := page(r, 20, 100)
	if aerr != nil {
		return nil, aerr
	}
	set := func(name string) map[string]bool {
		list := r.indexed(name)
		if len(list) == 0 {
			return nil
		}
		m := map[string]bool{}
		for _, v := range list {
			m[v[""]] = true
		}
		return m
	}
	jobIDs, resources := set("JobIds"), set("ResourceIds")
	var begin, end int64
	for name, p := range map[string]*int64{"BeginTime": &begin, "EndTime": &end} {
		if v := r.get(name); v != "" {
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil {
				return nil, illegalParam(name, "must be milliseconds since the epoch")
			}
			*p = n
		}
	}
	type jobOut struct {
		ID           string `json:"Id"`
		APIName      string `json:"ApiName"`
		Status       string
		ErrorCode    string `json:",omitempty"`
		ErrorMessage string `json:",omitempty"`
		ResourceID   string `json:"ResourceId"`
		ResourceType string
		OperateType  string
		CreateTime   int64
		ModifyTime   int64
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(r.now)
	var all []jobOut
	for _, j := range e.jobs {
		switch {
		case jobIDs != nil && !jobIDs[j.id],
			resources != nil && !resources[j.resource],
			r.get("ApiName") != "" && r.get("ApiName") != j.api,
			r.get("ResourceType") != "" && !strings.EqualFold(r.get("ResourceType"), "servergroup"),
			begin != 0 && j.created.UnixMilli() < begin,
			end != 0 && j.created.UnixMilli() > end:
			continue
		}
		o := jobOut{ID: j.id, APIName: j.api, Status: j.status, ResourceID: j.resource, ResourceType: "servergroup",
			OperateType: "Update", CreateTime: j.created.UnixMilli(), ModifyTime: j.modified.UnixMilli()}
		if j.status == "Failed" {
			o.ErrorCode, o.ErrorMessage = j.failCode, "Injected job failure."
		}
		all = append(all, o)
	}
	return pageAnswer(r, "Jobs", all, offset, size), nil
}

// getListenerHealthStatus reports, for the listener's default server group
// (ListenerHealthStatus) and, with IncludeRule=true, for the groups its
// forwarding rules point at (RuleHealthStatus), the servers that are not
// healthy (SDK doc: NonNormalServers; a healthy server is not listed) with
// their Status and Reason (see health.go). MaxResults 1..30, default 20
// (SDK doc); the pages run over all non-normal servers of the answer, and
// every group's entry is on the first page (UNVERIFIED). An Initial server
// carries the reason of its failed checks too, as the sample answer of the
// NLB sibling API shows (Status Initial, ReasonCode CONNECT_TIMEOUT:
// https://help.aliyun.com/zh/slb/api-getlistenerhealthstatus-nlb).
func (e *Emulator) getListenerHealthStatus(r *request) (any, *apiError) {
	offset, size, aerr := page(r, 20, 30)
	if aerr != nil {
		return nil, aerr
	}
	id := r.get("ListenerId")
	if id == "" {
		return nil, illegalParam("ListenerId", "is required")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.advanceLocked(r.now)
	l := e.state.listener(id)
	if l == nil {
		// ResourceNotFound.listener, HTTP 404 (UNVERIFIED, by analogy with
		// ResourceNotFound.serverGroup).
		return nil, errf(http.StatusNotFound, "ResourceNotFound.listener", "The specified resource %s is not found.", id)
	}
	type nonNormal struct {
		ServerID string `json:"ServerId"`
		ServerIP string `json:"ServerIp"`
		Port     int
		Status   string
		Reason   *Reason `json:",omitempty"`
	}
	type groupInfo struct {
		ServerGroupID      string `json:"ServerGroupId"`
		HealthCheckEnabled string
		ActionType         string
		NonNormalServers   []nonNormal
	}
	// Every non-normal server of the answer in order, then one page of them.
	type item struct {
		info *groupInfo
		n    nonNormal
	}
	var items []item
	info := func(groupID string) *groupInfo {
		g := e.state.group(groupID)
		hc, _ := e.checkOfLocked(Target{ServerGroup: groupID})
		if l.HealthCheckDisabled {
			off := false
			hc.Enabled = &off
		}
		gi := &groupInfo{ServerGroupID: groupID, HealthCheckEnabled: "on", ActionType: "ForwardGroup", NonNormalServers: []nonNormal{}}
		if !hc.enabled() {
			gi.HealthCheckEnabled = "off"
		}
		for _, s := range g.Servers {
			status := statusOf(hc, s)
			if status == StatusHealthy {
				continue
			}
			n := nonNormal{ServerID: s.ID, ServerIP: s.IP, Port: s.Port, Status: status}
			if status == StatusUnhealthy || status == StatusInitial {
				n.Reason = s.reason
			}
			items = append(items, item{gi, n})
		}
		return gi
	}
	listenerGroup := info(l.ServerGroup)
	type ruleHealth struct {
		RuleID           string `json:"RuleId"`
		ServerGroupInfos []*groupInfo
	}
	var rules []*ruleHealth
	if r.get("IncludeRule") == "true" {
		for _, rule := range e.state.rules(l.ID) {
			rh := &ruleHealth{RuleID: rule.ID}
			for _, t := range rule.ServerGroups {
				rh.ServerGroupInfos = append(rh.ServerGroupInfos, info(t.ServerGroup))
			}
			rules = append(rules, rh)
		}
	}
	for _, it := range items[min(offset, len(items)):min(offset+size, len(items))] {
		it.info.NonNormalServers = append(it.info.NonNormalServers, it.n)
	}
	protocol := l.Protocol
	if protocol == "" {
		protocol = "HTTP"
	}
	listenerInfos := []*groupInfo{listenerGroup}
	if offset > 0 && len(listenerGroup.NonNormalServers) == 0 {
		listenerInfos = []*groupInfo{}
	}
	out := map[string]any{
		"ListenerHealthStatus": []map[string]any{{
			"ListenerId":       l.ID,
			"ListenerPort":     l.Port,
			"ListenerProtocol": protocol,
			"ServerGroupInfos": listenerInfos,
		}},
	}
	if r.get("IncludeRule") == "true" {
		var pageRules []*ruleHealth
		for _, rh := range rules {
			var infos []*groupInfo
			for _, gi := range rh.ServerGroupInfos {
				if offset == 0 || len(gi.NonNormalServers) > 0 {
					infos = append(infos, gi)
				}
			}
			if len(infos) > 0 {
				pageRules = append(pageRules, &ruleHealth{RuleID: rh.RuleID, ServerGroupInfos: infos})
			}
		}
		out["RuleHealthStatus"] = pageRules
		if pageRules == nil {
			out["RuleHealthStatus"] = []any{}
		}
	}
	if t := nextToken(r.action, offset, size, len(items)); t != "" {
		out["NextToken"] = t
	}
	return out, nil
}
