// Package specfile renders the service files of a generated desired state
// (internal/stage, internal/scalebench): one YAML file per service, in the
// spec format of examples/services, with comments a reader of the
// generated repository can follow.
package specfile

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Service is what a generated service file says.
type Service struct {
	Comment string // leading comment lines ("" none)
	Writer  string // who wrote it, for the file's first comment
	Name    string
	Active  spec.Group
	Version string
	A, B    []spec.Instance
	Traffic string // one binding as a YAML flow mapping ("" none)
	Preview string // a preview binding after it, the same way ("" none)
	Nacos   string // the Nacos provider it is registered with ("" none)
	Deploy  Deploy
	Health  Health
	Drain   *Drain  // nil: the spec's defaults
	Verify  *Verify // nil: the spec's defaults
	After   []string
	// Rollout is the rollout block's value as a YAML flow mapping, e.g.
	// "{steps: [{traffic: 10, pause: 1s}]}" ("" none).
	Rollout string
	// Gates is the YAML of the gates mapping, rendered under "gates:"
	// ("" none).
	Gates string
	// Approval is gates.approval as a YAML flow mapping ("" none), added
	// to Gates.
	Approval string
}

// Deploy is the deploy block: HTTP or Exec.
type Deploy struct {
	Comment string
	HTTP    *DeployHTTP
	Exec    []string
	Timeout time.Duration // 0: the spec's default
}

// DeployHTTP is deploy.http.
type DeployHTTP struct {
	URL          string
	PollInterval time.Duration
	TokenEnv     string
}

// Health is the health block: a preset, or GET /healthz.
type Health struct {
	// Preset is health.preset ("" none: the instances answer GET /healthz
	// and GET /version), PresetComment what it checks.
	Preset, PresetComment string
	// VersionFromNacos: the version is the Nacos metadata "version", else
	// GET /version (or the preset's).
	VersionFromNacos bool
	Timeout          time.Duration // 0: the spec's default
	Deadline         time.Duration // 0: the spec's default
}

// Drain is the drain block; the instances take the drain signal on
// /drain.
type Drain struct {
	Propagation        time.Duration
	PropagationComment string
	Quiet, Timeout     time.Duration
	// Evidence is drain.evidence's preset ("" none), EvidenceComment what
	// it reads.
	Evidence, EvidenceComment string
}

// Verify is the verify block.
type Verify struct {
	Window          time.Duration
	LBHealthTimeout time.Duration // 0: the spec's default
}

// Render returns the service file.
func Render(s Service) []byte {
	var b bytes.Buffer
	if err := serviceTemplate.Execute(&b, s); err != nil {
		panic(err) // the template and its data are this package's own
	}
	return b.Bytes()
}

var serviceTemplate = template.Must(template.New("service").Funcs(template.FuncMap{"comment": comment, "list": list, "indent": indent}).Parse(`
{{- with .Comment}}{{comment .}}{{end -}}
# Written by {{.Writer}}.
service: {{.Name}}
active: {{.Active}}
version: "{{.Version}}"
groups:
  A:
    instances:
{{- range .A}}
      - {ip: {{.IP}}, port: {{.Port}}, id: {{.ID}}}
{{- end}}
  B:
    instances:
{{- range .B}}
      - {ip: {{.IP}}, port: {{.Port}}, id: {{.ID}}}
{{- end}}
{{- with .Traffic}}
traffic:
  - {{.}}
{{- with $.Preview}}
  - {{.}}
{{- end}}
{{- end}}
{{- with .Nacos}}
registry:
  nacos: {provider: {{.}}, service: {{$.Name}}}
{{- end}}
deploy:{{with .Deploy.Comment}}                  # {{.}}{{end}}
{{- with .Deploy.HTTP}}
  http: {url: "{{.URL}}"{{with .PollInterval}}, pollInterval: {{.}}{{end}}{{with .TokenEnv}}, tokenEnv: {{.}}{{end}}}
{{- end}}
{{- with .Deploy.Exec}}
  exec: {{list .}}
{{- end}}
{{- with .Deploy.Timeout}}
  timeout: {{.}}
{{- end}}
health:
{{- if .Health.Preset}}
  preset: {{.Health.Preset}}{{with .Health.PresetComment}}      # {{.}}{{end}}
{{- if .Health.VersionFromNacos}}
  version: {nacosMetadata: version}
{{- end}}
{{- else}}
  http: {path: /healthz}
  version: {{if .Health.VersionFromNacos}}{nacosMetadata: version}{{else}}{http: /version}{{end}}
{{- end}}
{{- with .Health.Timeout}}
  timeout: {{.}}
{{- end}}
{{- with .Health.Deadline}}
  deadline: {{.}}
{{- end}}
{{- with .Drain}}
drain:
  propagation: {{.Propagation}}{{with .PropagationComment}}   # {{.}}{{end}}
  quiet: {{.Quiet}}
  timeout: {{.Timeout}}
  signal: {http: /drain}   # old instances close their WebSockets with 1001
{{- with .Evidence}}
  evidence: {preset: {{.}}}{{with $.Drain.EvidenceComment}} # {{.}}{{end}}
{{- end}}
{{- end}}
{{- with .Verify}}
verify: {window: {{.Window}}{{with .LBHealthTimeout}}, lbHealthTimeout: {{.}}{{end}}}
{{- end}}
{{- with .After}}
after: [{{range $i, $a := .}}{{if $i}}, {{end}}{{$a}}{{end}}]
{{- end}}
{{- with .Rollout}}
rollout: {{.}}
{{- end}}
{{- if or .Gates .Approval}}
gates:
{{- with .Gates}}
{{indent .}}
{{- end}}
{{- with .Approval}}
  approval: {{.}}   # paused before any traffic until promoted or aborted
{{- end}}
{{- end}}
`))

// comment renders text as YAML comment lines.
func comment(text string) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimSpace(text)) {
		b.WriteString(strings.TrimRight("# "+strings.TrimSpace(line), " ") + "\n")
	}
	return b.String()
}

// list renders strings as a YAML flow sequence of quoted strings.
func list(items []string) string {
	q := make([]string, len(items))
	for i, it := range items {
		q[i] = fmt.Sprintf("%q", it)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// indent indents YAML text by two spaces, without a last newline.
func indent(text string) string {
	var b strings.Builder
	for line := range strings.Lines(strings.TrimRight(text, "\n")) {
		b.WriteString("  " + line)
	}
	return b.String()
}
