package spec

import (
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"
)

// Config is the daemon's own configuration (tandem.yaml). It is not kept in
// Git with the desired state, and it never holds a secret: every credential
// is read from an environment variable that a *Env field names.
type Config struct {
	Git       GitConfig       `yaml:"git" json:"git"`
	StateDir  string          `yaml:"stateDir" json:"stateDir"`
	Listen    string          `yaml:"listen" json:"listen"`
	API       APIConfig       `yaml:"api" json:"api"`
	Reconcile ReconcileConfig `yaml:"reconcile" json:"reconcile"`
	Drift     DriftConfig     `yaml:"drift" json:"drift"`
	Providers Providers       `yaml:"providers" json:"providers"`
	Notify    []Notifier      `yaml:"notify" json:"notify,omitempty"`
	HA        *HAConfig       `yaml:"ha" json:"ha,omitempty"`
	Policy    Policy          `yaml:"policy" json:"policy"` // what the desired state in Git may make the daemon do (policy.go)
	pos       positions
	file      string
}

// GitConfig is the desired-state source.
type GitConfig struct {
	URL      string      `yaml:"url" json:"url"` // https://, ssh://, git@host:path, file:// or a local path
	Branch   string      `yaml:"branch" json:"branch"`
	Path     string      `yaml:"path" json:"path"` // directory of service files inside the repo
	Interval Duration    `yaml:"interval" json:"interval"`
	Auth     GitAuth     `yaml:"auth" json:"auth"`
	Verify   *GitVerify  `yaml:"verify" json:"verify,omitempty"`
	Webhook  *GitWebhook `yaml:"webhook" json:"webhook,omitempty"`
	// AllowNonFastForward accepts a new head that does not descend from the
	// revision in force (a reset and force push). Off, such a head is
	// refused: with signatures on, an old signed commit pushed again would
	// otherwise downgrade the desired state. git revert and tandem rollback
	// make new descendant commits and need no such permission.
	AllowNonFastForward bool `yaml:"allowNonFastForward" json:"allowNonFastForward,omitempty"`
	// MaxFetchBytes bounds the pack one fetch may bring (default 64 MiB);
	// a larger fetch fails and the revision in force stays.
	MaxFetchBytes int64 `yaml:"maxFetchBytes" json:"maxFetchBytes"`
}

// GitAuth names where credentials come from.
type GitAuth struct {
	UsernameEnv      string `yaml:"usernameEnv" json:"usernameEnv,omitempty"`
	PasswordEnv      string `yaml:"passwordEnv" json:"passwordEnv,omitempty"`
	TokenEnv         string `yaml:"tokenEnv" json:"tokenEnv,omitempty"`
	SSHKeyFile       string `yaml:"sshKeyFile" json:"sshKeyFile,omitempty"`
	SSHPassphraseEnv string `yaml:"sshPassphraseEnv" json:"sshPassphraseEnv,omitempty"`
	KnownHostsFile   string `yaml:"knownHostsFile" json:"knownHostsFile,omitempty"`
}

// GitVerify turns on commit signature verification.
type GitVerify struct {
	Keyring        string `yaml:"keyring" json:"keyring,omitempty"`               // armored OpenPGP public keys
	AllowedSigners string `yaml:"allowedSigners" json:"allowedSigners,omitempty"` // ssh allowed_signers file
}

// GitWebhook configures POST /hooks/git.
type GitWebhook struct {
	SecretEnv string `yaml:"secretEnv" json:"secretEnv"`
}

// APIConfig protects the HTTP API and the dashboard (docs/security.md).
type APIConfig struct {
	// TokenEnv names the bearer token of the mutating endpoints (sync,
	// suspend). It grants reading too.
	TokenEnv string `yaml:"tokenEnv" json:"tokenEnv,omitempty"`
	// ReadTokenEnv names a token that every read needs once it is set: the
	// GETs under /api/v1/, the event stream and the dashboard.
	ReadTokenEnv string `yaml:"readTokenEnv" json:"readTokenEnv,omitempty"`
	// MetricsRequireToken makes /metrics need a token too (off by default,
	// for scrapers that send none).
	MetricsRequireToken bool `yaml:"metricsRequireToken" json:"metricsRequireToken,omitempty"`
	// AllowedHosts are the host names requests may name in their Host
	// header besides IP addresses, localhost and the host of listen ("*":
	// any), against DNS rebinding.
	AllowedHosts []string `yaml:"allowedHosts" json:"allowedHosts,omitempty"`
	// MaxStreams bounds the event streams open at once.
	MaxStreams int `yaml:"maxStreams" json:"maxStreams"`
	// MetadataKeys are the registry metadata keys whose values status
	// shows besides each service's health.version.nacosMetadata; the values
	// of other keys are shown as <redacted>.
	MetadataKeys []string `yaml:"metadataKeys" json:"metadataKeys,omitempty"`

	// Signed approval links (gates.approval): ExternalURL is where people
	// reach this API (the links' base); LinkKeyEnv names the HMAC-SHA256
	// key that signs them. Without both, chat messages carry no links.
	ExternalURL string   `yaml:"externalURL" json:"externalURL,omitempty"`
	LinkKeyEnv  string   `yaml:"linkKeyEnv" json:"linkKeyEnv,omitempty"`
	LinkTTL     Duration `yaml:"linkTTL" json:"linkTTL"` // how long a link is valid (bounded by the gate's timeout)
}

// MinLinkKeyBytes is the shortest key api.linkKeyEnv may name.
const MinLinkKeyBytes = 32

// ReconcileConfig tunes the loop.
type ReconcileConfig struct {
	Interval    Duration `yaml:"interval" json:"interval"` // full resync of every service
	Concurrency int      `yaml:"concurrency" json:"concurrency"`
}

// DriftConfig says what to do when live state changes behind Tandem's back.
type DriftConfig struct {
	Mode   string   `yaml:"mode" json:"mode"`     // alert | heal
	Repeat Duration `yaml:"repeat" json:"repeat"` // re-send an unresolved alert this often
}

// Drift modes.
const (
	DriftAlert = "alert"
	DriftHeal  = "heal"
)

// Providers are the named provider instances that bindings refer to.
type Providers struct {
	ALB     []AlibabaProvider `yaml:"alb" json:"alb,omitempty"`
	SLB     []AlibabaProvider `yaml:"slb" json:"slb,omitempty"`
	Nacos   []NacosProvider   `yaml:"nacos" json:"nacos,omitempty"`
	HAProxy []HAProxyProvider `yaml:"haproxy" json:"haproxy,omitempty"`
	// Prometheus are the servers analysis gates query (gate_analysis.go).
	Prometheus []PrometheusProvider `yaml:"prometheus" json:"prometheus,omitempty"`
	// Ext holds the provider instances of registered load-balancer kinds
	// (RegisterLBKind), by kind, written in YAML like the built-in ones.
	Ext map[string][]ProviderConfig `yaml:"-" json:"ext,omitempty"`
}

// AlibabaProvider is one ALB or SLB account and region.
type AlibabaProvider struct {
	Name     string `yaml:"name" json:"name"`
	Region   string `yaml:"region" json:"region"`
	Endpoint string `yaml:"endpoint" json:"endpoint,omitempty"` // host[:port]; empty: the regional endpoint
	Protocol string `yaml:"protocol" json:"protocol,omitempty"` // https (default) or http
	// Network is public (default: the public endpoint) or vpc (the VPC
	// endpoint, <product>-vpc.<region>.aliyuncs.com, reachable only from
	// inside Alibaba Cloud VPCs). Ignored when Endpoint is set.
	Network string `yaml:"network" json:"network,omitempty"`
	// RateLimit is this instance's own budget of OpenAPI calls; every call
	// (retries included) waits for it.
	RateLimit RateLimit `yaml:"rateLimit" json:"rateLimit"`
	// Credentials: when AccessKeyIDEnv is empty the Alibaba default credential
	// chain is used (environment, OIDC, profile, ECS RAM role).
	AccessKeyIDEnv     string   `yaml:"accessKeyIdEnv" json:"accessKeyIdEnv,omitempty"`
	AccessKeySecretEnv string   `yaml:"accessKeySecretEnv" json:"accessKeySecretEnv,omitempty"`
	SecurityTokenEnv   string   `yaml:"securityTokenEnv" json:"securityTokenEnv,omitempty"`
	SignatureVersion   string   `yaml:"signatureVersion" json:"signatureVersion,omitempty"` // v3 (default, ACS3-HMAC-SHA256) or v2
	ConnectTimeout     Duration `yaml:"connectTimeout" json:"connectTimeout"`
	ReadTimeout        Duration `yaml:"readTimeout" json:"readTimeout"`
	JobTimeout         Duration `yaml:"jobTimeout" json:"jobTimeout"` // ALB async job ceiling
	RetryTimeout       Duration `yaml:"retryTimeout" json:"retryTimeout"`
}

// Networks of an Alibaba provider instance (AlibabaProvider.Network).
const (
	NetworkPublic = "public"
	NetworkVPC    = "vpc"
)

// RateLimit is a token bucket: CallsPerSecond tokens a second, at most
// Burst saved up. A call that finds the bucket empty waits; it does not fail.
type RateLimit struct {
	CallsPerSecond float64 `yaml:"callsPerSecond" json:"callsPerSecond"`
	Burst          int     `yaml:"burst" json:"burst"`
}

// Default rate limit of an Alibaba provider instance. Alibaba sets
// per-API, per-account QPS limits in Quota Center ("API rate limits",
// https://www.alibabacloud.com/help/en/server-load-balancer/latest/470161);
// their values for the APIs Tandem calls are not published in a place we
// could read (UNVERIFIED), so the default is conservative: 50 calls a
// second per instance, which keeps 1,000 services (2.2 calls each per
// pass) under one pass per 30 s resync, with a burst of 100.
const (
	DefaultCallsPerSecond = 50
	DefaultBurst          = 100
)

// What a Nacos provider's servers run (NacosProvider.Server).
const (
	NacosServerNacos  = "nacos"   // the official Nacos 2.x or 3.x
	NacosServerRNacos = "r-nacos" // r-nacos, a Nacos-compatible server (v1 API only)
)

// NacosProvider is one Nacos cluster.
type NacosProvider struct {
	Name        string   `yaml:"name" json:"name"`
	Servers     []string `yaml:"servers" json:"servers"` // host:port of the HTTP API; gRPC is port+1000 unless grpcPort is set
	GRPCPort    int      `yaml:"grpcPort" json:"grpcPort,omitempty"`
	ContextPath string   `yaml:"contextPath" json:"contextPath"`
	API         string   `yaml:"api" json:"api"` // v1 (Nacos 2.x, r-nacos) or v3 (Nacos 3.x admin API)
	// Server is nacos (default) or r-nacos. r-nacos keeps the metadata an
	// address first registered with until 60 s after the instance leaves
	// (docs/nacos-servers.md), so services on it cannot read their version
	// from the registry (health.version.nacosMetadata is refused).
	Server      string   `yaml:"server" json:"server"`
	UsernameEnv string   `yaml:"usernameEnv" json:"usernameEnv,omitempty"`
	PasswordEnv string   `yaml:"passwordEnv" json:"passwordEnv,omitempty"`
	Timeout     Duration `yaml:"timeout" json:"timeout"`
	// Scheme is http (default) or https. With https the operator API, the
	// SDK's login and its gRPC connection use TLS, verified with CAFile
	// (required: nacos-sdk-go skips verification without one); CertFile and
	// KeyFile are an optional client certificate; ServerName is the name to
	// verify instead of the host (operator API and login; gRPC verifies
	// the host).
	Scheme     string `yaml:"scheme" json:"scheme"`
	CAFile     string `yaml:"caFile" json:"caFile,omitempty"`
	CertFile   string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile    string `yaml:"keyFile" json:"keyFile,omitempty"`
	ServerName string `yaml:"serverName" json:"serverName,omitempty"`
}

// TLS returns the provider's TLS files.
func (p NacosProvider) TLS() TLSFiles {
	return TLSFiles{CAFile: p.CAFile, CertFile: p.CertFile, KeyFile: p.KeyFile, ServerName: p.ServerName}
}

// HAProxyProvider is one HAProxy runtime API socket.
type HAProxyProvider struct {
	Name    string   `yaml:"name" json:"name"`
	Socket  string   `yaml:"socket" json:"socket"` // unix socket path, or host:port of a TCP stats socket
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// Notifier is one notification sink.
type Notifier struct {
	Name      string   `yaml:"name" json:"name"`
	Type      string   `yaml:"type" json:"type"` // webhook | dingtalk | feishu | wecom | slack
	URL       string   `yaml:"url" json:"url,omitempty"`
	URLEnv    string   `yaml:"urlEnv" json:"urlEnv,omitempty"` // robot URLs carry tokens: keep them in the environment
	SecretEnv string   `yaml:"secretEnv" json:"secretEnv,omitempty"`
	Events    []string `yaml:"events" json:"events,omitempty"` // event reasons to send; empty: transitions, drift, stalls, rejected revisions, drain ceilings, Git outages
}

// Notifier types.
var NotifierTypes = []string{"webhook", "dingtalk", "feishu", "wecom", "slack"}

// HAConfig turns on leader election and the etcd journal.
type HAConfig struct {
	Etcd        []string `yaml:"etcd" json:"etcd"`
	Prefix      string   `yaml:"prefix" json:"prefix"`
	LeaseTTL    Duration `yaml:"leaseTTL" json:"leaseTTL"`
	UsernameEnv string   `yaml:"usernameEnv" json:"usernameEnv,omitempty"`
	PasswordEnv string   `yaml:"passwordEnv" json:"passwordEnv,omitempty"`
	// TLS to etcd: used when any of these is set or an endpoint is
	// https://. CAFile verifies etcd's certificate (default: the system's
	// roots); CertFile and KeyFile are an optional client certificate;
	// ServerName is the name to verify instead of the endpoint's host.
	CAFile     string `yaml:"caFile" json:"caFile,omitempty"`
	CertFile   string `yaml:"certFile" json:"certFile,omitempty"`
	KeyFile    string `yaml:"keyFile" json:"keyFile,omitempty"`
	ServerName string `yaml:"serverName" json:"serverName,omitempty"`
}

// TLS returns the etcd client's TLS files.
func (h HAConfig) TLS() TLSFiles {
	return TLSFiles{CAFile: h.CAFile, CertFile: h.CertFile, KeyFile: h.KeyFile, ServerName: h.ServerName}
}

// Defaults of provider instances that their packages use too, for
// configurations built in code.
const (
	DefaultProviderTimeout = 5 * time.Second  // haproxy and nacos timeout, alb and slb connectTimeout
	DefaultReadTimeout     = 10 * time.Second // alb and slb readTimeout
	DefaultJobTimeout      = 2 * time.Minute  // alb jobTimeout
)

// Default fills the optional fields of an ALB or SLB instance.
func (p *AlibabaProvider) Default() {
	setDefault(&p.Protocol, "https")
	setDefault(&p.Network, NetworkPublic)
	setDefault(&p.RateLimit.CallsPerSecond, DefaultCallsPerSecond)
	setDefault(&p.RateLimit.Burst, DefaultBurst)
	setDefault(&p.SignatureVersion, "v3")
	setDefault(&p.ConnectTimeout, Duration(DefaultProviderTimeout))
	setDefault(&p.ReadTimeout, Duration(DefaultReadTimeout))
	setDefault(&p.JobTimeout, Duration(DefaultJobTimeout))
	setDefault(&p.RetryTimeout, Duration(time.Minute))
}

// Validate checks an ALB or SLB instance whose path is base.
func (p AlibabaProvider) Validate(base string, bad func(path, format string, args ...any)) {
	if p.Region == "" {
		bad(base+".region", "is required, e.g. cn-hangzhou")
	}
	if p.Protocol != "http" && p.Protocol != "https" {
		bad(base+".protocol", "must be http or https, got %q", p.Protocol)
	}
	if p.Network != NetworkPublic && p.Network != NetworkVPC {
		bad(base+".network", "must be public or vpc, got %q", p.Network)
	}
	if p.RateLimit.CallsPerSecond < 0 {
		bad(base+".rateLimit.callsPerSecond", "must be positive, got %v", p.RateLimit.CallsPerSecond)
	}
	if p.RateLimit.Burst < 0 {
		bad(base+".rateLimit.burst", "must be positive, got %d", p.RateLimit.Burst)
	}
	if p.SignatureVersion != "v3" && p.SignatureVersion != "v2" {
		bad(base+".signatureVersion", "must be v3 or v2, got %q", p.SignatureVersion)
	}
	if (p.AccessKeyIDEnv == "") != (p.AccessKeySecretEnv == "") {
		bad(base, "set both accessKeyIdEnv and accessKeySecretEnv, or neither to use the default credential chain")
	}
	checkEnv(bad, base+".accessKeyIdEnv", p.AccessKeyIDEnv)
	checkEnv(bad, base+".accessKeySecretEnv", p.AccessKeySecretEnv)
	checkEnv(bad, base+".securityTokenEnv", p.SecurityTokenEnv)
	checkNoURLCredentials(bad, base+".endpoint", p.Endpoint)
}

// Default fills the optional fields of an HAProxy instance.
func (p *HAProxyProvider) Default() { setDefault(&p.Timeout, Duration(DefaultProviderTimeout)) }

// Validate checks an HAProxy instance whose path is base.
func (p HAProxyProvider) Validate(base string, bad func(path, format string, args ...any)) {
	if p.Socket == "" {
		bad(base+".socket", "is required (a unix socket path or host:port)")
	}
}

// Default fills the optional fields of a Nacos instance.
func (p *NacosProvider) Default() {
	setDefault(&p.ContextPath, "/nacos")
	setDefault(&p.API, "v1")
	setDefault(&p.Scheme, "http")
	setDefault(&p.Server, NacosServerNacos)
	setDefault(&p.Timeout, Duration(DefaultProviderTimeout))
}

// Validate checks a Nacos instance whose path is base.
func (p NacosProvider) Validate(base string, bad func(path, format string, args ...any)) {
	if len(p.Servers) == 0 {
		bad(base+".servers", "needs at least one host:port")
	}
	for j, s := range p.Servers {
		field := fmt.Sprintf("%s.servers[%d]", base, j)
		if strings.Contains(s, "@") {
			checkNoURLCredentials(bad, field, s)
		} else if _, _, err := net.SplitHostPort(s); err != nil {
			bad(field, "must be host:port, got %q", s)
		}
	}
	if p.API != "v1" && p.API != "v3" {
		bad(base+".api", "must be v1 (Nacos 2.x) or v3 (Nacos 3.x), got %q", p.API)
	}
	switch p.Server {
	case NacosServerNacos:
	case NacosServerRNacos:
		if p.API != "v1" {
			bad(base+".api", "must be v1 with server r-nacos (r-nacos has no v3 admin API), got %q", p.API)
		}
	default:
		bad(base+".server", "must be nacos (Nacos 2.x or 3.x) or r-nacos, got %q", p.Server)
	}
	if !strings.HasPrefix(p.ContextPath, "/") {
		bad(base+".contextPath", "must start with /, got %q", p.ContextPath)
	}
	if (p.UsernameEnv == "") != (p.PasswordEnv == "") {
		bad(base, "set both usernameEnv and passwordEnv, or neither when auth is off")
	}
	checkEnv(bad, base+".usernameEnv", p.UsernameEnv)
	checkEnv(bad, base+".passwordEnv", p.PasswordEnv)
	switch {
	case p.Scheme != "http" && p.Scheme != "https":
		bad(base+".scheme", "must be http or https, got %q", p.Scheme)
	case p.Scheme == "http" && p.TLS().Set():
		bad(base+".scheme", "must be https when caFile, certFile, keyFile or serverName is set")
	case p.Scheme == "https" && p.CAFile == "":
		// nacos-sdk-go v2.3.5 skips verification of its HTTP login
		// without a CA file (common/tls/tls.go NewTLS).
		bad(base+".caFile", "is required with scheme https (the Nacos SDK would not verify the server without it); for a public CA name the system bundle, e.g. /etc/ssl/certs/ca-certificates.crt")
	case p.Scheme == "https":
		if _, field, err := p.TLS().load(); err != nil {
			bad(base+"."+field, "%v", err)
		}
	}
}

// checkEnv reports an *Env field that does not name an environment variable.
func checkEnv(bad func(path, format string, args ...any), path, name string) {
	if name != "" && !envNameOK(name) {
		bad(path, "must name an environment variable (letters, digits, _), got %q", name)
	}
}

// Default fills the optional fields.
func (c *Config) Default() {
	setDefault(&c.Git.Branch, "main")
	setDefault(&c.Git.Path, "services")
	setDefault(&c.Git.Interval, Duration(30*time.Second))
	setDefault(&c.Git.MaxFetchBytes, 64<<20)
	setDefault(&c.StateDir, "/var/lib/tandem")
	setDefault(&c.Listen, "127.0.0.1:8080")
	setDefault(&c.API.MaxStreams, 32)
	setDefault(&c.API.LinkTTL, Duration(time.Hour))
	setDefault(&c.Reconcile.Interval, Duration(30*time.Second))
	setDefault(&c.Reconcile.Concurrency, 4)
	setDefault(&c.Drift.Mode, DriftAlert)
	setDefault(&c.Drift.Repeat, Duration(time.Hour))
	for _, k := range LBKinds() {
		for _, p := range k.Configured(c) {
			if d, ok := p.(Defaulter); ok {
				d.Default()
			}
		}
	}
	for i := range c.Providers.Nacos {
		c.Providers.Nacos[i].Default()
	}
	for i := range c.Providers.Prometheus {
		c.Providers.Prometheus[i].Default()
	}
	c.Policy.Default()
	if c.HA != nil {
		setDefault(&c.HA.Prefix, "/tandem")
		setDefault(&c.HA.LeaseTTL, Duration(15*time.Second))
	}
}

// Validate reports every problem of the configuration.
func (c *Config) Validate() Problems {
	var ps Problems
	bad := func(path, format string, args ...any) {
		ps = append(ps, Problem{File: c.file, Line: c.pos.line(path), Path: path, Msg: fmt.Sprintf(format, args...)})
	}
	tlsFiles := func(base string, f TLSFiles) {
		if _, field, err := f.load(); err != nil {
			bad(base+"."+field, "%v", err)
		}
	}
	env := func(path, name string) { checkEnv(bad, path, name) }
	if c.Git.URL == "" {
		bad("git.url", "is required (a repository URL or a local path)")
	} else if what := URLCredentials(c.Git.URL); what != "" {
		bad("git.url", "must not contain %s: it would be stored in the config, the Git cache and error messages; name environment variables in git.auth.tokenEnv (or git.auth.usernameEnv and git.auth.passwordEnv) instead", what)
	}
	if c.Git.MaxFetchBytes < 1<<20 {
		bad("git.maxFetchBytes", "must be at least 1048576 (1 MiB), got %d", c.Git.MaxFetchBytes)
	}
	if c.Git.Interval.D() < time.Second {
		bad("git.interval", "must be at least 1s")
	}
	if strings.HasPrefix(c.Git.Path, "/") || strings.Contains(c.Git.Path, "..") {
		bad("git.path", "must be a relative path inside the repository, got %q", c.Git.Path)
	}
	env("git.auth.usernameEnv", c.Git.Auth.UsernameEnv)
	env("git.auth.passwordEnv", c.Git.Auth.PasswordEnv)
	env("git.auth.tokenEnv", c.Git.Auth.TokenEnv)
	env("git.auth.sshPassphraseEnv", c.Git.Auth.SSHPassphraseEnv)
	if v := c.Git.Verify; v != nil && v.Keyring == "" && v.AllowedSigners == "" {
		bad("git.verify", "must set keyring or allowedSigners")
	}
	if w := c.Git.Webhook; w != nil {
		if w.SecretEnv == "" {
			bad("git.webhook.secretEnv", "is required: unsigned webhooks are refused")
		}
		env("git.webhook.secretEnv", w.SecretEnv)
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "must be host:port, got %q", c.Listen)
	}
	env("api.tokenEnv", c.API.TokenEnv)
	env("api.readTokenEnv", c.API.ReadTokenEnv)
	if c.API.MetricsRequireToken && c.API.TokenEnv == "" && c.API.ReadTokenEnv == "" {
		bad("api.metricsRequireToken", "needs api.readTokenEnv or api.tokenEnv: there is no token to require")
	}
	for i, h := range c.API.AllowedHosts {
		if h == "*" && len(c.API.AllowedHosts) > 1 {
			bad(fmt.Sprintf("api.allowedHosts[%d]", i), `"*" (any host) must be the only entry`)
		} else if h != "*" && !hostNameOK(h) {
			bad(fmt.Sprintf("api.allowedHosts[%d]", i), "must be a host name without scheme or port (e.g. tandem.internal), or \"*\", got %q", h)
		}
	}
	c.validateLinks(bad)
	if c.API.MaxStreams < 1 || c.API.MaxStreams > 10000 {
		bad("api.maxStreams", "must be from 1 to 10000, got %d", c.API.MaxStreams)
	}
	for i, k := range c.API.MetadataKeys {
		if k == "" {
			bad(fmt.Sprintf("api.metadataKeys[%d]", i), "must not be empty")
		}
	}
	if c.Reconcile.Concurrency < 1 {
		bad("reconcile.concurrency", "must be at least 1")
	}
	if c.Reconcile.Interval.D() < time.Second {
		bad("reconcile.interval", "must be at least 1s")
	}
	if c.Drift.Mode != DriftAlert && c.Drift.Mode != DriftHeal {
		bad("drift.mode", "must be alert or heal, got %q", c.Drift.Mode)
	}

	names := map[string]string{}
	unique := func(kind string, i int, name string) {
		p := fmt.Sprintf("providers.%s[%d].name", kind, i)
		switch {
		case name == "":
			bad(p, "is required")
		case !nameRE.MatchString(name):
			bad(p, "must be lower-case letters, digits and '-', got %q", name)
		default:
			if prev, dup := names[kind+"/"+name]; dup {
				bad(p, "%s provider %q is already defined at %s", kind, name, prev)
			}
			names[kind+"/"+name] = p
		}
	}
	for _, k := range LBKinds() {
		for i, p := range k.Configured(c) {
			unique(k.Name, i, p.ProviderName())
			if v, ok := p.(Validator); ok {
				v.Validate(fmt.Sprintf("providers.%s[%d]", k.Name, i), bad)
			}
		}
	}
	for i, p := range c.Providers.Nacos {
		unique(KindNacos, i, p.Name)
		p.Validate(fmt.Sprintf("providers.nacos[%d]", i), bad)
	}
	for i, p := range c.Providers.Prometheus {
		unique("prometheus", i, p.Name)
		p.Validate(fmt.Sprintf("providers.prometheus[%d]", i), bad)
	}
	for i, n := range c.Notify {
		base := fmt.Sprintf("notify[%d]", i)
		if !contains(NotifierTypes, n.Type) {
			bad(base+".type", "must be one of %s, got %q", strings.Join(NotifierTypes, ", "), n.Type)
		}
		switch {
		case n.URL == "" && n.URLEnv == "":
			bad(base+".url", "set url or urlEnv")
		case n.URL != "" && n.URLEnv != "":
			bad(base+".url", "set only one of url and urlEnv")
		case n.URL != "":
			if u, err := url.Parse(n.URL); err != nil || (u.Scheme != "http" && u.Scheme != "https") {
				bad(base+".url", "must be an http or https URL")
			}
		}
		env(base+".urlEnv", n.URLEnv)
		env(base+".secretEnv", n.SecretEnv)
	}
	if h := c.HA; h != nil {
		if len(h.Etcd) == 0 {
			bad("ha.etcd", "needs at least one endpoint")
		}
		if h.LeaseTTL.D() < 2*time.Second {
			bad("ha.leaseTTL", "must be at least 2s")
		}
		env("ha.usernameEnv", h.UsernameEnv)
		env("ha.passwordEnv", h.PasswordEnv)
		for i, e := range h.Etcd {
			checkNoURLCredentials(bad, fmt.Sprintf("ha.etcd[%d]", i), e)
		}
		tlsFiles("ha", h.TLS())
		if h.TLS().Set() {
			for i, e := range h.Etcd {
				if strings.HasPrefix(e, "http://") {
					// The etcd client drops TLS for http:// endpoints.
					bad(fmt.Sprintf("ha.etcd[%d]", i), "must be https:// or host:port when caFile, certFile, keyFile or serverName is set, got %q", e)
				}
			}
		}
	}
	c.Policy.validate(bad)
	return ps
}

// nacosProvider returns the Nacos provider of that name.
func (c *Config) nacosProvider(name string) (NacosProvider, bool) {
	for _, p := range c.Providers.Nacos {
		if p.Name == name {
			return p, true
		}
	}
	return NacosProvider{}, false
}

// HasProvider reports whether a provider instance of this kind and name exists.
func (c *Config) HasProvider(kind, name string) bool {
	if kind == KindNacos {
		_, ok := c.nacosProvider(name)
		return ok
	}
	k, ok := LookupLBKind(kind)
	if !ok {
		return false
	}
	return slices.ContainsFunc(k.Configured(c), func(p ProviderConfig) bool { return p.ProviderName() == name })
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// hostNameOK accepts a DNS name or an IP address, without port.
func hostNameOK(s string) bool {
	if net.ParseIP(strings.Trim(s, "[]")) != nil {
		return true
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || strings.HasPrefix(label, "-") || strings.HasSuffix(label, "-") {
			return false
		}
		for _, r := range label {
			if r != '-' && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') {
				return false
			}
		}
	}
	return len(s) <= 253
}

func envNameOK(s string) bool {
	for i, r := range s {
		ok := r == '_' || (r >= 'A' && r <= 'Z') || (r >= 'a' && r <= 'z') || (i > 0 && r >= '0' && r <= '9')
		if !ok {
			return false
		}
	}
	return s != ""
}

// Secret is a credential read from the environment. It never prints itself:
// not in logs, JSON, errors or fmt output.
type Secret string

// Redacted is what Tandem prints in place of a secret, wherever it removes
// one (package redact, provider and Git errors, a Secret).
const Redacted = "<redacted>"

func (s Secret) String() string                { return Redacted }
func (s Secret) GoString() string              { return Redacted }
func (s Secret) MarshalText() ([]byte, error)  { return []byte(Redacted), nil }
func (s Secret) LogValue() slog.Value          { return slog.StringValue(Redacted) }
func (s Secret) Format(f fmt.State, verb rune) { _, _ = f.Write([]byte(Redacted)) }
func (s Secret) Reveal() string                { return string(s) }
func (s Secret) Empty() bool                   { return s == "" }

// SecretFromEnv reads the variable an *Env field names. An empty name gives
// an empty secret; a named but unset variable is an error naming the field.
func SecretFromEnv(field, name string) (Secret, error) {
	if name == "" {
		return "", nil
	}
	v, ok := os.LookupEnv(name)
	if !ok || v == "" {
		return "", fmt.Errorf("%s: environment variable %s is not set", field, name)
	}
	return Secret(v), nil
}
