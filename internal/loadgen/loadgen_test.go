package loadgen_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/loadgen"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func demo(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := demoapp.Start(t.Context(), demoapp.Options{Name: "a1", Version: "1.0.0", Listener: ln, DrainJitter: 50 * time.Millisecond})
	require.NoError(t, err)
	t.Cleanup(func() { _ = a.Stop() })
	return "http://" + a.Addr()
}

func TestARunAgainstAHealthyServiceIsCleanAndAttributedToItsBackend(t *testing.T) {
	g, err := loadgen.Start(t.Context(), loadgen.Config{URL: demo(t), Rate: 200, WebSockets: 5, MessageInterval: 20 * time.Millisecond, Duration: time.Second})
	require.NoError(t, err)
	<-g.Done()
	r := g.Stop()
	require.True(t, r.Clean(), r.String())
	require.Positive(t, r.Requests)
	require.Positive(t, r.Messages)
	require.Equal(t, r.Messages, r.Echoed)
	require.Equal(t, 5, r.Clients)
	require.Zero(t, r.Connected)
	require.Empty(t, r.Closes)

	requests, echoed := 0, 0
	for _, p := range r.Timeline {
		require.Equal(t, "a1", p.Backend)
		require.Equal(t, "1.0.0", p.Version)
		require.Zero(t, p.Failed)
		require.Zero(t, p.At%(100*time.Millisecond))
		requests += p.Requests
		echoed += p.Echoed
	}
	require.Equal(t, r.Requests, requests)
	require.Equal(t, r.Echoed, echoed)

	var csv strings.Builder
	require.NoError(t, r.WriteTimelineCSV(&csv))
	lines := strings.Split(strings.TrimSpace(csv.String()), "\n")
	require.Equal(t, "seconds,backend,version,requests,failed,echoed", lines[0])
	require.Len(t, lines, len(r.Timeline)+1)
	require.True(t, strings.HasPrefix(lines[1], "0.0,a1,1.0.0,"), lines[1])
}

func TestGoingAwayClosesAreFollowedByReconnectsAndResendsWithoutLoss(t *testing.T) {
	url := demo(t)
	g, err := loadgen.Start(t.Context(), loadgen.Config{URL: url, WebSockets: 10, MessageInterval: 5 * time.Millisecond, Duration: time.Minute})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return g.Snapshot().Connected == 10 }, 5*time.Second, 5*time.Millisecond)

	resp, err := http.Post(url+"/drain", "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Eventually(t, func() bool {
		s := g.Snapshot()
		return s.Reconnects == 10 && s.Connected == 10
	}, 5*time.Second, 5*time.Millisecond)
	r := g.Stop()
	require.True(t, r.Clean(), r.String())
	require.Equal(t, map[int]int{1001: 10}, r.Closes)
	require.Equal(t, r.Messages, r.Echoed)
}

func TestAbnormalClosesLoseThePendingMessagesAndAreCounted(t *testing.T) {
	// A server that echoes one message, then drops the TCP connection
	// without a close frame while the client's next messages are unanswered.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		typ, msg, err := c.Read(context.Background())
		if err == nil {
			_ = c.Write(context.Background(), typ, msg)
		}
		_, _, _ = c.Read(context.Background()) // the next message stays unanswered
		_ = c.CloseNow()
	}))
	t.Cleanup(srv.Close)
	g, err := loadgen.Start(t.Context(), loadgen.Config{URL: srv.URL, WebSockets: 2, MessageInterval: 5 * time.Millisecond, Duration: time.Minute})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return g.Snapshot().Abnormal >= 4 }, 5*time.Second, 5*time.Millisecond)
	r := g.Stop()
	require.False(t, r.Clean())
	require.Equal(t, r.Abnormal, r.Closes[-1])
	require.GreaterOrEqual(t, r.Lost, r.Abnormal)
	require.GreaterOrEqual(t, r.Reconnects, r.Abnormal-2)
	require.Contains(t, r.Errors[0], "connection ended abnormally")
	require.Equal(t, r.Messages, r.Echoed+r.Lost)
}

func TestFailedRequestsAndConnectionAttemptsAreCountedWithTheFirstErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "no server available", http.StatusServiceUnavailable)
	}))
	t.Cleanup(srv.Close)
	g, err := loadgen.Start(t.Context(), loadgen.Config{URL: srv.URL, Rate: 100, WebSockets: 1, Duration: 300 * time.Millisecond})
	require.NoError(t, err)
	<-g.Done()
	r := g.Stop()
	require.False(t, r.Clean())
	require.Positive(t, r.Failed)
	require.Equal(t, r.Requests, r.Failed)
	require.Positive(t, r.DialFailures)
	require.Zero(t, r.Messages)
	require.Len(t, r.Errors, 10)
	require.Contains(t, strings.Join(r.Errors, "\n"), `: 503 Service Unavailable from ""`)
	require.Contains(t, strings.Join(r.Errors, "\n"), "websocket 0: connecting: ")
	for _, p := range r.Timeline {
		require.Empty(t, p.Backend)
		require.Zero(t, p.Requests)
	}
}

func TestAWrongEchoIsAFailure(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Backend", "liar")
		_, _ = w.Write([]byte("req-0"))
	}))
	t.Cleanup(srv.Close)
	g, err := loadgen.Start(t.Context(), loadgen.Config{URL: srv.URL, Rate: 50, Duration: 200 * time.Millisecond})
	require.NoError(t, err)
	<-g.Done()
	r := g.Stop()
	require.Equal(t, r.Requests-1, r.Failed, "only req-0 gets its own echo")
	require.Contains(t, r.Errors[0], `POST req-1: echo "req-0" from "liar"`)
}

func TestTheRunEndsWithItsContext(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	g, err := loadgen.Start(ctx, loadgen.Config{URL: demo(t), Rate: 100, WebSockets: 2, Duration: time.Hour})
	require.NoError(t, err)
	cancel()
	<-g.Done()
	require.True(t, g.Stop().Clean())
}

func TestStartRefusesBadConfigs(t *testing.T) {
	for _, tc := range []struct {
		cfg loadgen.Config
		msg string
	}{
		{loadgen.Config{URL: "ws://127.0.0.1:1", Duration: time.Second}, `loadgen: url must be http://host:port, got "ws://127.0.0.1:1"`},
		{loadgen.Config{URL: "http://127.0.0.1:1"}, "loadgen: duration must be positive"},
		{loadgen.Config{URL: "http://127.0.0.1:1", Duration: time.Second, Rate: -1}, "loadgen: rate and websockets must not be negative"},
	} {
		_, err := loadgen.Start(t.Context(), tc.cfg)
		require.EqualError(t, err, tc.msg)
	}
}
