package emulator_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
)

// backend is an app server that names itself in every answer and echoes
// WebSocket messages prefixed with its name.
func backend(t *testing.T, name string) (ip string, port int) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/ws" {
			_, _ = io.WriteString(w, name)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte(name+":"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	host, p, err := net.SplitHostPort(srv.Listener.Addr().String())
	require.NoError(t, err)
	port, err = strconv.Atoi(p)
	require.NoError(t, err)
	return host, port
}

// frontend seeds group sgp-1 with servers A (weight 100) and B (weight 0)
// and serves its data plane until the test ends.
func frontend(t *testing.T, drain time.Duration) (*emulator.Emulator, string) {
	e := emulator.New(emulator.Options{})
	ipA, portA := backend(t, "A")
	ipB, portB := backend(t, "B")
	require.NoError(t, e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{{ID: "sgp-1", Servers: []*emulator.Server{
		{ID: "i-a", IP: ipA, Port: portA, Weight: 100},
		{ID: "i-b", IP: ipB, Port: portB, Weight: 0},
	}}}}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.NewFrontend(emulator.Target{ServerGroup: "sgp-1"}, drain).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return e, ln.Addr().String()
}

func get(t *testing.T, addr string) (int, string) {
	res, err := http.Get("http://" + addr + "/")
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

func answers(t *testing.T, addr string, n int) map[string]int {
	out := map[string]int{}
	for range n {
		status, body := get(t, addr)
		require.Equal(t, http.StatusOK, status, body)
		out[body]++
	}
	return out
}

func setWeights(t *testing.T, e *emulator.Emulator, a, b int) {
	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-a", a))
	require.NoError(t, e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-b", b))
}

func TestFrontendForwardsByWeightAndNeverToWeightZero(t *testing.T) {
	e, addr := frontend(t, time.Minute)
	require.Equal(t, map[string]int{"A": 20}, answers(t, addr, 20))
	setWeights(t, e, 0, 100)
	require.Equal(t, map[string]int{"B": 20}, answers(t, addr, 20))
	setWeights(t, e, 30, 10)
	require.Equal(t, map[string]int{"A": 30, "B": 10}, answers(t, addr, 40), "smooth weighted round robin")
	setWeights(t, e, 0, 0)
	status, _ := get(t, addr)
	require.Equal(t, http.StatusServiceUnavailable, status)
}

func dial(t *testing.T, addr string) *websocket.Conn {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+addr+"/ws", nil)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

func echo(t *testing.T, c *websocket.Conn, msg string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		return "", err
	}
	_, b, err := c.Read(ctx)
	return string(b), err
}

func TestFrontendKeepsEstablishedWebSocketsWithinTheDrainTimeout(t *testing.T) {
	e, addr := frontend(t, time.Minute)
	old := dial(t, addr)
	got, err := echo(t, old, "1")
	require.NoError(t, err)
	require.Equal(t, "A:1", got)

	setWeights(t, e, 0, 100)
	fresh := dial(t, addr)
	got, err = echo(t, fresh, "2")
	require.NoError(t, err)
	require.Equal(t, "B:2", got, "a new connection goes to the weighted server")
	got, err = echo(t, old, "3")
	require.NoError(t, err)
	require.Equal(t, "A:3", got, "the established connection still reaches the drained server")
}

func TestFrontendClosesConnectionsToADrainedServerAfterTheDrainTimeout(t *testing.T) {
	e, addr := frontend(t, 100*time.Millisecond)
	old := dial(t, addr)
	got, err := echo(t, old, "1")
	require.NoError(t, err)
	require.Equal(t, "A:1", got)
	setWeights(t, e, 0, 100)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = old.Read(ctx)
	require.Error(t, err)
	require.NoError(t, ctx.Err(), "closed by the frontend, not by the test's deadline")
	require.False(t, strings.Contains(err.Error(), "deadline"), err.Error())
}
