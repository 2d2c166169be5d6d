package spec_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

// rolloutDoc is a minimal service with rollout steps appended.
const rolloutDoc = `service: web
active: A
version: "1.0"
groups:
  A: {instances: [{ip: 10.0.0.1, port: 80, id: a1}]}
  B: {instances: [{ip: 10.0.0.2, port: 80, id: b1}]}
traffic:
  - {haproxy: edge, backend: web}
deploy: {exec: [./deploy.sh]}
health: {http: {path: /healthz}, version: {http: /version}}
rollout:
  steps:
`

func TestARolloutStepPausesForADurationOrManually(t *testing.T) {
	svcs, ps := spec.ParseServices("services/web.yaml", []byte(rolloutDoc+`    - {traffic: 10, pause: manual, hold: 30s}
    - {traffic: 50, pause: 2m}
`))
	require.NoError(t, ps.Err())
	plan := svcs[0].Rollout.Plan()
	require.Len(t, plan, 3)
	require.True(t, plan[0].Pause.Manual)
	require.Equal(t, 30*time.Second, plan[0].Hold.D())
	require.False(t, plan[1].Pause.Manual)
	require.Equal(t, 2*time.Minute, plan[1].Pause.D())
	out, err := json.Marshal(plan[:2])
	require.NoError(t, err)
	require.JSONEq(t, `[{"traffic": 10, "pause": "manual", "hold": "30s"}, {"traffic": 50, "pause": "2m0s"}]`, string(out))
}

func TestRolloutPauseProblemsAreLocated(t *testing.T) {
	_, ps := spec.ParseServices("services/web.yaml", []byte(rolloutDoc+`    - {traffic: 10, pause: manuel}
    - {traffic: 50, pause: -1s}
    - {traffic: 100, pause: manual}
`))
	require.EqualError(t, ps.Err(), strings.Join([]string{
		`services/web.yaml:13: rollout.steps[0].pause: must be a duration such as 30s or 5m, or manual (wait for tandem promote|abort), got "manuel"`,
		`services/web.yaml:14: rollout.steps[1].pause: must be a duration such as 30s or 5m, or manual (wait for tandem promote|abort), got "-1s"`,
		`services/web.yaml:15: rollout.steps[2].pause: must not be manual on the 100 percent step: it ends the shift; to wait for a decision before any traffic moves, use gates.approval`,
	}, "\n"))
}
