// Package check is `tandem check`: a read-only preflight of the desired
// state against the real load balancers and registries of tandem.yaml,
// the first thing to run against a real account. For every provider
// instance it proves that the credentials work; for every binding, that
// the load balancer's resources exist, that the servers it lists are
// exactly the instances of the service's files (id, ip, port) with the
// weights `active` implies, that health checks are on where the shift
// reads them, and (where the API has a dry run) that the credentials may
// change weights; for every registry, that the service and its instances
// are registered. Every finding names the file, the binding and what to
// fix.
//
// It changes nothing: it calls only Backends, Inspect (reads, and ALB's
// DryRun), the registries' operator reads and the instant queries of
// analysis gates (analysis.go).
package check

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Severity of a finding: an error makes `tandem check` exit 1.
type Severity string

const (
	Error   Severity = "error"
	Warning Severity = "warning"
)

// Finding is one thing the preflight found wrong or could not prove.
type Finding struct {
	Severity Severity `json:"severity"`
	File     string   `json:"file"`              // the service file, or tandem.yaml for provider findings
	Line     int      `json:"line,omitempty"`    // of the binding or registry in File
	Service  string   `json:"service,omitempty"` // "" for provider findings
	Where    string   `json:"where"`             // field path and what it names, e.g. traffic[0] alb:prod-hz/sgp-1
	Problem  string   `json:"problem"`           // what is wrong
	Fix      string   `json:"fix"`               // what to do about it
}

func (f Finding) String() string {
	loc := f.File
	if f.Line > 0 {
		loc = fmt.Sprintf("%s:%d", f.File, f.Line)
	}
	return fmt.Sprintf("%s: %s: %s: %s\n  fix: %s", f.Severity, loc, f.Where, f.Problem, f.Fix)
}

// Report is the outcome of a check.
type Report struct {
	Findings   []Finding `json:"findings"`
	Bindings   int       `json:"bindings"`   // bindings checked
	Registries int       `json:"registries"` // services checked in a registry
	Providers  int       `json:"providers"`  // provider instances whose credentials were tried
}

// Errors counts the findings of severity error.
func (r Report) Errors() int {
	n := 0
	for _, f := range r.Findings {
		if f.Severity == Error {
			n++
		}
	}
	return n
}

// Text renders the report for a terminal: one finding per paragraph, then a
// summary line.
func (r Report) Text() string {
	var b strings.Builder
	for _, f := range r.Findings {
		b.WriteString(f.String())
		b.WriteString("\n")
	}
	errs := r.Errors()
	fmt.Fprintf(&b, "%s, %s (checked %s, %s, %s)\n", count(errs, "error"), count(len(r.Findings)-errs, "warning"),
		count(r.Bindings, "binding"), count(r.Registries, "registry service"), count(r.Providers, "provider instance"))
	return b.String()
}

func count(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// Input is what a check reads: the loaded desired state and daemon config,
// and the providers it names (the production ones, built from Config).
type Input struct {
	ConfigFile    string // tandem.yaml as given, for provider findings
	Config        *spec.Config
	Services      *spec.Set
	LoadBalancers map[string]providers.TrafficObserver  // key providers.LBKey(kind, name)
	Registries    map[string]providers.RegistryObserver // key: nacos provider name
	// Evidence reads the apps' drain evidence (drain.metrics): an instance
	// that answers but exports none of the configured series is an error
	// here rather than a drain that waits for its ceiling. Nil: not checked.
	Evidence providers.EvidenceReader
	// Metrics runs the queries of analysis gates once (analysis.go), by
	// providers.prometheus name. Nil: not checked.
	Metrics     map[string]providers.MetricsQuerier
	Concurrency int // bindings read at once; default 8
}

// Run checks everything Input names and returns the findings, sorted by
// file, line and severity. It fails only when ctx ends.
func Run(ctx context.Context, in Input) (Report, error) {
	c := &checker{in: in, creds: map[string]error{}, used: map[string]bool{}, noDryRun: map[string]bool{}}
	var jobs []func(context.Context)
	for _, svc := range in.Services.Services {
		for i, b := range svc.Traffic {
			jobs = append(jobs, func(ctx context.Context) { c.binding(ctx, svc, i, b) })
		}
		if svc.Registry != nil && svc.Registry.Nacos != nil {
			jobs = append(jobs, func(ctx context.Context) { c.registry(ctx, svc, *svc.Registry.Nacos) })
		}
		if svc.Gates.Analysis != nil && in.Metrics != nil {
			jobs = append(jobs, func(ctx context.Context) { c.analysis(ctx, svc) })
		}
		if svc.Drain.Metrics != "" && in.Evidence != nil {
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				for _, inst := range svc.Instances(g) {
					jobs = append(jobs, func(ctx context.Context) { c.evidence(ctx, svc, inst) })
				}
			}
		}
	}
	limit := in.Concurrency
	if limit <= 0 {
		limit = 8
	}
	sem := make(chan struct{}, limit)
	var wg sync.WaitGroup
	for _, job := range jobs {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return Report{}, ctx.Err()
		}
		wg.Go(func() {
			defer func() { <-sem }()
			job(ctx)
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return Report{}, err
	}
	c.providerFindings()
	sort.SliceStable(c.report.Findings, func(i, j int) bool {
		a, b := c.report.Findings[i], c.report.Findings[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Severity < b.Severity // error before warning
	})
	return c.report, nil
}

type checker struct {
	in       Input
	mu       sync.Mutex
	report   Report
	creds    map[string]error // provider key -> the credentials error its calls got
	used     map[string]bool  // provider keys some binding or registry used
	noDryRun map[string]bool  // provider keys whose writes could not be proven
}

func (c *checker) add(f Finding) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.report.Findings = append(c.report.Findings, f)
}

// failed reports a provider error: credential failures once per provider
// instance (in tandem.yaml), everything else at the binding.
func (c *checker) failed(at Finding, provider string, err error) {
	reason := ""
	if perm := (*providers.PermanentError)(nil); errors.As(err, &perm) {
		reason = perm.Reason
	}
	if reason == "InvalidCredentials" || reason == "AuthenticationFailed" {
		c.mu.Lock()
		if c.creds[provider] == nil {
			c.creds[provider] = err
		}
		c.mu.Unlock()
		return
	}
	at.Severity = Error
	at.Problem = err.Error()
	switch reason {
	case "NotFound", "InvalidBinding":
		at.Fix = "create the resource, or correct the name in the file"
	case "NoListenerHealth":
		at.Fix = "create the listener on that port, or turn on its health check: the shift waits for the load balancer to report the new group healthy"
	case "PermissionDenied":
		at.Fix = "grant the credentials of " + provider + " the action the error names (Tandem reads server groups and listener health, and changes weights)"
	default:
		at.Fix = "check the provider's endpoint and network, then run tandem check again"
	}
	c.add(at)
}

func (c *checker) use(provider string) {
	c.mu.Lock()
	c.used[provider] = true
	c.report.Providers = len(c.used)
	c.mu.Unlock()
}

// binding checks one binding of svc.
func (c *checker) binding(ctx context.Context, svc *spec.Service, i int, b spec.Binding) {
	path := fmt.Sprintf("traffic[%d]", i)
	at := Finding{File: svc.Source.File, Line: svc.Line(path), Service: svc.Name, Where: path + " " + b.Key()}
	key := providers.LBKey(b.Kind(), b.Provider())
	c.mu.Lock()
	c.report.Bindings++
	c.mu.Unlock()
	lb, ok := c.in.LoadBalancers[key]
	if !ok {
		at.Severity, at.Problem, at.Fix = Error, "no provider "+key+" is configured", "add it to providers in "+c.in.ConfigFile
		c.add(at)
		return
	}
	c.use(key)
	backends, err := lb.Backends(ctx, b)
	if err != nil {
		c.failed(at, key, err)
		return
	}
	for _, f := range compare(svc, b, backends) {
		f.File, f.Line, f.Service, f.Where = at.File, at.Line, at.Service, at.Where
		c.add(f)
	}
	ins, ok := lb.(providers.Inspector)
	if !ok {
		if !slices.ContainsFunc(backends, func(be providers.Backend) bool { return be.Health != providers.HealthUnknown }) && len(backends) > 0 {
			f := at
			f.Severity = Warning
			f.Problem = "the load balancer reports no health for any server of the binding"
			f.Fix = "turn on its health checks (HAProxy: `check` on the server lines), so that a shift is confirmed by the load balancer's own view"
			c.add(f)
		}
		return
	}
	got, err := ins.Inspect(ctx, b)
	if err != nil {
		c.failed(at, key, err)
		return
	}
	f := at
	switch got.HealthChecks {
	case providers.HealthChecksOff:
		f.Severity = Error
		f.Problem = got.HealthDetail
		f.Fix = "turn on health checks for the group on that listener (ALB: the server group's HealthCheckConfig.HealthCheckEnabled; SLB: the listener's health check): the shift waits for the load balancer to report the new group healthy"
		c.add(f)
	case providers.HealthChecksNoListener:
		f.Severity = Warning
		f.Problem = "the binding names no listener, so the load balancer's own health view of the servers is not read"
		f.Fix = "name the listener (ALB: listener; SLB: listenerPort) whose health checks cover the group"
		c.add(f)
	}
	if got.WriteChecked == "" {
		c.mu.Lock()
		c.noDryRun[key] = true
		c.mu.Unlock()
	}
}

// compare matches the servers the load balancer lists against the
// instances of both groups: each instance must be listed (by id, with its
// ip and port), with the binding's weight when its group is active and 0
// otherwise; nothing else may be listed.
func compare(svc *spec.Service, b spec.Binding, backends []providers.Backend) []Finding {
	var out []Finding
	matched := make([]bool, len(backends))
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		want, role := 0, "idle"
		if g == svc.Active {
			want, role = b.Weight, "active"
		}
		for _, in := range svc.Instances(g) {
			j := slices.IndexFunc(backends, func(be providers.Backend) bool {
				return be.ID == in.ID && (be.Port == 0 || be.Port == in.Port)
			})
			if j < 0 {
				out = append(out, Finding{Severity: Error,
					Problem: fmt.Sprintf("instance %s of group %s is not a server of the load balancer's group", in, g),
					Fix:     fmt.Sprintf("add server %s (%s) with weight %d, or remove the instance from the file", in.ID, in.Addr(), want)})
				continue
			}
			matched[j] = true
			be := backends[j]
			if (be.IP != "" && be.IP != in.IP) || (be.Port != 0 && be.Port != in.Port) {
				out = append(out, Finding{Severity: Error,
					Problem: fmt.Sprintf("server %s is at %s:%d on the load balancer, the file says %s", in.ID, be.IP, be.Port, in.Addr()),
					Fix:     "correct the instance's ip and port in the file, or the server on the load balancer"})
			}
			if be.Weight != want {
				out = append(out, Finding{Severity: Error,
					Problem: fmt.Sprintf("server %s of group %s (%s) has weight %d; active: %s means %d", in.ID, g, role, be.Weight, svc.Active, want),
					Fix:     fmt.Sprintf("if group %s is the one serving, set active: %s in the file; otherwise set the weights on the load balancer (or let tandem run shift them)", svc.Active.Other(), svc.Active.Other())})
			}
		}
	}
	for j, be := range backends {
		if !matched[j] {
			out = append(out, Finding{Severity: Error,
				Problem: fmt.Sprintf("the load balancer lists server %s (%s:%d, weight %d) that no group of the file names", be.ID, be.IP, be.Port, be.Weight),
				Fix:     "remove it from the load balancer's group, or add it to group A or B in the file"})
		}
	}
	return out
}

// registry checks that the service and its instances are registered.
func (c *checker) registry(ctx context.Context, svc *spec.Service, ref spec.NacosRef) {
	at := Finding{File: svc.Source.File, Line: svc.Line("registry.nacos"), Service: svc.Name, Where: "registry.nacos " + ref.String()}
	key := spec.KindNacos + "/" + ref.Provider
	c.mu.Lock()
	c.report.Registries++
	c.mu.Unlock()
	reg, ok := c.in.Registries[ref.Provider]
	if !ok {
		at.Severity, at.Problem, at.Fix = Error, "no nacos provider "+ref.Provider+" is configured", "add it to providers.nacos in "+c.in.ConfigFile
		c.add(at)
		return
	}
	c.use(key)
	var expect []providers.Addr
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Instances(g) {
			expect = append(expect, providers.Addr{IP: in.IP, Port: in.Port})
		}
	}
	view, err := providers.ReadRegistry(ctx, reg, ref, expect)
	if err != nil {
		c.failed(at, key, fmt.Errorf("reading %s: %w", ref, err))
		return
	}
	if len(view.Instances) == 0 {
		at.Severity = Error
		at.Problem = "the service has no registered instance (it does not exist in this namespace and group)"
		at.Fix = "start the service's instances so that they register, or correct namespace, group and service in the file"
		c.add(at)
		return
	}
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		for _, in := range svc.Instances(g) {
			k := slices.IndexFunc(view.Instances, func(r providers.RegistryInstance) bool { return r.IP == in.IP && r.Port == in.Port })
			f := at
			switch {
			case k < 0:
				f.Severity = Error
				f.Problem = fmt.Sprintf("instance %s of group %s is not registered", in, g)
				f.Fix = "start it (applications register themselves), or remove it from the file"
			case g == svc.Active && !view.Instances[k].Enabled:
				f.Severity = Error
				f.Problem = fmt.Sprintf("instance %s of the active group %s is disabled: consumers do not see it", in, g)
				f.Fix = fmt.Sprintf("enable it, or set active: %s if that group is the one serving", g.Other())
			case g != svc.Active && view.Instances[k].Enabled:
				f.Severity = Warning
				f.Problem = fmt.Sprintf("instance %s of the idle group %s is enabled: consumers can reach it", in, g)
				f.Fix = "nothing to do if that is expected: tandem run disables the idle group on its first pass"
			default:
				continue
			}
			c.add(f)
		}
	}
	for _, r := range view.Instances {
		if !slices.ContainsFunc(expect, func(a providers.Addr) bool { return a.IP == r.IP && a.Port == r.Port }) {
			f := at
			f.Severity = Warning
			f.Problem = fmt.Sprintf("%s:%d is registered (enabled: %t) but is in no group of the file", r.IP, r.Port, r.Enabled)
			f.Fix = "add it to a group, or stop it: Tandem leaves instances it does not know alone"
			c.add(f)
		}
	}
}

// providerFindings reports what concerns provider instances as a whole:
// rejected credentials, instances no binding uses (their credentials were
// not tried), and instances whose write permission no dry run could prove.
func (c *checker) providerFindings() {
	cfg := c.in.Config
	if cfg == nil {
		return
	}
	type inst struct {
		kind, name string
		i          int
	}
	var all []inst
	for _, k := range spec.LBKinds() {
		for i, p := range k.Configured(cfg) {
			all = append(all, inst{k.Name, p.ProviderName(), i})
		}
	}
	for i, p := range cfg.Providers.Nacos {
		all = append(all, inst{spec.KindNacos, p.Name, i})
	}
	for _, p := range all {
		key := providers.LBKey(p.kind, p.name)
		path := fmt.Sprintf("providers.%s[%d]", p.kind, p.i)
		at := Finding{File: c.in.ConfigFile, Line: cfg.Line(path), Where: fmt.Sprintf("%s (%s)", path, p.name)}
		switch {
		case c.creds[key] != nil:
			at.Severity = Error
			at.Problem = "the credentials were refused: " + c.creds[key].Error()
			at.Fix = "check the variables the instance names (accessKeyIdEnv/accessKeySecretEnv, usernameEnv/passwordEnv) or the default credential chain, and the clock"
		case !c.used[key]:
			at.Severity = Warning
			at.Problem = "no binding or registry uses this provider instance, so its credentials were not tried"
			at.Fix = "remove it, or nothing to do"
		case c.noDryRun[key] && p.kind == spec.KindSLB:
			at.Severity = Warning
			at.Problem = "write permission could not be proven: the CLB API has no dry run for weight changes"
			at.Fix = "make sure the RAM policy allows slb:SetVServerGroupAttribute and slb:SetBackendServers on the load balancers"
		default:
			continue
		}
		c.add(at)
	}
}

// evidence reads one instance's drain evidence as the drain would. An
// instance that answers without any of the configured series is an error
// naming what was looked for and what it exports that looks like a
// candidate; one that cannot be read (it may be stopped while idle) is a
// warning.
func (c *checker) evidence(ctx context.Context, svc *spec.Service, in spec.Instance) {
	_, err := c.in.Evidence.Evidence(ctx, svc, in)
	if err == nil {
		return
	}
	at := Finding{File: svc.Source.File, Line: svc.Line("drain.evidence"), Service: svc.Name, Where: "drain.evidence", Problem: err.Error()}
	if providers.IsPermanent(err) {
		at.Severity = Error
		at.Fix = "name the series this app exports in drain.evidence.inFlight (or pick the preset of its stack); without them every drain waits for drain.timeout"
	} else {
		at.Severity = Warning
		at.Fix = "make the instance's drain.metrics path reachable from Tandem, or ignore this for an instance that is stopped on purpose"
	}
	c.add(at)
}

// UseProviders points in at the providers of ps (those providers.all builds).
func (in *Input) UseProviders(ps *providers.Set) {
	in.LoadBalancers = map[string]providers.TrafficObserver{}
	for k, lb := range ps.LoadBalancers {
		in.LoadBalancers[k] = lb
	}
	in.Registries = map[string]providers.RegistryObserver{}
	for k, r := range ps.Registries {
		in.Registries[k] = r
	}
	if ps.Instances != nil {
		in.Evidence = ps.Instances
	}
	in.Metrics = ps.Metrics
}
