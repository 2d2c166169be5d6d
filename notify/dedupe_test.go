package notify

import (
	"net/url"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
)

func TestDeduper(t *testing.T) {
	ev := func(service, reason string) reconcile.Event {
		return reconcile.Event{Service: service, Reason: reason, Message: reason + " of " + service}
	}
	var (
		detected = ev("user-service", reconcile.ReasonDriftDetected)
		resolved = ev("user-service", reconcile.ReasonDriftResolved)
		other    = ev("user-service", reconcile.ReasonTransitionStarted)
		gateway  = ev("gateway", reconcile.ReasonDriftDetected)
	)
	// A step records an event (and whether it goes out now), or asks which
	// held events are due.
	type step struct {
		at    time.Duration
		e     *reconcile.Event
		out   bool
		due   []reconcile.Event
		isDue bool
	}
	rec := func(at time.Duration, e reconcile.Event, out bool) step { return step{at: at, e: &e, out: out} }
	due := func(at time.Duration, es ...reconcile.Event) step { return step{at: at, due: es, isDue: true} }
	s := time.Second
	cases := []struct {
		name   string
		window time.Duration
		steps  []step
	}{
		{"a repeat within the window is held back, then forgotten as it repeats the last word", time.Minute, []step{
			rec(0, detected, true), rec(10*s, detected, false), due(2 * time.Minute)}},
		{"a repeat after the window goes out", time.Minute, []step{
			rec(0, detected, true), rec(61*s, detected, true)}},
		{"flapping sends the newest state when its window ends", time.Minute, []step{
			rec(0, detected, true), rec(1*s, resolved, true), rec(2*s, detected, false),
			due(59 * s), due(61*s, detected), rec(62*s, detected, false), due(5 * time.Minute)}},
		{"flapping back to what was said last sends nothing more", time.Minute, []step{
			rec(0, detected, true), rec(1*s, resolved, true), rec(2*s, detected, false), rec(3*s, resolved, false),
			due(5 * time.Minute)}},
		{"a new event goes out and supersedes the held one", time.Minute, []step{
			rec(0, detected, true), rec(1*s, resolved, true), rec(2*s, detected, false), rec(3*s, other, true),
			due(5 * time.Minute)}},
		{"services are deduplicated apart", time.Minute, []step{
			rec(0, detected, true), rec(1*s, gateway, true), rec(2*s, gateway, false)}},
		{"a zero window lets every event out", 0, []step{
			rec(0, detected, true), rec(0, detected, true), due(time.Hour)}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := newDeduper(c.window)
			t0 := time.Date(2026, 3, 4, 3, 0, 0, 0, time.UTC)
			for i, st := range c.steps {
				if st.isDue {
					require.ElementsMatch(t, st.due, d.due(t0.Add(st.at)), "step %d", i)
					continue
				}
				require.Equal(t, st.out, d.admit(*st.e, t0.Add(st.at)), "step %d", i)
			}
		})
	}
}

func TestDeduperForgetsWhatIsOlderThanTheWindow(t *testing.T) {
	d := newDeduper(time.Minute)
	t0 := time.Date(2026, 3, 4, 3, 0, 0, 0, time.UTC)
	for i := range 100 {
		d.admit(reconcile.Event{Service: "svc", Message: string(rune('a' + i))}, t0)
	}
	d.admit(reconcile.Event{Service: "gateway", Message: "x"}, t0.Add(2*time.Minute))
	require.Len(t, d.sent, 1)
	require.Len(t, d.last, 1)
}

func TestRedactURL(t *testing.T) {
	cases := []struct {
		name, raw   string
		tokenInPath bool
		want        string
	}{
		{"the query and its token are dropped", "https://oapi.dingtalk.com/robot/send?access_token=abc", false,
			"https://oapi.dingtalk.com/robot/send"},
		{"user info is dropped", "https://user:pass@hooks.example:8443/tandem?x=1", false, "https://hooks.example:8443/tandem"},
		{"a token in the path is hidden", "https://hooks.slack.com/services/T0/B0/abc", true, "https://hooks.slack.com/<redacted>"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u, err := url.Parse(c.raw)
			require.NoError(t, err)
			require.Equal(t, c.want, redactURL(u, c.tokenInPath))
		})
	}
}
