package stage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/tandemhq/tandem/internal/specfile"
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

// Subject returns the subject line of a commit.
func (s *Stage) Subject(commit string) (string, error) {
	return s.repo.git("log", "-1", "--format=%s", commit)
}

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

// ReleaseAll commits one release of several services (service -> version)
// as an operator editing their files would: in each file the idle group
// becomes active with the new version. The result is validated before it
// is committed; on error the working tree is restored. It returns the
// commit.
func (s *Stage) ReleaseAll(versions map[string]string) (string, error) {
	set, err := s.loadHead()
	if err != nil {
		return "", err
	}
	for name := range versions {
		if _, ok := set.Get(name); !ok {
			return "", fmt.Errorf("releasing %s: no such service (have %s)", name, strings.Join(set.Names(), ", "))
		}
	}
	var parts []string
	edit := func() error {
		for _, o := range s.opts.Services {
			version, ok := versions[o.Name]
			if !ok {
				continue
			}
			svc, _ := set.Get(o.Name)
			to := svc.Active.Other()
			path := filepath.Join(s.repo.dir, servicesDir, o.Name+".yaml")
			data, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("releasing %s: %w", o.Name, err)
			}
			// The stage's own files: one top-level line each.
			data = activeLine.ReplaceAll(data, []byte("active: "+string(to)))
			data = versionLine.ReplaceAll(data, fmt.Appendf(nil, "version: %q", version))
			if err := os.WriteFile(path, data, 0o644); err != nil {
				return fmt.Errorf("releasing %s: %w", o.Name, err)
			}
			parts = append(parts, fmt.Sprintf("%s %s to group %s", o.Name, version, to))
		}
		_, err := s.loadHead()
		return err
	}
	if err := edit(); err != nil {
		_, restoreErr := s.repo.git("checkout", "--", servicesDir)
		return "", errors.Join(err, restoreErr)
	}
	if _, err := s.repo.git("commit", "-q", "-a", "-m", "release "+strings.Join(parts, ", ")); err != nil {
		return "", err
	}
	return s.Head()
}

var (
	activeLine  = regexp.MustCompile(`(?m)^active: .*$`)
	versionLine = regexp.MustCompile(`(?m)^version: .*$`)
	rolloutLine = regexp.MustCompile(`(?m)^rollout: .*\n?`)
)

// SetRollout commits a new rollout for service: rollout is the spec's
// rollout as a YAML flow mapping ("" removes it). Only how the next
// release moves traffic changes. It returns the commit.
func (s *Stage) SetRollout(service, rollout string) (string, error) {
	path := filepath.Join(s.repo.dir, servicesDir, service+".yaml")
	data, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("setting the rollout of %s: %w", service, err)
	}
	data = rolloutLine.ReplaceAll(data, nil)
	if rollout != "" {
		data = fmt.Appendf(bytes.TrimRight(data, "\n"), "\nrollout: %s\n", rollout)
	}
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return "", fmt.Errorf("setting the rollout of %s: %w", service, err)
	}
	if _, err := s.loadHead(); err != nil {
		_, restoreErr := s.repo.git("checkout", "--", servicesDir)
		return "", errors.Join(err, restoreErr)
	}
	if _, err := s.repo.git("commit", "-q", "-a", "-m", fmt.Sprintf("%s: rollout %s", service, orNone(rollout))); err != nil {
		return "", err
	}
	return s.Head()
}

func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}

// loadHead loads and validates the desired state in the working tree.
func (s *Stage) loadHead() (*spec.Set, error) {
	set, err := spec.Load(os.DirFS(s.repo.dir), servicesDir, s.config)
	if err != nil {
		return nil, fmt.Errorf("the desired state in %s is invalid: %w", s.repo.dir, err)
	}
	return set, nil
}

// RevertCommit commits `git revert` of commit and returns the new commit.
func (s *Stage) RevertCommit(commit string) (string, error) {
	if _, err := s.repo.git("revert", "--no-edit", commit); err != nil {
		return "", err
	}
	return s.Head()
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
		st, ok = s.Daemon().Reconciler().Status(service)
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
	if s.opts.PrometheusURL != "" {
		cfg.Providers.Prometheus = []spec.PrometheusProvider{{Name: providerName, URL: s.opts.PrometheusURL}}
	}
	cfg.Policy.Hooks.Commands = s.opts.HookCommands
	if s.opts.DeployTokenEnv != "" {
		// The test's own variable: let the service files name it.
		cfg.Policy.SpecEnv.Names = []string{s.opts.DeployTokenEnv}
	}
	cfg.Default()
	return cfg
}

// providerName names every provider instance of the stage's config.
const providerName = "stage"

// specFiles renders each service's file of the desired state.
func (s *Stage) specFiles(apps instances) map[string][]byte {
	files := map[string][]byte{}
	t := s.opts.Timing
	for _, svc := range s.opts.Services {
		f := specfile.Service{
			Comment: svc.Comment, Writer: "internal/stage: demo apps on loopback",
			Name: svc.Name, Active: svc.Active, Version: svc.Version,
			A: apps[svc.Name][spec.GroupA], B: apps[svc.Name][spec.GroupB],
			Traffic: s.lbs.binding(svc), Preview: previewBinding(svc),
			Deploy: specfile.Deploy{Comment: "the demo fleet's deploy system restarts the group's apps at the version",
				HTTP:    &specfile.DeployHTTP{URL: s.deployURL(), PollInterval: 50 * time.Millisecond, TokenEnv: s.opts.DeployTokenEnv},
				Timeout: t.DeployTimeout},
			Health: specfile.Health{VersionFromNacos: svc.VersionFromNacos, Timeout: time.Second, Deadline: t.HealthDeadline},
			Drain:  &specfile.Drain{Propagation: t.propagation(svc), Quiet: t.Quiet, Timeout: t.DrainTimeout},
			Verify: &specfile.Verify{Window: t.VerifyWindow, LBHealthTimeout: t.LBHealthTimeout},
			After:  svc.After, Approval: svc.Approval,
			Gates: svc.Gates, Rollout: svc.Rollout,
		}
		if svc.Nacos {
			f.Nacos = providerName
			f.Drain.PropagationComment = "Nacos consumers' caches"
		}
		f.Drain.Evidence, f.Drain.EvidenceComment = "demo", "in-flight requests and WebSockets at /metrics as drain evidence"
		if svc.Java {
			f.Writer = "internal/stage: e2e/java's Spring Boot provider on loopback"
			f.Health.Preset, f.Health.PresetComment = "spring-boot", `/actuator/health {"status":"UP"}; version: build.version of /actuator/info`
			f.Drain.Evidence, f.Drain.EvidenceComment = "spring-boot", "Micrometer's requests in flight at /actuator/prometheus"
		}
		files[svc.Name+".yaml"] = specfile.Render(f)
	}
	return files
}
