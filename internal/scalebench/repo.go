package scalebench

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemhq/tandem/internal/specfile"
	"github.com/tandemhq/tandem/spec"
)

// servicesDir is git.path of the desired-state repository.
const servicesDir = "services"

// writeRepo commits the desired state, one file per service, in sync with
// the live state the emulators hold, into a new repository at dir.
func writeRepo(dir string, services []*service) error {
	if err := os.MkdirAll(filepath.Join(dir, servicesDir), 0o755); err != nil {
		return fmt.Errorf("creating the desired-state repository: %w", err)
	}
	for _, s := range services {
		if err := os.WriteFile(filepath.Join(dir, servicesDir, s.name+".yaml"), serviceFile(s), 0o644); err != nil {
			return err
		}
	}
	for _, args := range [][]string{{"init", "-q", "-b", "main"}, {"add", "-A"}, {"commit", "-q", "-m", "the scale benchmark's desired state"}} {
		cmd := exec.Command("git", args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "GIT_AUTHOR_NAME=Scale Bench", "GIT_AUTHOR_EMAIL=bench@scale.invalid",
			"GIT_COMMITTER_NAME=Scale Bench", "GIT_COMMITTER_EMAIL=bench@scale.invalid", "GIT_CONFIG_NOSYSTEM=1")
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("git %s: %w: %s", strings.Join(args, " "), err, bytes.TrimSpace(out))
		}
	}
	return nil
}

// serviceFile renders one service file. The version is read from Nacos
// metadata where the service is registered, else from GET /version. Deploy
// never runs: the benchmark releases nothing.
func serviceFile(s *service) []byte {
	f := specfile.Service{Writer: "internal/scalebench", Name: s.name, Active: s.active, Version: desiredVersion,
		Deploy: specfile.Deploy{Exec: []string{"false"}}, Health: specfile.Health{VersionFromNacos: s.nacos}}
	for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
		var ins []spec.Instance
		for _, in := range s.groups[g] {
			ins = append(ins, spec.Instance{IP: in.ip, Port: in.port, ID: in.id})
		}
		if g == spec.GroupA {
			f.A = ins
		} else {
			f.B = ins
		}
	}
	switch s.lb {
	case spec.KindALB:
		f.Traffic = fmt.Sprintf("{alb: %s, serverGroup: %s, listener: %s}", providerName, s.serverGroup, s.listener)
	case spec.KindSLB:
		f.Traffic = fmt.Sprintf("{slb: %s, loadBalancer: %s, vServerGroup: %s, listenerPort: %d}", providerName, s.loadBalancer, s.vServerGrp, s.listenerPort)
	}
	if s.nacos {
		f.Nacos = providerName
	}
	return specfile.Render(f)
}

// daemonConfig is tandem.yaml: the repository, the emulators, and a
// reconcile interval long enough that only the benchmark's own sync
// requests start passes while it measures.
func daemonConfig(repoDir, stateDir string, concurrency int, a *alibaba, n *nacosSide) *spec.Config {
	cfg := &spec.Config{
		Git:       spec.GitConfig{URL: repoDir, Branch: "main", Path: servicesDir, Interval: spec.Duration(time.Hour)},
		StateDir:  stateDir,
		Listen:    "127.0.0.1:0",
		Reconcile: spec.ReconcileConfig{Interval: spec.Duration(time.Hour), Concurrency: concurrency},
		Providers: spec.Providers{
			ALB:   []spec.AlibabaProvider{a.provider()},
			SLB:   []spec.AlibabaProvider{a.provider()},
			Nacos: []spec.NacosProvider{n.provider()},
		},
		Policy: spec.Policy{Hooks: spec.HookPolicy{Commands: []string{"false"}}},
	}
	cfg.Default()
	return cfg
}

// writeConfig writes cfg to path as JSON, which is YAML too.
func writeConfig(path string, cfg *spec.Config) error {
	b, err := json.MarshalIndent(cfg, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding the daemon config: %w", err)
	}
	return os.WriteFile(path, b, 0o644)
}
