package loadgen

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/coder/websocket"
)

// redialDelay is the pause after a failed connection attempt.
const redialDelay = 50 * time.Millisecond

// wsClient is one WebSocket user: numbered messages, every echo checked.
type wsClient struct {
	g  *Generator
	id int

	mu      sync.Mutex
	next    int   // next message number
	pending []int // sent, not yet echoed, in order
}

// run connects, talks until the connection ends, and reconnects, until ctx
// ends.
func (c *wsClient) run(ctx context.Context) {
	reconnect := false
	for ctx.Err() == nil {
		dialCtx, cancel := context.WithTimeout(ctx, c.g.cfg.RequestTimeout)
		conn, resp, err := websocket.Dial(dialCtx, c.g.ws, nil)
		cancel()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			c.g.wsEvent(func(r *Report) { r.DialFailures++ }, fmt.Errorf("websocket %d: connecting: %w", c.id, err))
			t := time.NewTimer(redialDelay)
			select {
			case <-ctx.Done():
			case <-t.C:
			}
			t.Stop()
			continue
		}
		c.g.wsEvent(func(r *Report) {
			r.Connected++
			if reconnect {
				r.Reconnects++
			}
		}, nil)
		reconnect = true
		c.talk(ctx, conn, resp.Header.Get("X-Backend"), resp.Header.Get("X-Version"))
		c.g.wsEvent(func(r *Report) { r.Connected-- }, nil)
	}
}

// talk re-sends what is pending, then sends a message every interval and
// reads the echoes, until the connection ends or ctx ends.
func (c *wsClient) talk(ctx context.Context, conn *websocket.Conn, backend, version string) {
	defer conn.CloseNow()
	ended := make(chan error, 1)
	allEchoed := make(chan struct{}, 1)
	go func() { ended <- c.read(conn, backend, version, allEchoed) }()

	c.mu.Lock()
	resend := slices.Clone(c.pending)
	c.mu.Unlock()
	if len(resend) > 0 {
		c.g.wsEvent(func(r *Report) { r.Resent += len(resend) }, nil)
	}
	for _, n := range resend {
		if !c.write(conn, n) {
			c.ended(c.await(conn, ended))
			return
		}
	}
	tick := time.NewTicker(c.g.cfg.MessageInterval)
	defer tick.Stop()
	for {
		select {
		case err := <-ended:
			c.ended(err)
			return
		case <-ctx.Done():
			c.finish(conn, ended, allEchoed)
			return
		case <-tick.C:
		}
		c.mu.Lock()
		n := c.next
		c.next++
		c.pending = append(c.pending, n)
		c.mu.Unlock()
		c.g.wsEvent(func(r *Report) { r.Messages++ }, nil)
		if !c.write(conn, n) {
			c.ended(c.await(conn, ended))
			return
		}
	}
}

func (c *wsClient) write(conn *websocket.Conn, n int) bool {
	ctx, cancel := context.WithTimeout(context.Background(), c.g.cfg.RequestTimeout)
	defer cancel()
	return conn.Write(ctx, websocket.MessageText, []byte(strconv.Itoa(n))) == nil
}

// await returns how the connection ended after a failed write: the reader
// sees the close frame (or the loss) that made the write fail.
func (c *wsClient) await(conn *websocket.Conn, ended <-chan error) error {
	t := time.NewTimer(c.g.cfg.RequestTimeout)
	defer t.Stop()
	select {
	case err := <-ended:
		return err
	case <-t.C:
		_ = conn.CloseNow()
		return <-ended
	}
}

// read checks every echo against the oldest pending message.
func (c *wsClient) read(conn *websocket.Conn, backend, version string, allEchoed chan<- struct{}) error {
	for {
		_, data, err := conn.Read(context.Background())
		if err != nil {
			return err
		}
		n, convErr := strconv.Atoi(string(data))
		c.mu.Lock()
		i := slices.Index(c.pending, n)
		if i >= 0 && convErr == nil {
			c.pending = slices.Delete(c.pending, i, i+1)
		}
		empty := len(c.pending) == 0
		c.mu.Unlock()
		switch {
		case i == 0:
			c.g.echoed(backend, version)
		case i > 0:
			c.g.wsEvent(func(r *Report) { r.OutOfOrder++ }, fmt.Errorf("websocket %d: echo %d before %d earlier messages", c.id, n, i))
		default:
			c.g.wsEvent(func(r *Report) { r.OutOfOrder++ }, fmt.Errorf("websocket %d: unexpected echo %q", c.id, data))
		}
		if empty {
			select {
			case allEchoed <- struct{}{}:
			default:
			}
		}
	}
}

// ended counts how a connection ended. After 1000/1001 the pending
// messages are kept to be re-sent; after anything else they are lost.
func (c *wsClient) ended(err error) {
	code := int(websocket.CloseStatus(err))
	normal := code == int(websocket.StatusNormalClosure) || code == int(websocket.StatusGoingAway)
	c.mu.Lock()
	lost := 0
	if !normal {
		lost = len(c.pending)
		c.pending = nil
	}
	c.mu.Unlock()
	var failure error
	if !normal {
		failure = fmt.Errorf("websocket %d: connection ended abnormally (%d messages lost): %w", c.id, lost, err)
	}
	c.g.wsEvent(func(r *Report) {
		r.Closes[code]++
		if !normal {
			r.Abnormal++
			r.Lost += lost
		}
	}, failure)
}

// finish ends the run on this connection: it waits (bounded) for the
// pending echoes, closes with 1000 and counts what is still pending lost.
func (c *wsClient) finish(conn *websocket.Conn, ended <-chan error, allEchoed <-chan struct{}) {
	t := time.NewTimer(c.g.cfg.RequestTimeout)
	defer t.Stop()
wait:
	for {
		c.mu.Lock()
		waiting := len(c.pending) > 0
		c.mu.Unlock()
		if !waiting {
			break
		}
		select {
		case <-allEchoed: // possibly an earlier signal: check again
		case <-t.C:
			break wait
		case err := <-ended:
			c.ended(err) // the server closed meanwhile
			break wait
		}
	}
	_ = conn.Close(websocket.StatusNormalClosure, "done")
	c.mu.Lock()
	lost := len(c.pending)
	c.pending = nil
	c.mu.Unlock()
	if lost > 0 {
		c.g.wsEvent(func(r *Report) { r.Lost += lost }, fmt.Errorf("websocket %d: %d messages not echoed at the end", c.id, lost))
	}
}

// wsEvent updates the report under the lock, recording failure if any.
func (g *Generator) wsEvent(update func(*Report), failure error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	update(&g.r)
	if failure != nil {
		g.errorf(failure)
	}
}

func (g *Generator) echoed(backend, version string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.r.Echoed++
	g.point(backend, version).Echoed++
}
