package spec

import (
	"fmt"
	"net/netip"
	"net/url"
	"path"
	"reflect"
	"slices"
	"strings"
)

// Policy is what tandem.yaml lets the desired state in Git make the daemon
// do: which commands deploy hooks may run and which of the daemon's
// environment variables they receive, which hosts deploy requests and
// probes may reach, and which environment variables a service file may
// name. Whoever can push to the repository is trusted with releases, not
// with the daemon's host or its credentials; docs/security.md describes
// the trust model.
type Policy struct {
	Hooks   HookPolicy    `yaml:"hooks" json:"hooks"`
	Network NetworkPolicy `yaml:"network" json:"network"`
	SpecEnv SpecEnvPolicy `yaml:"specEnv" json:"specEnv"`
}

// HookPolicy bounds exec hooks: deploy.exec and gates.smoke.exec.
type HookPolicy struct {
	// Commands are the deploy.exec[0] and gates.smoke.exec.command[0] a
	// service may run: exact strings or path.Match globs (/opt/deploy/*.sh;
	// * does not cross /). Empty: exec hooks are refused, because a command
	// chosen in Git runs as the daemon's user and could read its
	// environment and files.
	Commands []string `yaml:"commands" json:"commands,omitempty"`
	// Env are the daemon's environment variables (names or globs) hooks
	// receive besides PATH, HOME, LANG and TZ. A variable that a *Env field
	// of tandem.yaml names (a credential) is passed only when listed by its
	// exact name, never through a glob.
	Env []string `yaml:"env" json:"env,omitempty"`
}

// NetworkPolicy bounds where the desired state may make the daemon connect.
// Entries are host names, *.suffix globs, IP addresses or CIDR prefixes.
// Link-local addresses (169.254.0.0/16, fe80::/10) and the cloud metadata
// addresses (100.100.100.200, fd00:ec2::254) are refused unless an entry
// lies inside them (169.254.169.254/32); a broad prefix such as 0.0.0.0/0
// does not open them. Both are checked when a service file is loaded and
// again on every connection, against the address the host name resolved
// to.
type NetworkPolicy struct {
	// Deploy is where deploy.http URLs (and the status URLs their answers
	// name) may go. Empty: any host but the refused ones.
	Deploy []string `yaml:"deploy" json:"deploy,omitempty"`
	// Probe is where health probes, drain metrics and drain signals may go
	// (IPs and CIDRs: probes go to instance addresses). Empty: every
	// instance address but the refused ones.
	Probe []string `yaml:"probe" json:"probe,omitempty"`
}

// SpecEnvPolicy says which environment variables a service file may name
// (deploy.http.tokenEnv): those starting with Prefix, and those in Names. A
// variable that a *Env field of tandem.yaml names is allowed only when
// Names lists it.
type SpecEnvPolicy struct {
	Prefix string   `yaml:"prefix" json:"prefix"`
	Names  []string `yaml:"names" json:"names,omitempty"`
}

// DefaultSpecEnvPrefix is the default of policy.specEnv.prefix.
const DefaultSpecEnvPrefix = "TANDEM_SPEC_"

// BaseHookEnv are the daemon's variables every hook receives.
var BaseHookEnv = []string{"PATH", "HOME", "LANG", "TZ"}

// Default fills the optional fields of the policy.
func (p *Policy) Default() {
	setDefault(&p.SpecEnv.Prefix, DefaultSpecEnvPrefix)
}

// validate reports problems of the policy section itself.
func (p *Policy) validate(bad func(path, format string, args ...any)) {
	for i, c := range p.Hooks.Commands {
		field := fmt.Sprintf("policy.hooks.commands[%d]", i)
		if _, err := path.Match(c, ""); err != nil || strings.TrimSpace(c) == "" {
			bad(field, "must be a command path or a glob such as /opt/deploy/*.sh, got %q", c)
		}
	}
	for i, e := range p.Hooks.Env {
		if !envNameOK(strings.ReplaceAll(e, "*", "_")) {
			bad(fmt.Sprintf("policy.hooks.env[%d]", i), "must name an environment variable (letters, digits, _; * as a wildcard), got %q", e)
		}
	}
	for i, e := range p.Network.Deploy {
		if _, err := parseHostEntry(e, true); err != nil {
			bad(fmt.Sprintf("policy.network.deploy[%d]", i), "%v", err)
		}
	}
	for i, e := range p.Network.Probe {
		if _, err := parseHostEntry(e, false); err != nil {
			bad(fmt.Sprintf("policy.network.probe[%d]", i), "%v", err)
		}
	}
	if !envNameOK(p.SpecEnv.Prefix) {
		bad("policy.specEnv.prefix", "must be the start of an environment variable name (letters, digits, _), got %q", p.SpecEnv.Prefix)
	}
	for i, n := range p.SpecEnv.Names {
		if !envNameOK(n) {
			bad(fmt.Sprintf("policy.specEnv.names[%d]", i), "must name an environment variable (letters, digits, _), got %q", n)
		}
	}
}

// CommandAllowed reports whether policy.hooks.commands lets a hook run
// argv0. A path that is not clean (a/../b, ./x/) never matches a glob.
func (p HookPolicy) CommandAllowed(argv0 string) bool {
	for _, c := range p.Commands {
		if c == argv0 {
			return true
		}
		if clean := path.Clean(argv0); clean == argv0 && !strings.Contains(argv0, "..") {
			if ok, _ := path.Match(c, argv0); ok {
				return true
			}
		}
	}
	return false
}

// DefaultChainEnv are the credential variables the Alibaba default
// credential chain reads when an ALB or SLB provider names none
// (https://www.alibabacloud.com/help/en/sdk/developer-reference/v2-manage-go-access-credentials).
var DefaultChainEnv = []string{"ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET", "ALIBABA_CLOUD_SECURITY_TOKEN"}

// SecretEnvNames lists the environment variables that hold the daemon's
// credentials: those *Env fields of the configuration name (EnvNames, user
// names included), and those of the Alibaba default credential chain.
func (c *Config) SecretEnvNames() []string {
	names := append(slices.Clone(DefaultChainEnv), c.EnvNames(true)...)
	slices.Sort(names)
	return slices.Compact(names)
}

// EnvNames lists the variables the *Env fields of the configuration name,
// the user names (usernameEnv) only when users is set: they are not
// secrets, and redacting their values would blank out ordinary words.
// Fields are found by their YAML names, so that a credential field added
// to tandem.yaml later is covered without a change here.
func (c *Config) EnvNames(users bool) []string {
	var names []string
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map: // Providers.Ext: instances of registered kinds
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				tag, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if f.Type.Kind() == reflect.String && strings.HasSuffix(tag, "Env") {
					if s := v.Field(i).String(); s != "" && (users || !strings.EqualFold(tag, "usernameEnv")) && !slices.Contains(names, s) {
						names = append(names, s)
					}
					continue
				}
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(c).Elem())
	return names
}

// HookEnvAllowed reports whether deploy hooks receive the daemon's variable
// name (see HookPolicy.Env).
func (c *Config) HookEnvAllowed(name string) bool {
	if slices.Contains(c.Policy.Hooks.Env, name) {
		return true
	}
	if slices.Contains(c.SecretEnvNames(), name) {
		return false
	}
	if slices.Contains(BaseHookEnv, name) {
		return true
	}
	for _, g := range c.Policy.Hooks.Env {
		if ok, _ := path.Match(g, name); ok {
			return true
		}
	}
	return false
}

// SpecEnvAllowed reports whether a service file may name the variable.
func (c *Config) SpecEnvAllowed(name string) bool {
	if slices.Contains(c.Policy.SpecEnv.Names, name) {
		return true
	}
	return strings.HasPrefix(name, c.Policy.SpecEnv.Prefix) && !slices.Contains(c.SecretEnvNames(), name)
}

// DeployHosts is policy.network.deploy as an allowlist.
func (c *Config) DeployHosts() *Allowlist {
	return newAllowlist("policy.network.deploy", c.Policy.Network.Deploy, c.fileName(), c.pos.line("policy.network.deploy"))
}

// ProbeHosts is policy.network.probe as an allowlist.
func (c *Config) ProbeHosts() *Allowlist {
	return newAllowlist("policy.network.probe", c.Policy.Network.Probe, c.fileName(), c.pos.line("policy.network.probe"))
}

// policyRef names a policy field of the configuration for messages, e.g.
// "policy.hooks.commands in tandem.yaml:31".
func (c *Config) policyRef(field string) string {
	if l, set := c.pos[field]; set && c.file != "" {
		return fmt.Sprintf("%s in %s:%d", field, c.file, l)
	}
	return fmt.Sprintf("%s in %s (not set)", field, c.fileName())
}

// checkPolicy reports what a service asks for that the policy does not allow.
func (c *Config) checkPolicy(svc *Service) Problems {
	var ps Problems
	bad := func(path, format string, args ...any) { ps = append(ps, svc.Problem(path, format, args...)) }
	hook := func(field string, argv []string) {
		if len(argv) == 0 || argv[0] == "" || c.Policy.Hooks.CommandAllowed(argv[0]) {
			return
		}
		if len(c.Policy.Hooks.Commands) == 0 {
			bad(field, "%q may not run: exec hooks are refused until %s lists the commands the daemon may run for Git", argv[0], c.policyRef("policy.hooks.commands"))
		} else {
			bad(field, "%q is not one of the commands %s allows", argv[0], c.policyRef("policy.hooks.commands"))
		}
	}
	hook("deploy.exec[0]", svc.Deploy.Exec)
	if g := svc.Gates.Smoke; g != nil && g.Exec != nil {
		hook("gates.smoke.exec.command[0]", g.Exec.Command)
	}
	if h := svc.Deploy.HTTP; h != nil {
		if h.TokenEnv != "" && !c.SpecEnvAllowed(h.TokenEnv) {
			bad("deploy.http.tokenEnv", "%s may not be named by a service file: %s allows variables starting with %s and those listed in policy.specEnv.names",
				h.TokenEnv, c.policyRef("policy.specEnv"), c.Policy.SpecEnv.Prefix)
		}
		if u, err := url.Parse(h.URL); err == nil && u.Host != "" {
			if err := c.DeployHosts().CheckHost(u.Hostname()); err != nil {
				bad("deploy.http.url", "%v", err)
			}
		}
	}
	probes := c.ProbeHosts()
	for _, g := range []Group{GroupA, GroupB} {
		for i, in := range svc.Groups.Get(g) {
			if in.IP == "" {
				continue
			}
			if err := probes.CheckHost(in.IP); err != nil {
				bad(fmt.Sprintf("groups.%s.instances[%d].ip", g, i), "%v", err)
			}
		}
	}
	return ps
}

// refusedRanges are never reached unless an allowlist entry lies inside
// them: link-local addresses, which include the metadata services of most
// clouds (169.254.169.254), and Alibaba Cloud's and AWS's other metadata
// addresses. Alibaba: https://www.alibabacloud.com/help/en/ecs/user-guide/view-instance-metadata
var refusedRanges = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("169.254.0.0/16"), "a link-local address (cloud metadata services live there)"},
	{netip.MustParsePrefix("fe80::/10"), "a link-local address"},
	{netip.MustParsePrefix("100.100.100.200/32"), "the Alibaba Cloud metadata service"},
	{netip.MustParsePrefix("fd00:ec2::254/128"), "a cloud metadata service"},
}

// Allowlist is a parsed policy.network list. The zero list allows every
// address but the refused ranges.
type Allowlist struct {
	field    string // policy.network.deploy
	ref      string // where it is defined, for messages
	names    []string
	prefixes []netip.Prefix
}

type hostEntry struct {
	name   string
	prefix netip.Prefix
}

func parseHostEntry(s string, names bool) (hostEntry, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return hostEntry{prefix: p.Masked()}, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return hostEntry{prefix: netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen())}, nil
	}
	if !names {
		return hostEntry{}, fmt.Errorf("must be an IP address or a CIDR prefix such as 10.0.0.0/8, got %q", s)
	}
	name := strings.ToLower(strings.TrimSuffix(s, "."))
	rest := strings.TrimPrefix(name, "*.")
	if rest == "" || strings.ContainsAny(rest, "*/:@ ") || strings.Contains(rest, "..") {
		return hostEntry{}, fmt.Errorf("must be a host name, *.domain, an IP address or a CIDR prefix, got %q", s)
	}
	return hostEntry{name: name}, nil
}

func newAllowlist(field string, entries []string, file string, line int) *Allowlist {
	a := &Allowlist{field: field, ref: field + " in " + file}
	if line > 0 && len(entries) > 0 {
		a.ref = fmt.Sprintf("%s in %s:%d", field, file, line)
	}
	for _, e := range entries {
		h, err := parseHostEntry(e, true) // validation refused the bad ones
		switch {
		case err != nil:
		case h.name != "":
			a.names = append(a.names, h.name)
		default:
			a.prefixes = append(a.prefixes, h.prefix)
		}
	}
	return a
}

// NewAllowlist builds an allowlist from entries, for tests and tools that
// have no configuration file.
func NewAllowlist(field string, entries ...string) *Allowlist {
	return newAllowlist(field, entries, "the daemon config", 0)
}

func (a *Allowlist) set() bool { return len(a.names) > 0 || len(a.prefixes) > 0 }

// nameAllowed reports whether a host name is listed (exactly or by *.suffix).
func (a *Allowlist) nameAllowed(host string) bool {
	host = strings.ToLower(strings.TrimSuffix(host, "."))
	for _, n := range a.names {
		if n == host || (strings.HasPrefix(n, "*.") && strings.HasSuffix(host, n[1:])) {
			return true
		}
	}
	return false
}

// CheckHost is the check without I/O made when a service file is loaded:
// an IP address must be allowed as an address, a host name must be listed
// (when the list is not empty). The address a name resolves to is checked
// on every connection (CheckDial).
func (a *Allowlist) CheckHost(host string) error {
	if ip, err := netip.ParseAddr(strings.Trim(host, "[]")); err == nil {
		return a.CheckDial(host, ip)
	}
	if a.set() && !a.nameAllowed(host) {
		return fmt.Errorf("host %s is not allowed by %s", host, a.ref)
	}
	return nil
}

// CheckDial reports whether a connection for host (as written in the URL)
// may go to ip (what it resolved to): ip must not be in a refused range
// unless an entry inside that range lists it, and, when the list is not
// empty, host must be a listed name or ip a listed address.
func (a *Allowlist) CheckDial(host string, ip netip.Addr) error {
	ip = ip.Unmap()
	for _, r := range refusedRanges {
		if !r.prefix.Contains(ip) {
			continue
		}
		for _, p := range a.prefixes {
			if p.Contains(ip) && p.Bits() >= r.prefix.Bits() && r.prefix.Contains(p.Addr()) {
				return nil // explicitly allowed
			}
		}
		return fmt.Errorf("%s is %s: refused unless %s lists it explicitly", describeHost(host, ip), r.what, a.field)
	}
	if !a.set() || a.nameAllowed(host) {
		return nil
	}
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return nil
		}
	}
	return fmt.Errorf("%s is not allowed by %s", describeHost(host, ip), a.ref)
}

func describeHost(host string, ip netip.Addr) string {
	if h := strings.Trim(host, "[]"); h != ip.String() && h != "" {
		return fmt.Sprintf("%s (%s)", host, ip)
	}
	return ip.String()
}
