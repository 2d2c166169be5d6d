package spec

import (
	"net"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Defaults of the service spec. They are documented in the README's spec
// reference; change both together.
const (
	DefaultWeight           = 100
	DefaultDeployTimeout    = 10 * time.Minute
	DefaultPollInterval     = 2 * time.Second
	DefaultProbeTimeout     = 2 * time.Second
	DefaultHealthDeadline   = 5 * time.Minute
	DefaultPropagation      = 40 * time.Second // a Spring Cloud consumer's 35 s cache, measured: docs/propagation.md
	DefaultQuiet            = 5 * time.Second
	DefaultDrainTimeout     = 5 * time.Minute
	DefaultVerifyWindow     = 60 * time.Second
	DefaultFailureThreshold = 3
	// DefaultLBHealthTimeout leaves an ALB with a 2s interval and a healthy
	// threshold of 3 (6s) ample room, and at most 10 checks of 10s.
	DefaultLBHealthTimeout = 2 * time.Minute
)

var (
	nameRE    = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	versionRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+-]{0,127}$`)
)

func setDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}

// Default fills every optional field that was left out.
func (s *Service) Default() {
	for i := range s.Traffic {
		setDefault(&s.Traffic[i].Weight, DefaultWeight)
	}
	if s.Registry != nil && s.Registry.Nacos != nil {
		n := s.Registry.Nacos
		setDefault(&n.Namespace, "public")
		setDefault(&n.Group, "DEFAULT_GROUP")
		setDefault(&n.Service, s.Name)
		setDefault(&n.Cluster, "DEFAULT")
	}
	setDefault(&s.Deploy.Timeout, Duration(DefaultDeployTimeout))
	if s.Deploy.HTTP != nil {
		setDefault(&s.Deploy.HTTP.PollInterval, Duration(DefaultPollInterval))
	}
	s.defaultPresets()
	s.defaultRollout()
	if s.Health.HTTP != nil {
		setDefault(&s.Health.HTTP.Scheme, "http")
	}
	setDefault(&s.Health.Timeout, Duration(DefaultProbeTimeout))
	setDefault(&s.Health.Deadline, Duration(DefaultHealthDeadline))
	setDefault(&s.Drain.Propagation, Duration(DefaultPropagation))
	setDefault(&s.Drain.Quiet, Duration(DefaultQuiet))
	setDefault(&s.Drain.Timeout, Duration(DefaultDrainTimeout))
	setDefault(&s.Verify.Window, Duration(DefaultVerifyWindow))
	setDefault(&s.Verify.FailureThreshold, DefaultFailureThreshold)
	setDefault(&s.Verify.LBHealthTimeout, Duration(DefaultLBHealthTimeout))
	s.Gates.Analysis.defaults()
	s.Gates.Smoke.defaults()
}

// Validate checks one service on its own; cross-service and cross-config
// checks are in Set.validate. Every problem is reported.
func (s *Service) Validate() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) { ps = append(ps, s.Problem(path, format, args...)) }

	switch {
	case s.Name == "":
		bad("service", "is required")
	case !nameRE.MatchString(s.Name):
		bad("service", "must be lower-case letters, digits and '-', 1..63 characters, got %q", s.Name)
	}
	if s.Active == "" {
		bad("active", "is required (A or B)")
	}
	switch {
	case s.Version == "":
		bad("version", "is required")
	case !versionRE.MatchString(s.Version):
		bad("version", "must be letters, digits and . _ + -, at most 128 characters, got %q", s.Version)
	}

	byAddr := map[string]string{}
	byID := map[string]string{}
	for _, g := range []Group{GroupA, GroupB} {
		base := "groups." + string(g) + ".instances"
		insts := s.Groups.Get(g)
		if len(insts) == 0 {
			if g == s.Active {
				bad(base, "active group %s has no instances", g)
			} else {
				bad(base, "group %s has no instances; both groups are needed to swap", g)
			}
		}
		for i, in := range insts {
			p := base + "[" + strconv.Itoa(i) + "]"
			if net.ParseIP(in.IP) == nil {
				bad(p+".ip", "must be an IP address, got %q", in.IP)
			}
			if in.Port < 1 || in.Port > 65535 {
				bad(p+".port", "must be 1..65535")
			}
			if len(s.Traffic) > 0 && in.ID == "" {
				bad(p+".id", "is required when the service has traffic bindings (the LB server id or HAProxy server name)")
			}
			if in.IP != "" && in.Port != 0 {
				if prev, dup := byAddr[in.Addr()]; dup {
					bad(p, "%s is already listed at %s; an instance belongs to exactly one group", in.Addr(), prev)
				} else {
					byAddr[in.Addr()] = p
				}
			}
			if in.ID != "" {
				if prev, dup := byID[in.ID]; dup {
					bad(p+".id", "%q is already used at %s; an instance belongs to exactly one group", in.ID, prev)
				} else {
					byID[in.ID] = p
				}
			}
		}
	}

	if len(s.Traffic) == 0 && (s.Registry == nil || s.Registry.Nacos == nil) {
		bad("traffic", "the service needs at least one traffic binding or a registry; otherwise there is nothing to switch")
	}
	seenBinding := map[string]int{}
	for i, b := range s.Traffic {
		p := "traffic[" + strconv.Itoa(i) + "]"
		if !validateKind(b, p, bad) {
			continue
		}
		if prev, dup := seenBinding[b.Key()]; dup {
			bad(p, "binds %s again (already traffic[%d])", b.Key(), prev)
		} else {
			seenBinding[b.Key()] = i
		}
	}
	validatePreview(s.Traffic, bad)

	if s.Registry != nil {
		switch n := s.Registry.Nacos; {
		case n == nil:
			bad("registry", "must name a registry (nacos)")
		case n.Provider == "":
			bad("registry.nacos.provider", "is required")
		}
	}

	switch {
	case len(s.Deploy.Exec) == 0 && s.Deploy.HTTP == nil:
		bad("deploy", "must set exec or http: Tandem needs a way to upgrade the idle group")
	case len(s.Deploy.Exec) > 0 && s.Deploy.HTTP != nil:
		bad("deploy", "must set only one of exec and http")
	case len(s.Deploy.Exec) > 0 && strings.TrimSpace(s.Deploy.Exec[0]) == "":
		bad("deploy.exec[0]", "the command must not be empty")
	case s.Deploy.HTTP != nil:
		switch u, err := url.Parse(s.Deploy.HTTP.URL); {
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			bad("deploy.http.url", "must be an http or https URL, got %q", s.Deploy.HTTP.URL)
		case u.User != nil:
			// Not echoed: the URL carries a credential.
			bad("deploy.http.url", "must not carry credentials (user:password@%s): name an environment variable in deploy.http.tokenEnv instead", u.Host)
		}
	}

	if h := s.Health.HTTP; h != nil {
		if !strings.HasPrefix(h.Path, "/") {
			bad("health.http.path", "must start with /, got %q", h.Path)
		}
		if h.Port < 0 || h.Port > 65535 {
			bad("health.http.port", "must be 1..65535")
		}
		if h.Scheme != "http" && h.Scheme != "https" {
			bad("health.http.scheme", "must be http or https, got %q", h.Scheme)
		}
	} else {
		bad("health.http", "is required: a group gets traffic only after every instance passed a health check")
	}
	v := s.Health.Version
	switch {
	case v.NacosMetadata == "" && v.HTTP == "":
		bad("health.version", "must set nacosMetadata or http: a group gets traffic only after its version is confirmed")
	case v.NacosMetadata != "" && v.HTTP != "":
		bad("health.version", "must set only one of nacosMetadata and http")
	case v.NacosMetadata != "" && (s.Registry == nil || s.Registry.Nacos == nil):
		bad("health.version.nacosMetadata", "needs registry.nacos")
	case v.HTTP != "" && !strings.HasPrefix(v.HTTP, "/"):
		bad("health.version.http", "must start with /, got %q", v.HTTP)
	}

	if s.Drain.Quiet > s.Drain.Timeout {
		bad("drain.quiet", "(%s) must not exceed drain.timeout (%s)", s.Drain.Quiet, s.Drain.Timeout)
	}
	if s.Drain.Propagation > s.Drain.Timeout {
		bad("drain.propagation", "(%s) must not exceed drain.timeout (%s)", s.Drain.Propagation, s.Drain.Timeout)
	}
	if sig := s.Drain.Signal; sig != nil && !strings.HasPrefix(sig.HTTP, "/") {
		bad("drain.signal.http", "must be a path starting with /, got %q", sig.HTTP)
	}
	if m := s.Drain.Metrics; m != "" && !strings.HasPrefix(m, "/") {
		bad("drain.metrics", "must be a path starting with /, got %q", m)
	}
	s.validatePresets(bad)
	s.validateRollout(bad)
	s.Gates.Analysis.validate(bad)
	s.validateApproval(bad)
	s.Gates.Smoke.validate(bad)
	if s.Verify.FailureThreshold < 1 {
		bad("verify.failureThreshold", "must be at least 1")
	}
	if s.Verify.LBHealthTimeout < Duration(time.Second) {
		bad("verify.lbHealthTimeout", "must be at least 1s (the load balancer needs time to check the target group), got %s", s.Verify.LBHealthTimeout)
	}
	for i, a := range s.After {
		if a == s.Name {
			bad("after["+strconv.Itoa(i)+"]", "a service cannot come after itself")
		}
	}
	return ps
}

// validatePreview checks the preview bindings: the service has a main
// binding, and no preview binding shares the route of a main one (a binding
// key used twice is refused with the other duplicates; beyond that, what
// the kind's PreviewClash finds). A service may have several
// preview bindings, e.g. one per load balancer.
func validatePreview(traffic []Binding, bad func(path, format string, args ...any)) {
	main := 0
	for _, b := range traffic {
		if !b.Preview {
			main++
		}
	}
	for i, b := range traffic {
		if !b.Preview {
			continue
		}
		p := "traffic[" + strconv.Itoa(i) + "].preview"
		if main == 0 {
			bad(p, "a preview binding needs a main binding (one without preview) for the service's traffic")
			return
		}
		k, ok := b.LBKind()
		if !ok {
			continue
		}
		for j, m := range traffic {
			if m.Preview || m.Kind() != k.Name {
				continue
			}
			if k.PreviewClash != nil && m.Key() != b.Key() { // the same key is refused above
				if why := k.PreviewClash(b, m); why != "" {
					bad(p, "%s (traffic[%d])", why, j)
				}
			}
		}
	}
}
