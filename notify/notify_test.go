package notify_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/notify"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

const (
	revision = "9f1c2e7a5b3d4c6e8f0a1b2c3d4e5f6a7b8c9d0e"
	author   = "Alice Zhang"
	subject  = "user-service 2.4.1 to group B"
)

func event(service, reason, message string) reconcile.Event {
	typ := reconcile.EventNormal
	switch reason {
	case reconcile.ReasonDriftDetected, reconcile.ReasonStalled, reconcile.ReasonDrainCeiling:
		typ = reconcile.EventWarning
	}
	return reconcile.Event{Time: time.Date(2026, 3, 4, 3, 12, 0, 0, time.UTC), Service: service, Type: typ,
		Reason: reason, Message: message, Revision: revision, Author: author, Subject: subject, Phase: reconcile.PhaseShift}
}

// fast retries quickly so that failure paths finish at once.
var fast = notify.WithRetry(3, reconcile.Backoff{Base: time.Millisecond, Max: 2 * time.Millisecond})

// logBuffer captures everything logged, at every level, as JSON lines.
type logBuffer struct{ testkit.Buffer }

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// run starts n.Run and returns a function that stops it and waits for it
// to return; the test's cleanup calls it too.
func run(t *testing.T, n *notify.Notifier) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		n.Run(ctx)
		close(done)
	}()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatal("Run did not return within 30s of its context ending")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// count reads tandem_notifications_total for a notifier and result.
func count(t *testing.T, reg *prometheus.Registry, notifier, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != "tandem_notifications_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["notifier"] == notifier && labels["result"] == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func eventually(t *testing.T, cond func() bool) {
	t.Helper()
	require.Eventually(t, cond, 10*time.Second, 2*time.Millisecond)
}

func TestEachTypeDeliversAMessageTheVendorAccepts(t *testing.T) {
	t.Setenv("TEST_HOOK_SECRET", "hook-secret-1")
	t.Setenv("TEST_DING_SECRET", "SECding-secret-2")
	t.Setenv("TEST_FEISHU_SECRET", "feishu-secret-3")

	cases := []struct {
		typ, secretEnv, path string
		check                func(*http.Request, []byte) error
		ok                   string
		text                 func(t *testing.T, body []byte) string // the human-readable part
	}{
		{"webhook", "TEST_HOOK_SECRET", "/hooks/tandem", checkWebhook("hook-secret-1"), "",
			func(t *testing.T, b []byte) string { m, _ := decode(b); return str(m, "text") }},
		{"dingtalk", "TEST_DING_SECRET", "/robot/send?access_token=ding-token", checkDingTalk("ding-token", "SECding-secret-2"),
			`{"errcode":0,"errmsg":"ok"}`,
			func(t *testing.T, b []byte) string { m, _ := decode(b); return str(m, "markdown", "text") }},
		{"feishu", "TEST_FEISHU_SECRET", "/open-apis/bot/v2/hook/feishu-token", checkFeishu("feishu-secret-3"),
			`{"code":0,"msg":"success","data":{}}`,
			func(t *testing.T, b []byte) string {
				m, _ := decode(b)
				return str(m, "content", "post", "zh_cn", "title") + "\n" + string(b)
			}},
		{"wecom", "", "/cgi-bin/webhook/send?key=wecom-key", checkWeCom("wecom-key"), `{"errcode":0,"errmsg":"ok"}`,
			func(t *testing.T, b []byte) string { m, _ := decode(b); return str(m, "markdown", "content") }},
		{"slack", "", "/services/T000/B000/slack-token", checkSlack, "ok",
			func(t *testing.T, b []byte) string { m, _ := decode(b); return str(m, "text") }},
	}
	for _, c := range cases {
		t.Run(c.typ, func(t *testing.T) {
			rc := newReceiver(t, c.check, always(http.StatusOK, c.ok))
			reg := prometheus.NewPedanticRegistry()
			n, err := notify.New([]spec.Notifier{{Name: "ops", Type: c.typ, URL: rc.srv.URL + c.path, SecretEnv: c.secretEnv}},
				nil, notify.WithRegisterer(reg))
			require.NoError(t, err)
			run(t, n)

			n.Record(event("user-service", reconcile.ReasonDriftDetected, "weight of 10.0.1.11:8080 on sgp-0123 is 100, want 0"))
			h := rc.next(t)
			require.NoError(t, h.err)
			text := c.text(t, h.body)
			require.Contains(t, text, "WARNING")
			require.Contains(t, text, "Tandem")
			require.Contains(t, text, "user-service")
			require.Contains(t, text, "drift detected")
			require.Contains(t, text, "sgp-0123")
			require.Contains(t, text, revision[:12])
			require.Contains(t, text, author)
			require.Contains(t, text, subject)
			eventually(t, func() bool { return count(t, reg, "ops", "sent") == 1 })
		})
	}
}

func TestWebhookBodyCarriesTheEventAndASummary(t *testing.T) {
	rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusNoContent, ""))
	n, err := notify.New([]spec.Notifier{{Type: "webhook", URL: rc.srv.URL}}, nil)
	require.NoError(t, err)
	run(t, n)

	e := event("gateway", reconcile.ReasonTransitionSucceeded, "group B serves 2.4.1; group A stays warm at 2.4.0 as the rollback target")
	n.Record(e)
	h := rc.next(t)
	require.Empty(t, h.header.Get("X-Tandem-Signature"), "no secretEnv: no signature")
	var got struct {
		reconcile.Event
		Text string `json:"text"`
	}
	require.NoError(t, json.Unmarshal(h.body, &got))
	require.Equal(t, e, got.Event)
	require.Equal(t, "Tandem: gateway: transition finished\n"+e.Message+"\nrevision "+revision[:12]+" by "+author+": "+subject+"\nphase shift", got.Text)
}

func TestSlackTextEscapesControlCharacters(t *testing.T) {
	rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	n, err := notify.New([]spec.Notifier{{Type: "slack", URL: rc.srv.URL + "/services/T/B/x"}}, nil)
	require.NoError(t, err)
	run(t, n)

	n.Record(event("user-service", reconcile.ReasonStalled, "refused <shift> & more"))
	m, err := decode(rc.next(t).body)
	require.NoError(t, err)
	require.Contains(t, str(m, "text"), "refused &lt;shift&gt; &amp; more")
}

func TestDeliveryFailures(t *testing.T) {
	cases := []struct {
		name         string
		typ, path    string
		answer       answer
		wantRequests int
		wantLog      string
	}{
		{"a 5xx answer is retried, then given up and logged", "webhook", "/h",
			always(http.StatusServiceUnavailable, "busy"), 3, "503 Service Unavailable"},
		{"a DingTalk error code in a 200 answer is retried, then given up", "dingtalk", "/robot/send?access_token=t",
			always(http.StatusOK, `{"errcode":310000,"errmsg":"sign not match"}`), 3, "error code 310000: sign not match"},
		{"a Feishu error code in a 200 answer is retried, then given up", "feishu", "/open-apis/bot/v2/hook/t",
			always(http.StatusOK, `{"code":19021,"msg":"sign match fail or timestamp is not within one hour from current time"}`), 3, "error code 19021"},
		{"a WeCom error code in a 200 answer is retried, then given up", "wecom", "/cgi-bin/webhook/send?key=k",
			always(http.StatusOK, `{"errcode":45009,"errmsg":"api freq out of limit"}`), 3, "error code 45009"},
		{"a robot answer without an error code is a failure", "wecom", "/cgi-bin/webhook/send?key=k",
			always(http.StatusOK, `<html>proxy</html>`), 3, "without errcode"},
		{"a 4xx answer is given up at once", "slack", "/services/T/B/x",
			always(http.StatusBadRequest, "invalid_payload"), 1, "400 Bad Request: invalid_payload"},
		{"a 429 answer is retried", "slack", "/services/T/B/x",
			always(http.StatusTooManyRequests, "rate_limited"), 3, "429 Too Many Requests"},
		{"a redirect is not followed", "webhook", "/h",
			always(http.StatusFound, ""), 1, "302 Found"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, c.answer)
			reg := prometheus.NewPedanticRegistry()
			var logs logBuffer
			n, err := notify.New([]spec.Notifier{{Name: "ops", Type: c.typ, URL: rc.srv.URL + c.path}},
				logs.logger(), fast, notify.WithRegisterer(reg))
			require.NoError(t, err)
			stop := run(t, n)

			n.Record(event("user-service", reconcile.ReasonStalled, "permission denied"))
			eventually(t, func() bool { return count(t, reg, "ops", "failed") == 1 })
			stop()
			require.Len(t, rc.hits, c.wantRequests)
			require.Zero(t, count(t, reg, "ops", "sent"))
			require.Contains(t, logs.String(), `"msg":"notification failed"`)
			require.Contains(t, logs.String(), c.wantLog)
		})
	}
}

func TestATransientFailureIsRetriedUntilItSucceeds(t *testing.T) {
	rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, func(n int) (int, string) {
		if n == 1 {
			return http.StatusBadGateway, ""
		}
		return http.StatusOK, `{"errcode":0,"errmsg":"ok"}`
	})
	reg := prometheus.NewPedanticRegistry()
	n, err := notify.New([]spec.Notifier{{Name: "ops", Type: "dingtalk", URL: rc.srv.URL + "/robot/send?access_token=t"}},
		nil, fast, notify.WithRegisterer(reg))
	require.NoError(t, err)
	stop := run(t, n)

	n.Record(event("user-service", reconcile.ReasonTransitionStarted, "release 2.4.1"))
	eventually(t, func() bool { return count(t, reg, "ops", "sent") == 1 })
	stop()
	require.Len(t, rc.hits, 2)
	require.Zero(t, count(t, reg, "ops", "failed"))
}

func TestCancellingTheContextStopsRetriesAfterOneLastAttempt(t *testing.T) {
	rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusServiceUnavailable, ""))
	reg := prometheus.NewPedanticRegistry()
	// Retries an hour apart: only cancellation can end the wait.
	n, err := notify.New([]spec.Notifier{{Name: "ops", Type: "webhook", URL: rc.srv.URL}}, nil,
		notify.WithRetry(100, reconcile.Backoff{Base: time.Hour, Max: time.Hour}), notify.WithRegisterer(reg))
	require.NoError(t, err)
	stop := run(t, n)

	n.Record(event("user-service", reconcile.ReasonTransitionStarted, "release 2.4.1"))
	rc.next(t)
	stop() // returns only once Run has: no request can follow
	require.Len(t, rc.hits, 1, "one last attempt at shutdown, then nothing")
	require.Equal(t, 1.0, count(t, reg, "ops", "failed"))
}

func TestEventsAreFilteredByReason(t *testing.T) {
	cases := []struct {
		name   string
		events []string
		record []string
		want   []string
	}{
		{"by default steps and phases are not notified", nil,
			[]string{reconcile.ReasonStepApplied, reconcile.ReasonPhaseCompleted, reconcile.ReasonStepFailed, reconcile.ReasonTransitionStarted,
				reconcile.ReasonDriftResolved},
			[]string{reconcile.ReasonTransitionStarted, reconcile.ReasonDriftResolved}},
		{"an events list notifies only the reasons it names", []string{reconcile.ReasonDriftDetected, reconcile.ReasonStepApplied},
			[]string{reconcile.ReasonTransitionStarted, reconcile.ReasonStepApplied, reconcile.ReasonDriftDetected},
			[]string{reconcile.ReasonStepApplied, reconcile.ReasonDriftDetected}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
			n, err := notify.New([]spec.Notifier{{Type: "slack", URL: rc.srv.URL, Events: c.events}}, nil)
			require.NoError(t, err)
			for i, r := range c.record {
				n.Record(event("svc", r, "event "+string(rune('a'+i))))
			}
			stop := run(t, n)
			var got []string
			for range c.want {
				m, err := decode(rc.next(t).body)
				require.NoError(t, err)
				got = append(got, str(m, "text"))
			}
			stop() // all queued messages were sent before Run returned
			require.Empty(t, rc.hits, "no other message")
			for i, r := range c.want {
				require.Contains(t, got[i], notifyHeadline(r))
			}
		})
	}
}

// notifyHeadline is how a reason shows in a message title.
func notifyHeadline(reason string) string {
	switch reason {
	case reconcile.ReasonTransitionStarted:
		return "transition started"
	case reconcile.ReasonDriftDetected:
		return "drift detected"
	case reconcile.ReasonDriftResolved:
		return "drift resolved"
	}
	return reason
}

func TestRepeatsWithinTheDedupeWindowAreSentOnce(t *testing.T) {
	rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	reg := prometheus.NewPedanticRegistry()
	n, err := notify.New([]spec.Notifier{{Name: "ops", Type: "slack", URL: rc.srv.URL}}, nil,
		notify.WithDedupeWindow(time.Hour), notify.WithRegisterer(reg))
	require.NoError(t, err)
	drift := event("user-service", reconcile.ReasonDriftDetected, "weight of 10.0.1.11:8080 is 100, want 0")
	n.Record(drift)
	n.Record(drift)
	n.Record(event("gateway", reconcile.ReasonDriftDetected, "weight of 10.0.1.11:8080 is 100, want 0")) // another service
	other := drift
	other.Message = "weight of 10.0.1.12:8080 is 100, want 0" // another message
	n.Record(other)
	stop := run(t, n)
	eventually(t, func() bool { return count(t, reg, "ops", "sent") == 3 })
	stop()
	require.Len(t, rc.hits, 3)
}

func TestFlappingSendsTheLastStateWhenTheWindowEnds(t *testing.T) {
	rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	n, err := notify.New([]spec.Notifier{{Type: "slack", URL: rc.srv.URL}}, nil, notify.WithDedupeWindow(50*time.Millisecond))
	require.NoError(t, err)
	detected := event("user-service", reconcile.ReasonDriftDetected, "weight of 10.0.1.11:8080 is 100, want 0")
	resolved := event("user-service", reconcile.ReasonDriftResolved, "live state matches the desired state again")
	run(t, n)
	n.Record(detected)
	n.Record(resolved)
	n.Record(detected) // held back: a repeat within the window, but now the newest state
	for _, want := range []string{"drift detected", "drift resolved", "drift detected"} {
		m, err := decode(rc.next(t).body)
		require.NoError(t, err)
		require.Contains(t, str(m, "text"), want)
	}
}

func TestShutdownSendsQueuedAndHeldMessages(t *testing.T) {
	rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	reg := prometheus.NewPedanticRegistry()
	n, err := notify.New([]spec.Notifier{{Name: "ops", Type: "slack", URL: rc.srv.URL}}, nil,
		notify.WithDedupeWindow(time.Hour), notify.WithRegisterer(reg))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	n.Record(event("user-service", reconcile.ReasonDriftDetected, "drift"))
	n.Record(event("user-service", reconcile.ReasonDriftResolved, "resolved"))
	n.Record(event("user-service", reconcile.ReasonDriftDetected, "drift"))
	n.Run(ctx) // already cancelled: only the last attempt runs
	require.Len(t, rc.hits, 3)
	require.Equal(t, 3.0, count(t, reg, "ops", "sent"))
}

func TestAFullQueueDropsTheOldestMessage(t *testing.T) {
	rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	reg := prometheus.NewPedanticRegistry()
	var logs logBuffer
	n, err := notify.New([]spec.Notifier{{Name: "ops", Type: "slack", URL: rc.srv.URL}}, logs.logger(),
		notify.WithQueueSize(2), notify.WithRegisterer(reg))
	require.NoError(t, err)
	for _, svc := range []string{"first", "second", "third"} {
		n.Record(event(svc, reconcile.ReasonTransitionStarted, "release"))
	}
	require.Equal(t, 1.0, count(t, reg, "ops", "dropped"))
	require.Contains(t, logs.String(), `"msg":"notification dropped: queue full","notifier":"ops","target":"first"`)
	stop := run(t, n)
	for _, want := range []string{"second", "third"} {
		m, err := decode(rc.next(t).body)
		require.NoError(t, err)
		require.Contains(t, str(m, "text"), want)
	}
	stop()
	require.Empty(t, rc.hits)
}

func TestEveryNotifierGetsItsOwnCopy(t *testing.T) {
	a := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	b := newReceiver(t, checkWeCom("k"), always(http.StatusServiceUnavailable, ""))
	reg := prometheus.NewPedanticRegistry()
	n, err := notify.New([]spec.Notifier{
		{Name: "slack", Type: "slack", URL: a.srv.URL},
		{Name: "wecom", Type: "wecom", URL: b.srv.URL + "/?key=k"},
	}, nil, fast, notify.WithRegisterer(reg))
	require.NoError(t, err)
	run(t, n)
	n.Record(event("user-service", reconcile.ReasonSwappedBack, "watch window failed: group A serves again"))
	require.NoError(t, a.next(t).err)
	require.NoError(t, b.next(t).err)
	eventually(t, func() bool {
		return count(t, reg, "slack", "sent") == 1 && count(t, reg, "wecom", "failed") == 1
	})
}

// watchedContext tells when someone waits on it.
type watchedContext struct {
	context.Context
	waited chan struct{}
	once   sync.Once
}

func (c *watchedContext) Done() <-chan struct{} {
	c.once.Do(func() { close(c.waited) })
	return c.Context.Done()
}

func TestRunWithoutNotifiersLastsUntilItsContextEnds(t *testing.T) {
	n, err := notify.New(nil, nil)
	require.NoError(t, err)
	n.Record(event("svc", reconcile.ReasonTransitionStarted, "x"))
	parent, cancel := context.WithCancel(context.Background())
	ctx := &watchedContext{Context: parent, waited: make(chan struct{})}
	done := make(chan struct{})
	go func() {
		n.Run(ctx)
		close(done)
	}()
	select {
	case <-ctx.waited:
	case <-done:
		t.Fatal("Run returned without waiting for its context")
	}
	cancel()
	<-done
}

func TestMetricsAreRegisteredPerNotifier(t *testing.T) {
	reg := prometheus.NewPedanticRegistry()
	_, err := notify.New([]spec.Notifier{
		{Name: "a", Type: "slack", URL: "https://hooks.slack.example/services/x"},
		{Type: "wecom", URL: "https://qyapi.example/cgi-bin/webhook/send?key=k"},
	}, nil, notify.WithRegisterer(reg))
	require.NoError(t, err)
	mfs, err := reg.Gather()
	require.NoError(t, err)
	require.Len(t, mfs, 1)
	require.Len(t, mfs[0].GetMetric(), 6, "sent, failed and dropped for a and notify[1]")

	_, err = notify.New(nil, nil, notify.WithRegisterer(reg))
	require.ErrorContains(t, err, "registering notification metrics")
}

func TestNewRejectsBadConfiguration(t *testing.T) {
	t.Setenv("TEST_BAD_URL", "ftp://files.example/robot?access_token=leaked-token-1")
	t.Setenv("TEST_UNPARSABLE_URL", "https://robot.example/send?access_token=leaked-token-2\x7f%zz")
	t.Setenv("TEST_SECRET", "s")
	cases := []struct {
		name string
		cfg  spec.Notifier
		want string
	}{
		{"an unknown type", spec.Notifier{Type: "telegram", URL: "https://x.example"},
			`notify[0].type: must be one of webhook, dingtalk, feishu, wecom, slack, got "telegram"`},
		{"no URL", spec.Notifier{Type: "slack"}, "notify[0].url: set url or urlEnv"},
		{"both url and urlEnv", spec.Notifier{Type: "slack", URL: "https://x.example", URLEnv: "TEST_BAD_URL"},
			"notify[0].url: set only one of url and urlEnv"},
		{"an unset urlEnv", spec.Notifier{Type: "slack", URLEnv: "TEST_UNSET_URL"},
			"notify[0].urlEnv: environment variable TEST_UNSET_URL is not set"},
		{"a URL that is not http", spec.Notifier{Type: "dingtalk", URLEnv: "TEST_BAD_URL"},
			"notify[0].urlEnv: must be an http or https URL with a host"},
		{"a URL that does not parse", spec.Notifier{Type: "dingtalk", URLEnv: "TEST_UNPARSABLE_URL"},
			"notify[0].urlEnv: must be an http or https URL with a host"},
		{"a relative URL", spec.Notifier{Type: "webhook", URL: "/hooks"},
			"notify[0].url: must be an http or https URL with a host"},
		{"a secret for a WeCom robot", spec.Notifier{Type: "wecom", URL: "https://x.example", SecretEnv: "TEST_SECRET"},
			"notify[0].secretEnv: wecom messages are not signed (the URL carries the key); remove secretEnv"},
		{"a secret for Slack", spec.Notifier{Type: "slack", URL: "https://x.example", SecretEnv: "TEST_SECRET"},
			"notify[0].secretEnv: slack messages are not signed"},
		{"an unset secretEnv", spec.Notifier{Type: "feishu", URL: "https://x.example", SecretEnv: "TEST_UNSET_SECRET"},
			"notify[0].secretEnv: environment variable TEST_UNSET_SECRET is not set"},
		{"an unknown event reason", spec.Notifier{Type: "slack", URL: "https://x.example", Events: []string{"DriftDetected", "Drift"}},
			`notify[0].events[1]: unknown reason "Drift"; known: TransitionStarted,`},
		{"a named notifier is named in the error", spec.Notifier{Name: "oncall", Type: "slack"},
			`notifier "oncall": notify[0].url: set url or urlEnv`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := notify.New([]spec.Notifier{c.cfg}, nil)
			require.ErrorContains(t, err, c.want)
			require.NotContains(t, err.Error(), "leaked-token")
		})
	}
}

func TestNewReportsEveryProblemAtOnce(t *testing.T) {
	_, err := notify.New([]spec.Notifier{
		{Name: "ops", Type: "slack", URL: "https://x.example"},
		{Name: "ops", Type: "slack", URL: "https://y.example"},
		{Type: "wecom", Events: []string{"Nope"}},
	}, nil)
	require.ErrorContains(t, err, `notifier "ops": notify[1].name: "ops" is used by another notifier`)
	require.ErrorContains(t, err, "notify[2].url: set url or urlEnv")
	require.ErrorContains(t, err, `notify[2].events[0]: unknown reason "Nope"`)
}

func TestNewRejectsBadOptions(t *testing.T) {
	cases := []struct {
		name string
		opt  notify.Option
		want string
	}{
		{"no HTTP client", notify.WithHTTPClient(nil), "the HTTP client must not be nil"},
		{"no attempt", notify.WithRetry(0, reconcile.Backoff{}), "attempts must be at least 1, got 0"},
		{"no timeout", notify.WithRequestTimeout(0), "the request timeout must be positive"},
		{"no queue", notify.WithQueueSize(0), "the queue size must be at least 1, got 0"},
		{"a negative window", notify.WithDedupeWindow(-time.Second), "the dedupe window must not be negative"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := notify.New(nil, nil, c.opt)
			require.ErrorContains(t, err, c.want)
		})
	}
}

// TestSecretsNeverShowInLogs runs every path that logs or builds an error
// (success at debug level, vendor errors, non-2xx answers whose body echoes
// the request, refused connections) and searches the captured log for every
// secret: URL tokens in query and path, and signing secrets.
func TestSecretsNeverShowInLogs(t *testing.T) {
	// A receiver that echoes the request URL, as some proxies' error pages do.
	echoing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte("no route for " + r.URL.String()))
	}))
	t.Cleanup(echoing.Close)
	ok := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusOK, ""))
	dead := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusOK, ""))
	dead.srv.Close() // connection refused: the client's error quotes the URL
	secrets := []string{"ding-token-in-query", "feishu-token-in-path", "slack-token-in-path", "wecom-key-in-query",
		"hook-token-in-query", "dead-token-in-query", "SECsigning-secret-ding", "signing-secret-feishu", "signing-secret-hook"}
	for k, v := range map[string]string{
		"TEST_DING_URL":      echoing.URL + "/robot/send?access_token=" + secrets[0],
		"TEST_FEISHU_URL":    echoing.URL + "/open-apis/bot/v2/hook/" + secrets[1],
		"TEST_SLACK_URL":     echoing.URL + "/services/T0/B0/" + secrets[2],
		"TEST_WECOM_URL":     ok.srv.URL + "/cgi-bin/webhook/send?key=" + secrets[3], // 200 without errcode
		"TEST_HOOK_URL":      ok.srv.URL + "/hooks?token=" + secrets[4],              // succeeds: debug log
		"TEST_DEAD_URL":      dead.srv.URL + "/robot/send?access_token=" + secrets[5],
		"TEST_DING_SECRET":   secrets[6],
		"TEST_FEISHU_SECRET": secrets[7],
		"TEST_HOOK_SECRET":   secrets[8],
	} {
		t.Setenv(k, v)
	}

	var logs logBuffer
	reg := prometheus.NewPedanticRegistry()
	n, err := notify.New([]spec.Notifier{
		{Name: "ding", Type: "dingtalk", URLEnv: "TEST_DING_URL", SecretEnv: "TEST_DING_SECRET"},
		{Name: "feishu", Type: "feishu", URLEnv: "TEST_FEISHU_URL", SecretEnv: "TEST_FEISHU_SECRET"},
		{Name: "slack", Type: "slack", URLEnv: "TEST_SLACK_URL"},
		{Name: "wecom", Type: "wecom", URLEnv: "TEST_WECOM_URL"},
		{Name: "hook", Type: "webhook", URLEnv: "TEST_HOOK_URL", SecretEnv: "TEST_HOOK_SECRET"},
		{Name: "dead", Type: "dingtalk", URLEnv: "TEST_DEAD_URL"},
	}, logs.logger(), fast, notify.WithRegisterer(reg))
	require.NoError(t, err)
	stop := run(t, n)
	n.Record(event("user-service", reconcile.ReasonStalled, "permission denied"))
	eventually(t, func() bool {
		return count(t, reg, "hook", "sent") == 1 && count(t, reg, "ding", "failed") == 1 &&
			count(t, reg, "feishu", "failed") == 1 && count(t, reg, "slack", "failed") == 1 &&
			count(t, reg, "wecom", "failed") == 1 && count(t, reg, "dead", "failed") == 1
	})
	stop()

	out := logs.String()
	require.Contains(t, out, "notification failed")
	require.Contains(t, out, "notification sent")
	require.Contains(t, out, "posting to "+echoing.URL+"/robot/send:", "the redacted URL keeps scheme, host and path")
	require.Contains(t, out, "posting to "+echoing.URL+"/<redacted>:", "Slack and Feishu keep their token in the path")
	for _, secret := range secrets {
		require.NotContains(t, out, secret)
	}
}

func TestMessagesAreShortAtThreeInTheMorning(t *testing.T) {
	rc := newReceiver(t, checkWeCom("k"), always(http.StatusOK, `{"errcode":0,"errmsg":"ok"}`))
	n, err := notify.New([]spec.Notifier{{Type: "wecom", URL: rc.srv.URL + "/?key=k"}}, nil)
	require.NoError(t, err)
	run(t, n)
	long := strings.Repeat("weight of 10.0.1.11:8080 on sgp-0123 is 100, want 0; ", 200) + "中文"
	n.Record(event("user-service", reconcile.ReasonDriftDetected, long))
	h := rc.next(t)
	require.NoError(t, h.err, "WeCom's 4096-byte content limit holds")
	m, err := decode(h.body)
	require.NoError(t, err)
	content := str(m, "markdown", "content")
	require.Contains(t, content, "… (truncated)")
	require.Contains(t, content, `<font color="warning">WARNING Tandem: user-service: drift detected</font>`)
}

// BenchmarkRecord measures what the reconciler pays per event: filtering,
// deduplication and queueing for three sinks, with nothing delivering (the
// queues stay full and drop their oldest).
func BenchmarkRecord(b *testing.B) {
	n, err := notify.New([]spec.Notifier{
		{Name: "a", Type: "slack", URL: "https://hooks.slack.example/services/x"},
		{Name: "b", Type: "wecom", URL: "https://qyapi.example/cgi-bin/webhook/send?key=k"},
		{Name: "c", Type: "webhook", URL: "https://hooks.example/tandem"},
	}, nil)
	require.NoError(b, err)
	events := make([]reconcile.Event, 1000)
	for i := range events {
		events[i] = event("service-"+strconv.Itoa(i%100), reconcile.ReasonDriftDetected, "drift "+strconv.Itoa(i))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n.Record(events[i%len(events)])
	}
}
