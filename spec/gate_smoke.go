package spec

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"time"
)

// Defaults of gates.smoke (README "Smoke tests"; change both together).
const (
	DefaultSmokeTimeout     = 5 * time.Second
	DefaultSmokeExecTimeout = 2 * time.Minute
	// MaxSmokeChecks bounds gates.smoke.http: every check runs against
	// every target instance within one step.
	MaxSmokeChecks = 50
)

// SmokeGate is gates.smoke: requests sent to every instance of the target
// group after verify, while it has no traffic, and a command run once with
// the target instances in its environment. Any failure aborts the release;
// the serving group is never touched.
type SmokeGate struct {
	HTTP []SmokeHTTPCheck `yaml:"http" json:"http,omitempty"`
	Exec *SmokeExec       `yaml:"exec" json:"exec,omitempty"`
}

// SmokeHTTPCheck is one request and what its answer must be.
type SmokeHTTPCheck struct {
	Name    string            `yaml:"name" json:"name"`     // default: METHOD path
	Method  string            `yaml:"method" json:"method"` // default GET
	Path    string            `yaml:"path" json:"path"`     // with the query, e.g. /api/users/1?fields=name
	Scheme  string            `yaml:"scheme" json:"scheme"` // http (default) or https
	Port    int               `yaml:"port" json:"port,omitempty"`
	Headers map[string]string `yaml:"headers" json:"headers,omitempty"`
	Body    string            `yaml:"body" json:"body,omitempty"`
	Timeout Duration          `yaml:"timeout" json:"timeout"`
	Expect  SmokeExpect       `yaml:"expect" json:"expect,omitzero"`
}

// SmokeExpect is what a smoke answer must be.
type SmokeExpect struct {
	// Status lists the accepted status codes; empty: any 2xx.
	Status []int `yaml:"status" json:"status,omitempty"`
	// BodyContains must occur in the body, as is.
	BodyContains string `yaml:"bodyContains" json:"bodyContains,omitempty"`
	// BodyMatches is a regular expression (Go RE2 syntax) the body must match.
	BodyMatches string `yaml:"bodyMatches" json:"bodyMatches,omitempty"`
}

// SmokeExec is gates.smoke.exec: a command (argv) that must exit 0.
type SmokeExec struct {
	Command []string `yaml:"command" json:"command"`
	Timeout Duration `yaml:"timeout" json:"timeout"`
}

// StatusOK reports whether code is an accepted status.
func (e SmokeExpect) StatusOK(code int) bool {
	if len(e.Status) == 0 {
		return code >= 200 && code <= 299
	}
	for _, s := range e.Status {
		if s == code {
			return true
		}
	}
	return false
}

// Describe is the expectation in words, for messages.
func (e SmokeExpect) Describe() string {
	var parts []string
	if len(e.Status) == 0 {
		parts = append(parts, "status 2xx")
	} else {
		s := make([]string, len(e.Status))
		for i, c := range e.Status {
			s[i] = fmt.Sprint(c)
		}
		parts = append(parts, "status "+strings.Join(s, " or "))
	}
	if e.BodyContains != "" {
		parts = append(parts, fmt.Sprintf("body containing %q", e.BodyContains))
	}
	if e.BodyMatches != "" {
		parts = append(parts, fmt.Sprintf("body matching /%s/", e.BodyMatches))
	}
	return strings.Join(parts, ", ")
}

func (g *SmokeGate) defaults() {
	if g == nil {
		return
	}
	for i := range g.HTTP {
		c := &g.HTTP[i]
		setDefault(&c.Method, http.MethodGet)
		c.Method = strings.ToUpper(c.Method)
		setDefault(&c.Scheme, "http")
		setDefault(&c.Timeout, Duration(DefaultSmokeTimeout))
		setDefault(&c.Name, c.Method+" "+c.Path)
	}
	if g.Exec != nil {
		setDefault(&g.Exec.Timeout, Duration(DefaultSmokeExecTimeout))
	}
}

var methodRE = regexp.MustCompile(`^[A-Z]+$`)

func (g *SmokeGate) validate(bad func(path, format string, args ...any)) {
	if g == nil {
		return
	}
	if len(g.HTTP) == 0 && g.Exec == nil {
		bad("gates.smoke", "must set http checks or exec (or leave gates.smoke out)")
	}
	if len(g.HTTP) > MaxSmokeChecks {
		bad("gates.smoke.http", "has %d checks, at most %d are allowed", len(g.HTTP), MaxSmokeChecks)
	}
	names := map[string]int{}
	for i, c := range g.HTTP {
		p := fmt.Sprintf("gates.smoke.http[%d]", i)
		if prev, dup := names[c.Name]; dup {
			bad(p+".name", "%q is already the name of gates.smoke.http[%d]; names tell the results apart", c.Name, prev)
		} else {
			names[c.Name] = i
		}
		if !strings.HasPrefix(c.Path, "/") {
			bad(p+".path", "must start with /, got %q", c.Path)
		}
		if !methodRE.MatchString(c.Method) {
			bad(p+".method", "must be an HTTP method such as GET or POST, got %q", c.Method)
		}
		if c.Scheme != "http" && c.Scheme != "https" {
			bad(p+".scheme", "must be http or https, got %q", c.Scheme)
		}
		if c.Port < 0 || c.Port > 65535 {
			bad(p+".port", "must be 1..65535 (or left out: the instance's port), got %d", c.Port)
		}
		for name := range c.Headers {
			if !headerNameOK(name) {
				bad(p+".headers."+name, "must be an HTTP header name (letters, digits and !#$%%&'*+-.^_`|~)")
			}
			if strings.EqualFold(name, "Host") || strings.EqualFold(name, "Content-Length") {
				bad(p+".headers."+name, "is set by Tandem and may not be given")
			}
		}
		if c.Timeout < Duration(10*time.Millisecond) || c.Timeout > Duration(5*time.Minute) {
			bad(p+".timeout", "must be between 10ms and 5m, got %s", c.Timeout)
		}
		for j, s := range c.Expect.Status {
			if s < 100 || s > 599 {
				bad(fmt.Sprintf("%s.expect.status[%d]", p, j), "must be an HTTP status code (100..599), got %d", s)
			}
		}
		if c.Expect.BodyMatches != "" {
			if _, err := regexp.Compile(c.Expect.BodyMatches); err != nil {
				bad(p+".expect.bodyMatches", "is not a valid regular expression: %v", err)
			}
		}
	}
	if e := g.Exec; e != nil {
		switch {
		case len(e.Command) == 0:
			bad("gates.smoke.exec.command", "is required: the command and its arguments")
		case strings.TrimSpace(e.Command[0]) == "":
			bad("gates.smoke.exec.command[0]", "the command must not be empty")
		}
		if e.Timeout < Duration(time.Second) {
			bad("gates.smoke.exec.timeout", "must be at least 1s, got %s", e.Timeout)
		}
	}
}

// headerNameOK reports whether s is an HTTP field name (a token, RFC 9110
// section 5.6.2: https://www.rfc-editor.org/rfc/rfc9110#section-5.6.2).
func headerNameOK(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case strings.ContainsRune("!#$%&'*+-.^_`|~", r):
		default:
			return false
		}
	}
	return true
}
