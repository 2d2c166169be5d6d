package nacostest

import (
	"fmt"
	"os"
	"sync"
	"testing"
)

// TestingM is what TestMain runs: *testing.M, or a wrapper of it such as the
// one goleak.VerifyTestMain accepts.
type TestingM interface{ Run() int }

// SharedMain wraps m so that its Run stops the servers that Shared started,
// once every test of the package has run. Use it in TestMain:
//
//	func TestMain(m *testing.M) { goleak.VerifyTestMain(nacostest.SharedMain(m)) }
//
// or, without goleak, os.Exit(nacostest.SharedMain(m).Run()).
func SharedMain(m TestingM) TestingM { return sharedMain{m} }

type sharedMain struct{ m TestingM }

func (s sharedMain) Run() int {
	shared.mu.Lock()
	shared.enabled = true
	shared.mu.Unlock()
	code := s.m.Run()
	if err := stopShared(); err != nil {
		fmt.Fprintln(os.Stderr, "nacostest:", err)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Shared returns a server of that kind and options that the tests of the
// package share: the first call starts it, SharedMain stops it after the
// last test. It skips or fails like Start when the server is not installed,
// and fails every caller when the server could not start. Tests that share a
// server see each other's data, so each should use its own service names.
func Shared(t testing.TB, kind string, opts Options) *Server {
	t.Helper()
	requireInstalled(t, kind)
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.enabled {
		t.Fatal("nacostest.Shared needs TestMain to run the tests through nacostest.SharedMain")
	}
	key := sharedKey{kind, opts}
	e, ok := shared.servers[key]
	if !ok {
		e = &sharedEntry{}
		e.server, e.err = launch(kind, opts)
		if shared.servers == nil {
			shared.servers = make(map[sharedKey]*sharedEntry)
		}
		shared.servers[key] = e
	}
	if e.err != nil {
		t.Fatalf("starting shared %s: %v", kind, e.err)
	}
	s := e.server
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("shared %s server log %s, last lines:\n%s", kind, s.proc.logPath, s.proc.tail())
		}
	})
	return s
}

type sharedKey struct {
	kind string
	opts Options
}

type sharedEntry struct {
	server *Server
	err    error
}

var shared struct {
	mu      sync.Mutex
	enabled bool // SharedMain is running the tests
	servers map[sharedKey]*sharedEntry
}

// stopShared stops every shared server.
func stopShared() error {
	shared.mu.Lock()
	defer shared.mu.Unlock()
	var first error
	for key, e := range shared.servers {
		if e.server == nil {
			continue
		}
		if err := e.server.stop(); err != nil && first == nil {
			first = fmt.Errorf("stopping shared %s: %w", key.kind, err)
		}
	}
	shared.servers = nil
	shared.enabled = false
	return first
}
