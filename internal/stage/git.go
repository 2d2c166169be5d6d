package stage

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/template"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// servicesDir is git.path of the desired-state repository.
const servicesDir = "services"

// The author of the stage's commits.
const (
	authorName  = "Stage Operator"
	authorEmail = "ops@stage.invalid"
)

// repo is the desired-state repository: a local working tree that the
// daemon's Git source follows like any other repository URL.
type repo struct{ dir string }

func newRepo(dir string) (*repo, error) {
	r := &repo{dir: dir}
	if err := os.MkdirAll(filepath.Join(dir, servicesDir), 0o755); err != nil {
		return nil, fmt.Errorf("creating the desired-state repository: %w", err)
	}
	if _, err := r.git("init", "-q", "-b", "main"); err != nil {
		return nil, err
	}
	return r, nil
}

// git runs the git CLI in the repository as the stage's author.
func (r *repo) git(args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = r.dir
	cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME="+authorName, "GIT_AUTHOR_EMAIL="+authorEmail,
		"GIT_COMMITTER_NAME="+authorName, "GIT_COMMITTER_EMAIL="+authorEmail, "GIT_CONFIG_NOSYSTEM=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return strings.TrimSpace(string(out)), nil
}

// seed commits the first desired state: one file per service.
func (r *repo) seed(files map[string][]byte) error {
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(r.dir, servicesDir, name), data, 0o644); err != nil {
			return fmt.Errorf("writing %s: %w", name, err)
		}
	}
	if _, err := r.git("add", "-A"); err != nil {
		return err
	}
	_, err := r.git("commit", "-q", "-m", "the stage's desired state")
	return err
}

// Head returns the commit the repository's branch points at.
func (s *Stage) Head() (string, error) { return s.repo.git("rev-parse", "HEAD") }

func (s *Stage) repoOptions() gitsource.RepoOptions {
	return gitsource.RepoOptions{RepoDir: s.repo.dir, Dir: servicesDir, Config: s.config,
		Author: &object.Signature{Name: authorName, Email: authorEmail, When: time.Now()}}
}

// Release commits a release of service at version, as `tandem release`
// does: the idle group becomes active with the new version. It returns the
// commit.
func (s *Stage) Release(ctx context.Context, service, version string) (string, error) {
	return gitsource.Release(ctx, gitsource.ReleaseOptions{RepoOptions: s.repoOptions(), Service: service, Version: version})
}

// Revert commits the revert of service's last release that is not reverted
// yet, in the form `git revert` gives it (`tandem rollback`): traffic goes
// back to the warm group. It returns the commit.
func (s *Stage) Revert(ctx context.Context, service string) (string, error) {
	return gitsource.Rollback(ctx, gitsource.RollbackOptions{RepoOptions: s.repoOptions(), Service: service})
}

// WaitInSync waits until the daemon reports service in sync at revision
// (its live state matches the desired state of that commit) and returns
// that status. It fails at once when the service stalls at that revision
// (a failed release, a swap back) and when ctx ends.
func (s *Stage) WaitInSync(ctx context.Context, service, revision string) (reconcile.Status, error) {
	if s.daemon == nil {
		return reconcile.Status{}, fmt.Errorf("waiting for %s: the stage runs no daemon", service)
	}
	var st reconcile.Status
	err := poll(ctx, func() (bool, error) {
		var ok bool
		st, ok = s.daemon.Reconciler().Status(service)
		if !ok || st.Revision.Hash != revision {
			return false, nil
		}
		for _, c := range st.Conditions {
			if c.Type == reconcile.ConditionStalled && c.Status {
				return false, fmt.Errorf("%s stalled at %s: %s: %s", service, short(revision), c.Reason, c.Message)
			}
		}
		return st.InSync, nil
	})
	if err != nil {
		return st, fmt.Errorf("waiting for %s in sync at %s (last: %s): %w", service, short(revision), st.Summary, err)
	}
	return st, nil
}

func short(hash string) string { return hash[:min(len(hash), 12)] }

// daemonConfig is tandem.yaml for the stage.
func (s *Stage) daemonConfig() *spec.Config {
	cfg := &spec.Config{
		// The source watches the local repository's refs, so a commit is
		// fetched at once; the poll is only the fallback.
		Git:       spec.GitConfig{URL: s.repo.dir, Branch: "main", Path: servicesDir, Interval: spec.Duration(10 * time.Second)},
		StateDir:  filepath.Join(s.opts.Dir, "state"),
		Listen:    "127.0.0.1:0",
		Reconcile: spec.ReconcileConfig{Interval: spec.Duration(30 * time.Second), Concurrency: 4},
	}
	if s.nacos.provider != nil {
		cfg.Providers.Nacos = []spec.NacosProvider{*s.nacos.provider}
	}
	if h := s.lbs.haproxy; h != nil {
		cfg.Providers.HAProxy = []spec.HAProxyProvider{{Name: providerName, Socket: h.Socket}}
	}
	if a := s.lbs.alibaba; a != nil {
		cfg.Providers.ALB = []spec.AlibabaProvider{a.provider}
		cfg.Providers.SLB = []spec.AlibabaProvider{a.provider}
	}
	cfg.Default()
	return cfg
}

// providerName names every provider instance of the stage's config.
const providerName = "stage"

// specFiles renders each service's file of the desired state.
func (s *Stage) specFiles(apps instances) map[string][]byte {
	files := map[string][]byte{}
	for _, svc := range s.opts.Services {
		var b bytes.Buffer
		err := serviceTemplate.Execute(&b, map[string]any{
			"S": svc, "A": apps[svc.Name][spec.GroupA], "B": apps[svc.Name][spec.GroupB],
			"Binding": s.lbs.binding(svc), "Provider": providerName, "DeployURL": s.deployURL(), "DeployTokenEnv": s.opts.DeployTokenEnv,
			"T": s.opts.Timing, "Propagation": s.opts.Timing.propagation(svc),
		})
		if err != nil {
			panic(err) // the template and its data are the stage's own
		}
		files[svc.Name+".yaml"] = b.Bytes()
	}
	return files
}

var serviceTemplate = template.Must(template.New("service").Parse(`# Written by internal/stage: demo apps on loopback.
service: {{.S.Name}}
active: {{.S.Active}}
version: "{{.S.Version}}"
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
{{- with .Binding}}
traffic:
  - {{.}}
{{- end}}
{{- if .S.Nacos}}
registry:
  nacos: {provider: {{.Provider}}, service: {{.S.Name}}}
{{- end}}
deploy:
  http: {url: "{{.DeployURL}}", pollInterval: 50ms{{with .DeployTokenEnv}}, tokenEnv: {{.}}{{end}}}
  timeout: {{.T.DeployTimeout}}
health:
  http: {path: /healthz}
  version: {{if .S.VersionFromNacos}}{nacosMetadata: version}{{else}}{http: /version}{{end}}
  timeout: 1s
  deadline: {{.T.HealthDeadline}}
drain:
  propagation: {{.Propagation}}
  quiet: {{.T.Quiet}}
  timeout: {{.T.DrainTimeout}}
  signal: {http: /drain}
  metrics: /metrics
verify: {window: {{.T.VerifyWindow}}}
{{- with .S.After}}
after: [{{range $i, $a := .}}{{if $i}}, {{end}}{{$a}}{{end}}]
{{- end}}
`))
