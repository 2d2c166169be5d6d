package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/check"
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	"github.com/tandemhq/tandem/providers/alibaba/emulator/emutest"
)

func TestCheckCommand(t *testing.T) {
	e, p := emutest.Start(t, "prod-hz", emulator.Options{})
	require.NoError(t, e.Seed(emulator.State{
		ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", Servers: []*emulator.Server{
			{ID: "i-a1", IP: "10.0.0.1", Port: 8080, Weight: 100}, {ID: "i-b1", IP: "10.0.0.2", Port: 8080, Weight: 0}}}},
		Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}},
	}))
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tandem.yaml")
	require.NoError(t, os.WriteFile(cfg, fmt.Appendf(nil, `git: {url: /srv/fleet}
providers:
  alb: [{name: prod-hz, region: cn-hangzhou, endpoint: %q, protocol: http, accessKeyIdEnv: %s, accessKeySecretEnv: %s}]
policy: {hooks: {commands: [./deploy.sh]}}
`, p.Endpoint, p.AccessKeyIDEnv, p.AccessKeySecretEnv), 0o644))
	fleet := filepath.Join(dir, "fleet")
	require.NoError(t, os.MkdirAll(filepath.Join(fleet, "services"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(fleet, "services", "user.yaml"), []byte(`service: user-service
active: A
version: "1.0.0"
groups:
  A: {instances: [{ip: 10.0.0.1, port: 8080, id: i-a1}]}
  B: {instances: [{ip: 10.0.0.2, port: 8080, id: i-b1}]}
traffic:
  - {alb: prod-hz, serverGroup: sgp-1, listener: lsn-1}
deploy: {exec: ["./deploy.sh"]}
health: {http: {path: /healthz}, version: {http: /version}}
`), 0o644))

	code, out, errOut := tandem(t, "check", fleet, "--config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "0 errors, 0 warnings (checked 1 binding, 0 registry services, 1 provider instance)")

	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b1", 100))
	code, out, _ = tandem(t, "check", fleet, "--config", cfg, "-o", "json")
	require.Equal(t, 1, code, "an error makes check exit 1")
	var rep check.Report
	require.NoError(t, json.Unmarshal([]byte(out), &rep))
	require.Len(t, rep.Findings, 1)
	require.Equal(t, check.Error, rep.Findings[0].Severity)
	require.Equal(t, filepath.Join(fleet, "services", "user.yaml"), rep.Findings[0].File, "the file as the operator named the directory")
	require.Equal(t, 8, rep.Findings[0].Line)

	code, _, errOut = tandem(t, "check", fleet)
	require.Equal(t, 2, code)
	require.Contains(t, errOut, "--config is required")
}
