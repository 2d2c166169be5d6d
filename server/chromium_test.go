package server_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/coder/websocket/wsjson"
	"github.com/stretchr/testify/require"
)

// chromiumPath finds Debian's chromium, or skips the test when it is
// missing, unless TANDEM_REQUIRE_CHROMIUM=1 (make test sets it) makes that
// a failure.
func chromiumPath(t *testing.T) string {
	t.Helper()
	for _, p := range []string{os.Getenv("TANDEM_CHROMIUM"), "/usr/bin/chromium"} {
		if p == "" {
			continue
		}
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	if p, err := exec.LookPath("chromium"); err == nil {
		return p
	}
	if os.Getenv("TANDEM_REQUIRE_CHROMIUM") == "1" {
		t.Fatal("chromium is missing and TANDEM_REQUIRE_CHROMIUM=1: run scripts/install-chromium.sh")
	}
	t.Skip("chromium is missing (scripts/install-chromium.sh installs it)")
	return ""
}

// browser is a headless chromium driven over the DevTools protocol: one
// page, attached with a flat session, commands sent one at a time.
type browser struct {
	conn    *websocket.Conn
	session string
	nextID  int

	mu     sync.Mutex
	errors []string // exceptions and console errors of the page
}

// startBrowser launches chromium on loopback with a throwaway profile, and
// stops it (its whole process group) when the test ends.
func startBrowser(t *testing.T) *browser {
	t.Helper()
	path := chromiumPath(t)
	profile := t.TempDir()
	cmd := exec.Command(path,
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-dev-shm-usage", "--hide-scrollbars", "--lang=en-US",
		"--user-data-dir="+profile, "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
		"about:blank")
	// Its own TMPDIR: chromium leaves a singleton socket directory there.
	cmd.Env = append(os.Environ(), "TZ=UTC", "LANG=en_US.UTF-8", "TMPDIR="+t.TempDir())
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL} // no browser outlives a test binary that died
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())

	endpoint := make(chan string, 1)
	var logMu sync.Mutex
	var logTail []string
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if ws, ok := strings.CutPrefix(line, "DevTools listening on "); ok {
				endpoint <- ws
			}
			logMu.Lock()
			logTail = append(logTail[max(0, len(logTail)-40):], line)
			logMu.Unlock()
		}
	}()
	exited := make(chan struct{})
	go func() {
		<-scanned // Wait closes the pipe: read it to the end first
		_ = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() { stopGroup(t, cmd.Process.Pid, exited) })
	chromeLog := func() string {
		logMu.Lock()
		defer logMu.Unlock()
		return strings.Join(logTail, "\n")
	}

	var ws string
	select {
	case ws = <-endpoint:
	case <-exited:
		t.Fatalf("chromium exited before listening:\n%s", chromeLog())
	case <-time.After(60 * time.Second):
		t.Fatalf("chromium did not listen within 60s:\n%s", chromeLog())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, _, err := websocket.Dial(ctx, ws, nil)
	require.NoError(t, err)
	conn.SetReadLimit(64 << 20)
	b := &browser{conn: conn}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = b.call(ctx, "", "Browser.close", nil, nil) // a polite end; the group is stopped anyway
		_ = conn.CloseNow()
	})

	var target struct {
		TargetID string `json:"targetId"`
	}
	require.NoError(t, b.call(ctx, "", "Target.createTarget", map[string]any{"url": "about:blank"}, &target))
	var attached struct {
		SessionID string `json:"sessionId"`
	}
	require.NoError(t, b.call(ctx, "", "Target.attachToTarget", map[string]any{"targetId": target.TargetID, "flatten": true}, &attached))
	b.session = attached.SessionID
	for _, m := range []string{"Runtime.enable", "Page.enable"} {
		require.NoError(t, b.call(ctx, b.session, m, nil, nil))
	}
	require.NoError(t, b.call(ctx, b.session, "Emulation.setDeviceMetricsOverride",
		map[string]any{"width": 1440, "height": 1000, "deviceScaleFactor": 1, "mobile": false}, nil))
	return b
}

// stopGroup ends chromium and every process it started: SIGTERM, then
// SIGKILL if it is still there after a while; then waits until the group
// is gone, so that the profile directory can be removed.
func stopGroup(t *testing.T, pid int, exited <-chan struct{}) {
	_ = syscall.Kill(-pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-pid, syscall.SIGKILL)
		<-exited
	}
	_ = syscall.Kill(-pid, syscall.SIGKILL) // helpers that outlived the browser
	for i := 0; i < 100 && !errors.Is(syscall.Kill(-pid, 0), syscall.ESRCH); i++ {
		time.Sleep(50 * time.Millisecond) // bounded poll: the kernel reaps them
	}
}

type cdpMessage struct {
	ID        int             `json:"id,omitempty"`
	Method    string          `json:"method,omitempty"`
	Params    json.RawMessage `json:"params,omitempty"`
	Result    json.RawMessage `json:"result,omitempty"`
	SessionID string          `json:"sessionId,omitempty"`
	Error     *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// call sends one command and reads until its answer, noting the page's
// exceptions and console errors on the way.
func (b *browser) call(ctx context.Context, session, method string, params, result any) error {
	b.nextID++
	id := b.nextID
	msg := map[string]any{"id": id, "method": method}
	if params != nil {
		msg["params"] = params
	}
	if session != "" {
		msg["sessionId"] = session
	}
	if err := wsjson.Write(ctx, b.conn, msg); err != nil {
		return fmt.Errorf("%s: %w", method, err)
	}
	for {
		var m cdpMessage
		if err := wsjson.Read(ctx, b.conn, &m); err != nil {
			return fmt.Errorf("%s: %w", method, err)
		}
		b.note(m)
		if m.ID != id {
			continue
		}
		if m.Error != nil {
			return fmt.Errorf("%s: %s (%d)", method, m.Error.Message, m.Error.Code)
		}
		if result != nil {
			return json.Unmarshal(m.Result, result)
		}
		return nil
	}
}

func (b *browser) note(m cdpMessage) {
	var text string
	switch m.Method {
	case "Runtime.exceptionThrown":
		var p struct {
			ExceptionDetails struct {
				Text      string `json:"text"`
				Exception struct {
					Description string `json:"description"`
				} `json:"exception"`
			} `json:"exceptionDetails"`
		}
		_ = json.Unmarshal(m.Params, &p)
		text = p.ExceptionDetails.Text + " " + p.ExceptionDetails.Exception.Description
	case "Runtime.consoleAPICalled":
		var p struct {
			Type string            `json:"type"`
			Args []json.RawMessage `json:"args"`
		}
		_ = json.Unmarshal(m.Params, &p)
		if p.Type != "error" {
			return
		}
		text = "console.error " + string(m.Params)
	default:
		return
	}
	b.mu.Lock()
	b.errors = append(b.errors, text)
	b.mu.Unlock()
}

func (b *browser) pageErrors() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.errors...)
}

func (b *browser) navigate(ctx context.Context, url string) error {
	return b.call(ctx, b.session, "Page.navigate", map[string]any{"url": url}, nil)
}

// eval evaluates a JavaScript expression in the page and decodes its value.
func (b *browser) eval(ctx context.Context, expr string, out any) error {
	var res struct {
		Result struct {
			Value json.RawMessage `json:"value"`
		} `json:"result"`
		ExceptionDetails *struct {
			Text string `json:"text"`
		} `json:"exceptionDetails"`
	}
	if err := b.call(ctx, b.session, "Runtime.evaluate", map[string]any{"expression": expr, "returnByValue": true}, &res); err != nil {
		return err
	}
	if res.ExceptionDetails != nil {
		return fmt.Errorf("evaluating %q: %s", expr, res.ExceptionDetails.Text)
	}
	return json.Unmarshal(res.Result.Value, out)
}

// waitFor evaluates a boolean expression until it is true (a bounded poll
// of what the page shows; the page updates on its own).
func (b *browser) waitFor(ctx context.Context, t *testing.T, what, expr string) {
	t.Helper()
	for {
		var ok bool
		err := b.eval(ctx, expr, &ok)
		if err == nil && ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("the page never showed %s (last error: %v; page errors: %v)", what, err, b.pageErrors())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// screenshot captures the whole page as PNG.
func (b *browser) screenshot(ctx context.Context) ([]byte, error) {
	var metrics struct {
		CSSContentSize struct {
			Width  float64 `json:"width"`
			Height float64 `json:"height"`
		} `json:"cssContentSize"`
	}
	if err := b.call(ctx, b.session, "Page.getLayoutMetrics", nil, &metrics); err != nil {
		return nil, err
	}
	var shot struct {
		Data []byte `json:"data"` // base64 in JSON
	}
	err := b.call(ctx, b.session, "Page.captureScreenshot", map[string]any{
		"format": "png", "captureBeyondViewport": true,
		"clip": map[string]any{"x": 0, "y": 0, "width": metrics.CSSContentSize.Width, "height": metrics.CSSContentSize.Height, "scale": 1},
	}, &shot)
	return shot.Data, err
}
