package deploy_test

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var request = providers.DeployRequest{
	Service: "user-service",
	Group:   spec.GroupB,
	Version: "2.4.2",
	Instances: []spec.Instance{
		{IP: "10.0.2.11", Port: 8080, ID: "b1"},
		{IP: "10.0.2.12", Port: 8081, ID: "b2"},
	},
	Revision: "9f3c2e1",
}

// anyCommand lets every command run: these tests choose their own.
var anyCommand = deploy.Policy{CommandAllowed: func(string) bool { return true }}

func execDeployer(t *testing.T, timeout time.Duration, argv ...string) providers.Deployer {
	t.Helper()
	d, err := deploy.New(spec.Deploy{Exec: argv, Timeout: spec.Duration(timeout)}, anyCommand, nil)
	require.NoError(t, err)
	return d
}

func TestExecSucceedsWithTheRequestInItsEnvironmentAndCapturesOutput(t *testing.T) {
	d := execDeployer(t, 10*time.Second, "sh", "-c",
		`echo "service=$TANDEM_SERVICE group=$TANDEM_GROUP version=$TANDEM_VERSION instances=$TANDEM_INSTANCES"; echo warning >&2`)
	res, err := d.Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Equal(t, "service=user-service group=B version=2.4.2 instances=10.0.2.11:8080,10.0.2.12:8081\nwarning\n", res.Output)
}

func TestExecFailures(t *testing.T) {
	for _, tc := range []struct {
		name       string
		argv       []string
		reason     string
		errorParts []string
	}{
		{
			name:       "non-zero exit is permanent DeployFailed with the status and last output lines",
			argv:       []string{"sh", "-c", "echo first; echo 'disk full' >&2; exit 3"},
			reason:     "DeployFailed",
			errorParts: []string{"deploying user-service group B to version 2.4.2", "exit status 3", "first | disk full"},
		},
		{
			name:       "missing command is permanent DeployFailed naming it",
			argv:       []string{"/nonexistent/deploy.sh"},
			reason:     "DeployFailed",
			errorParts: []string{"/nonexistent/deploy.sh", "no such file"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := execDeployer(t, 10*time.Second, tc.argv...).Deploy(t.Context(), request)
			var perm *providers.PermanentError
			require.ErrorAs(t, err, &perm)
			require.Equal(t, tc.reason, perm.Reason)
			for _, part := range tc.errorParts {
				require.Contains(t, err.Error(), part)
			}
		})
	}
}

// alive reports whether pid exists and is not a zombie (a zombie waits for
// a parent that may not reap it promptly in a container).
func alive(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	_, rest, _ := strings.Cut(string(stat), ") ")
	return !strings.HasPrefix(rest, "Z")
}

func TestExecTimeoutKillsTheWholeProcessGroupEvenWhatIgnoresSIGTERM(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	d := execDeployer(t, 300*time.Millisecond, "sh", "-c",
		`sh -c 'trap "" TERM; exec sleep 60' >/dev/null 2>&1 & echo $! > `+pidFile+`; echo started; wait`)
	res, err := d.Deploy(t.Context(), request)
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "DeployTimeout", perm.Reason)
	require.Contains(t, err.Error(), "killed after deploy.timeout 300ms: started")
	require.Equal(t, "started\n", res.Output)

	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !alive(pid) }, 5*time.Second, 10*time.Millisecond,
		"the grandchild %d that ignores SIGTERM survived", pid)
}

// The reconciler bounds the step by the same deploy.timeout, set first:
// its deadline passes first and must read as the deploy timeout too.
func TestExecTimeoutIsReportedWhenTheCallersEqualDeadlinePassesFirst(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	d := execDeployer(t, 300*time.Millisecond, "sh", "-c", "echo started; exec sleep 60")
	_, err := d.Deploy(ctx, request)
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "DeployTimeout", perm.Reason)
	require.Contains(t, err.Error(), "killed after deploy.timeout 300ms: started")
}

func TestExecCancelledByTheCallerIsNotPermanent(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	d := execDeployer(t, time.Minute, "sh", "-c", "echo started; exec sleep 60")
	done := make(chan error, 1)
	go func() {
		_, err := d.Deploy(ctx, request)
		done <- err
	}()
	cancel()
	err := <-done
	require.ErrorIs(t, err, context.Canceled)
	require.False(t, providers.IsPermanent(err))
}

func TestExecKeepsOnlyTheTailOfLongOutput(t *testing.T) {
	// 200,000 lines of "line N" (about 1.3 MB), then "the end".
	d := execDeployer(t, 10*time.Second, "sh", "-c", `seq -f 'line %g' 200000; echo 'the end'`)
	res, err := d.Deploy(t.Context(), request)
	require.NoError(t, err)
	require.LessOrEqual(t, len(res.Output), 64<<10+len("[output truncated]\n"))
	require.True(t, strings.HasPrefix(res.Output, "[output truncated]\n"))
	require.True(t, strings.HasSuffix(res.Output, "line 200000\nthe end\n"))
}

func TestExecSucceedsWhenABackgroundProcessKeepsItsOutputOpen(t *testing.T) {
	pidFile := filepath.Join(t.TempDir(), "pid")
	d := execDeployer(t, 10*time.Second, "sh", "-c", `sleep 30 & echo $! > `+pidFile+`; echo restarted`)
	res, err := d.Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Equal(t, "restarted\n", res.Output)
	b, err := os.ReadFile(pidFile)
	require.NoError(t, err)
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	require.NoError(t, err)
	require.True(t, alive(pid), "a background process of a successful hook must be left running")
	require.NoError(t, syscall.Kill(pid, syscall.SIGKILL))
}

func TestExecLogsWithTheServiceAndRevision(t *testing.T) {
	var buf bytes.Buffer
	d, err := deploy.New(spec.Deploy{Exec: []string{"true"}, Timeout: spec.Duration(time.Second)}, anyCommand,
		slog.New(slog.NewTextHandler(&buf, nil)))
	require.NoError(t, err)
	_, err = d.Deploy(t.Context(), request)
	require.NoError(t, err)
	require.Contains(t, buf.String(), `msg="deploy finished" target=user-service revision=9f3c2e1 action=deploy group=B version=2.4.2`)
}

func TestNewRefusesADeployWithoutExactlyOneHook(t *testing.T) {
	for _, d := range []spec.Deploy{
		{},
		{Exec: []string{"true"}, HTTP: &spec.HTTPDeploy{URL: "http://127.0.0.1:1/deploy"}},
	} {
		_, err := deploy.New(d, anyCommand, nil)
		require.EqualError(t, err, "deploy: set exactly one of exec and http")
	}
}
