package server_test

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

// smokeFixture is user-service after smoke tests aborted its release of
// 2.5.0 to group B.
func smokeFixture() reconcile.Status {
	return reconcile.Status{
		Service: "user-service", DesiredActive: spec.GroupB, DesiredVersion: "2.5.0", LiveActive: reconcile.Active(spec.GroupA),
		Smoke: &reconcile.SmokeProgress{Group: spec.GroupB, Version: "2.5.0", Runs: 1, Started: t0, Done: true, Results: []providers.SmokeResult{
			{Check: "user", Instance: "10.0.2.11:8080", Passed: true, Status: 200},
			{Check: "user", Instance: "10.0.2.12:8080", Status: 500, Body: "NullPointerException <b>at</b> UserController.java:42",
				Error: "GET http://10.0.2.12:8080/api/users/1: status 500 (want status 200)"},
			{Check: "exec", Error: "smoke tests of user-service group B at 2.5.0: ./smoke.sh: exit status 1: orders API answered 503"},
		}},
	}
}

func TestStatusListsTheFailedSmokeChecksWithTheirAnswers(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, server.PrintStatus(&out, []reconcile.Status{smokeFixture()}, server.FormatTable))
	_, notes, ok := strings.Cut(out.String(), "\n\n")
	require.True(t, ok, out.String())
	require.Equal(t, `user-service: smoke tests of group B at 2.5.0: 2 of 3 checks failed
  user on 10.0.2.12:8080: GET http://10.0.2.12:8080/api/users/1: status 500 (want status 200)
    answer: "NullPointerException <b>at</b> UserController.java:42"
  exec: smoke tests of user-service group B at 2.5.0: ./smoke.sh: exit status 1: orders API answered 503
`, notes)

	// During a transition the run is shown as it goes; a passed run of a
	// finished release is not news.
	running := smokeFixture()
	running.Transition = &reconcile.Transition{Kind: reconcile.KindRelease, Phase: reconcile.PhaseSmoke}
	running.Smoke.Done, running.Smoke.Results, running.Smoke.Runs = false, nil, 2
	out.Reset()
	require.NoError(t, server.PrintStatus(&out, []reconcile.Status{running}, server.FormatTable))
	require.Contains(t, out.String(), "\nuser-service: smoke tests of group B at 2.5.0: running (run 2)\n")

	passed := smokeFixture()
	passed.Smoke.Results = passed.Smoke.Results[:1]
	out.Reset()
	require.NoError(t, server.PrintStatus(&out, []reconcile.Status{passed}, server.FormatTable))
	require.NotContains(t, out.String(), "smoke")
}
