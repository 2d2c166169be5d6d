package specfile_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/specfile"
	"github.com/tandemhq/tandem/spec"
)

// What the renderer writes is a valid service file that says what was
// asked, with every optional block and without them.
func TestRenderedFilesParseToWhatWasAsked(t *testing.T) {
	a := []spec.Instance{{IP: "127.0.0.1", Port: 8001, ID: "a1"}}
	b := []spec.Instance{{IP: "127.0.0.1", Port: 8002, ID: "b1"}}
	full := specfile.Service{
		Comment: "two lines\nof comment", Writer: "a test", Name: "user", Active: spec.GroupB, Version: "1.2.3", A: a, B: b,
		Traffic: "{haproxy: edge, backend: user}", Nacos: "prod",
		Deploy: specfile.Deploy{Comment: "restarts the group", Timeout: 30 * time.Second,
			HTTP: &specfile.DeployHTTP{URL: "http://127.0.0.1:9/deploy", PollInterval: 50 * time.Millisecond}},
		Health: specfile.Health{VersionFromNacos: true, Timeout: time.Second, Deadline: 20 * time.Second},
		Drain: &specfile.Drain{Propagation: 2 * time.Second, PropagationComment: "consumers' caches", Quiet: 200 * time.Millisecond, Timeout: 9 * time.Second,
			Evidence: "demo", EvidenceComment: "in flight at /metrics"},
		Verify: &specfile.Verify{Window: time.Second, LBHealthTimeout: 3 * time.Second},
		After:  []string{"gateway"}, Approval: "{timeout: 1h, onTimeout: abort}",
		Gates: "smoke:\n  http:\n    - {name: echo, method: POST, path: /echo, body: hi, expect: {bodyContains: hi}}\n",
	}
	java := full
	java.Name = "java"
	java.Health.Preset, java.Health.PresetComment = "spring-boot", "the actuator"
	java.Drain = &specfile.Drain{Propagation: time.Second, Quiet: time.Second, Timeout: 9 * time.Second, Evidence: "spring-boot"}
	minimal := specfile.Service{Writer: "a test", Name: "push", Active: spec.GroupA, Version: "2.0.0", A: a, B: b,
		Traffic: "{haproxy: edge, backend: push}", Deploy: specfile.Deploy{Exec: []string{"false"}}}

	svcs, ps := spec.ParseServices("user.yaml", specfile.Render(full))
	require.NoError(t, ps.Err())
	require.Len(t, svcs, 1)
	u := svcs[0]
	require.Equal(t, "user", u.Name)
	require.Equal(t, spec.GroupB, u.Active)
	require.Equal(t, "1.2.3", u.Version)
	require.Equal(t, a[0].ID, u.Instances(spec.GroupA)[0].ID)
	require.Equal(t, "prod", u.Registry.Nacos.Provider)
	require.Equal(t, "http://127.0.0.1:9/deploy", u.Deploy.HTTP.URL)
	require.Equal(t, 2*time.Second, u.Drain.Propagation.D())
	require.Equal(t, 9*time.Second, u.Drain.Timeout.D())
	require.Equal(t, []string{"gateway"}, u.After)
	require.Equal(t, "demo", u.Drain.Evidence.Preset)
	require.Equal(t, &spec.ApprovalGate{Timeout: spec.Duration(time.Hour), OnTimeout: spec.ApprovalAbort}, u.Gates.Approval)
	require.Equal(t, "hi", u.Gates.Smoke.HTTP[0].Expect.BodyContains)

	svcs, ps = spec.ParseServices("java.yaml", specfile.Render(java))
	require.NoError(t, ps.Err())
	require.Equal(t, "spring-boot", svcs[0].Health.Preset)
	require.Equal(t, "spring-boot", svcs[0].Drain.Evidence.Preset)

	svcs, ps = spec.ParseServices("push.yaml", specfile.Render(minimal))
	require.NoError(t, ps.Err())
	require.Equal(t, []string{"false"}, svcs[0].Deploy.Exec)
	require.Nil(t, svcs[0].Registry)
	require.Nil(t, svcs[0].Gates.Approval)
}
