package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/spectest"
)

var update = flag.Bool("update", false, "rewrite golden files")

// TestMain checks that no test leaves goroutines behind, except those the
// Nacos SDK never stops (the demo's apps register through it).
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, nacostest.IgnoreSDKGoroutines()...)
}

func tandem(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = run(context.Background(), args, &out, &errb)
	return code, out.String(), errb.String()
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
	}
	want, err := os.ReadFile(path)
	require.NoError(t, err, "run go test ./cmd/tandem -update to create it")
	require.Equal(t, string(want), got)
}

func TestValidateExamplesPasses(t *testing.T) {
	code, out, errOut := tandem(t, "validate", "../../examples", "--config", "../../examples/tandem.yaml")
	require.Equal(t, exitOK, code, errOut)
	require.Equal(t, "ok: 3 services and ../../examples/tandem.yaml valid (gateway, push, user-service)\n", out)
}

func TestValidateReportsEveryProblemAndExits1(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "services"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services", "user.yaml"), []byte(`service: user
active: A
version: "1.0"
groups:
  A: {instances: [{ip: 10.0.0.1, port: 80, id: a}]}
  B: {instances: [{ip: 10.0.0.2, port: 0, id: b}]}
traffic: [{alb: prod, serverGroup: sgp-1}]
deploy: {exec: [./deploy.sh]}
health: {http: {path: healthz}, version: {http: /version}}
`), 0o644))
	code, out, errOut := tandem(t, "validate", dir)
	require.Equal(t, exitFail, code)
	require.Empty(t, out)
	svc := filepath.Join(dir, "services", "user.yaml")
	require.Equal(t, svc+":6: groups.B.instances[0].port: must be 1..65535\n"+
		svc+":9: health.http.path: must start with /, got \"healthz\"\n"+
		"2 problems; nothing was changed\n", errOut)
}

func TestUsageErrorsExit2(t *testing.T) {
	code, _, errOut := tandem(t, "validate")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "expected one directory")
	code, _, errOut = tandem(t, "frobnicate")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, `unknown command "frobnicate"`)
	code, _, _ = tandem(t, "plan", "--output", "yaml", "../../examples")
	require.Equal(t, exitUsage, code)
	code, _, errOut = tandem(t, "release", "--sign-passphrase-env", "PASS", "user", "1.1.0")
	require.Equal(t, exitUsage, code)
	require.Contains(t, errOut, "--sign-passphrase-env needs --sign-key")
}

func TestReleaseRefusesAnUnreadableSigningKeyBeforeTouchingTheRepo(t *testing.T) {
	key := filepath.Join(t.TempDir(), "key.asc")
	require.NoError(t, os.WriteFile(key, []byte("not a key\n"), 0o600))
	code, _, errOut := tandem(t, "release", "--repo", t.TempDir(), "--sign-key", key, "user", "1.1.0")
	require.Equal(t, exitFail, code)
	require.Contains(t, errOut, "signing key "+key+": not an OpenPGP key")
}

func TestHelpExits0(t *testing.T) {
	code, out, _ := tandem(t, "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "validate")
	code, out, _ = tandem(t, "plan", "--help")
	require.Equal(t, exitOK, code)
	require.Contains(t, out, "Usage: tandem plan [flags] DIR")
}

func TestPlanOfExamplesMatchesGolden(t *testing.T) {
	code, out, errOut := tandem(t, "plan", "../../examples", "--config", "../../examples/tandem.yaml")
	require.Equal(t, exitOK, code, errOut)
	golden(t, "plan-examples.golden", out)
}

func TestPlanJSONMatchesGolden(t *testing.T) {
	code, out, errOut := tandem(t, "plan", "-o", "json", "../../examples")
	require.Equal(t, exitOK, code, errOut)
	golden(t, "plan-examples.json.golden", out)
}

func TestValidateAndPlanWarnAboutBindingsWithoutAListener(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "services"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services", "user.yaml"), []byte(`service: user
active: A
version: "1.0"
groups:
  A: {instances: [{ip: 10.0.0.1, port: 80, id: a}]}
  B: {instances: [{ip: 10.0.0.2, port: 80, id: b}]}
traffic: [{alb: prod, serverGroup: sgp-1}]
deploy: {exec: [./deploy.sh]}
health: {http: {path: /healthz}, version: {http: /version}}
`), 0o644))
	want := filepath.Join(dir, "services", "user.yaml") + ":7: traffic[0]: warning: binding alb:prod/sgp-1 names no listener: the shift cannot be confirmed by the LB's health checks (set listener to the listener that forwards to sgp-1)\n"
	for _, cmd := range []string{"validate", "plan"} {
		code, _, errOut := tandem(t, cmd, dir)
		require.Equal(t, exitOK, code, "%s: a warning is not a failure", cmd)
		require.Equal(t, want, errOut, cmd)
	}
}

// The alias bomb that took `tandem validate` past 3 GB is refused with the
// line where the budget ran out first, at most MaxProblems more, and a count
// of the rest.
func TestValidateRefusesAnAliasBombWithACappedList(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "services"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "services", "bomb.yaml"), spectest.AliasBomb(30_000, 20_000), 0o644))
	code, _, errOut := tandem(t, "validate", dir)
	require.Equal(t, exitFail, code)
	lines := strings.Split(strings.TrimSpace(errOut), "\n")
	require.Len(t, lines, spec.MaxProblems+3)
	require.Regexp(t, `^`+regexp.QuoteMeta(filepath.Join(dir, "services", "bomb.yaml"))+`:7: groups\.A\.instances\[\d+\]: the desired state is too large or uses too many aliases`, lines[0])
	require.Regexp(t, `^\.\.\. and \d+ more problems$`, lines[len(lines)-2])
	require.Regexp(t, `^\d{6} problems; nothing was changed$`, lines[len(lines)-1])
}
