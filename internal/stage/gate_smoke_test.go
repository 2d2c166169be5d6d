package stage_test

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

// A release whose build is healthy but answers its API with errors is
// stopped by smoke tests on the idle group: /healthz is green on every
// target instance, the users' traffic never leaves the serving group and
// not one request fails; the next, good build passes the same checks and
// goes live. The real demo apps answer behind the ALB emulator; the exec
// hook runs under the daemon's hook policy with the target group in its
// environment.
func TestSmokeTestsStopABuildThatIsHealthyButServesErrors(t *testing.T) {
	ctx := t.Context()
	hookLog := filepath.Join(t.TempDir(), "smoke.log")
	gates := fmt.Sprintf(`smoke:
  http:
    - name: echo
      method: POST
      path: /echo
      body: smoke-test
      expect: {status: [200], bodyContains: smoke-test}
  exec:
    command: ["sh", "-c", %q]
    timeout: 10s
`, `echo "$TANDEM_SERVICE $TANDEM_GROUP $TANDEM_VERSION $TANDEM_INSTANCES" >> `+hookLog)
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), HookCommands: []string{"sh"},
		Services: []stage.Service{{Name: "web", LB: spec.KindALB, Gates: gates}}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	head, err := s.Head()
	require.NoError(t, err)
	st, err := s.WaitInSync(ctx, "web", head)
	require.NoError(t, err)
	var targets []string
	for _, in := range st.Groups.B.Instances {
		targets = append(targets, in.Addr())
	}

	users, err := s.StartTraffic(ctx, s.URL("web"), 50, 1)
	require.NoError(t, err)
	s.Fleet().BreakEcho("2.0.0")
	rev, err := s.Release(ctx, "web", "2.0.0")
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, "web", rev)
	why := fmt.Sprintf(`smoke check "echo" failed on %s: POST http://%s/echo: status 500, the body does not contain "smoke-test" (want status 200, body containing "smoke-test"); answer: "fault injected for version 2.0.0\n"`, targets[0], targets[0])
	require.ErrorContains(t, err, "ReleaseFailed")
	require.ErrorContains(t, err, why)
	for _, addr := range targets {
		res, err := http.Get("http://" + addr + "/healthz")
		require.NoError(t, err)
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode, "the bad build is healthy: only the smoke tests tell")
	}
	journal, err := s.Journal(ctx, "web")
	require.NoError(t, err)
	require.Equal(t, "2.0.0", journal.Failed.Version)
	require.True(t, strings.HasPrefix(journal.Failed.Reason, why), journal.Failed.Reason)
	require.Equal(t, spec.GroupA, journal.Applied.Active, "group A never stopped serving")

	// The API's status carries the failed run; tandem status lists it.
	sts, err := server.FetchStatus(ctx, "http://"+s.APIAddr())
	require.NoError(t, err)
	require.Len(t, sts[0].Smoke.Results, 3, "echo on both instances, then the hook")
	require.Len(t, sts[0].Smoke.Failed(), 2, "echo on both instances")
	var table strings.Builder
	require.NoError(t, server.PrintStatus(&table, sts, server.FormatTable))
	require.Contains(t, table.String(), "web: smoke tests of group B at 2.0.0: 2 of 3 checks failed")

	var aborted []string
	for _, e := range s.Events() {
		if e.Reason == reconcile.ReasonTransitionAborted {
			aborted = append(aborted, e.Message)
		}
	}
	require.Len(t, aborted, 1)
	require.Contains(t, aborted[0], why)

	// Undo the failed commit, then release a good build.
	rev, err = s.Revert(ctx, "web")
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, "web", rev)
	require.NoError(t, err)
	rev, err = s.Release(ctx, "web", "2.0.1")
	require.NoError(t, err)
	st, err = s.WaitInSync(ctx, "web", rev)
	require.NoError(t, err)
	require.Equal(t, spec.GroupB, st.DesiredActive)

	report := users.Stop()
	require.True(t, report.Clean(), "no user saw the broken build: %s", report)
	for _, p := range report.Timeline {
		require.NotEqual(t, "2.0.0", p.Version, "the broken build never took traffic")
	}
	require.Contains(t, fmt.Sprint(report.Timeline), "2.0.1", "the good build took the traffic")

	journal, err = s.Journal(ctx, "web")
	require.NoError(t, err)
	require.Equal(t, "2.0.1", journal.LastSmoke.Version)
	require.Len(t, journal.LastSmoke.Results, 3)
	require.Empty(t, journal.LastSmoke.Failed())

	hook, err := os.ReadFile(hookLog)
	require.NoError(t, err)
	group := strings.Join(targets, ",")
	require.Equal(t, "web B 2.0.0 "+group+"\nweb B 2.0.1 "+group+"\n", string(hook), "the hook ran once per release with the target group")
}
