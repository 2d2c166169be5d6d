// Package emulator is a small Nacos naming server for the demo and for fast
// tests. It speaks the gRPC protocol of nacos-sdk-go v2 (the SDK's own
// generated service interfaces and request/response types are reused) and
// the operator HTTP subset Tandem uses, in two modes: "v1" behaves like
// Nacos 2.x, "v3" like Nacos 3.x (the v3 admin API; v1 writes answer 410).
//
// Every behaviour is commented with its source: a class or method of the
// Nacos server (github.com/alibaba/nacos, "Nacos") or of nacos-sdk-go v2
// ("SDK"), or an observation on a real server recorded in
// docs/nacos-servers.md. The same conformance suite
// (providers/nacos/conformance_test.go) runs against this emulator and
// against real servers to keep it honest.
package emulator

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	auto "github.com/nacos-group/nacos-sdk-go/v2/api/grpc"
	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"

	"github.com/tandemhq/tandem/spec"
)

// Modes.
const (
	ModeV1 = "v1" // Nacos 2.x: PUT /v1/ns/instance, GET /v1/ns/catalog/instances
	ModeV3 = "v3" // Nacos 3.x: /v3/admin/ns/instance[/list]; v1 writes answer 410
)

// Defaults taken from Nacos.
const (
	// DefaultOverrideExpiry is how long an operator override outlives the
	// connection that owned the instance (Nacos
	// GlobalConfig.getExpiredMetadataExpiredTime, 60 s).
	DefaultOverrideExpiry = 60 * time.Second
	// DefaultTokenTTL is the lifetime of a login token
	// (nacos.core.auth.plugin.nacos.token.expire.seconds, 18000 s).
	DefaultTokenTTL = 18000 * time.Second
	// ContextPath is where the HTTP API lives, as on a default Nacos.
	ContextPath = "/nacos"
)

// Options configure an emulator.
type Options struct {
	Mode string // ModeV1 (default) or ModeV3
	// Username and Password turn authentication on: logins must match, and
	// every other HTTP request and every naming gRPC request must carry
	// the token (docs/nacos-servers.md, "Auth").
	Username string
	Password spec.Secret
	// GRPCPort is the gRPC port; 0 means the HTTP port + 1000, as Nacos and
	// the SDK assume (SDK ServerConfig.GrpcPort), or any free port when the
	// HTTP port is 0.
	GRPCPort int
	// PushDelay delays pushes after a change, as Nacos does
	// (nacos.naming.push.pushTaskDelay, 500 ms; Nacos PushConstants). Changes
	// within the delay are merged into one push. 0 pushes at once.
	PushDelay time.Duration
	// OverrideExpiry replaces DefaultOverrideExpiry (tests use a short one).
	OverrideExpiry time.Duration
	// TokenTTL replaces DefaultTokenTTL.
	TokenTTL time.Duration
	Log      *slog.Logger
}

// Emulator is one emulated Nacos server.
type Emulator struct {
	opts Options
	log  *slog.Logger

	mu       sync.Mutex
	closed   bool
	conns    map[string]*conn // by the peer address of the client's TCP connection
	services map[serviceKey]*service
	tokens   map[string]time.Time // token -> expiry
	timers   map[*time.Timer]struct{}
	calls    map[string]int // answered requests by gRPC payload type or "METHOD path"
	doneCh   chan struct{}  // closed by Close

	addrs   Addrs
	grpcSrv *grpc.Server
	httpSrv *http.Server
	wg      sync.WaitGroup
}

// New returns an emulator that is not listening yet.
func New(opts Options) *Emulator {
	if opts.Mode == "" {
		opts.Mode = ModeV1
	}
	if opts.OverrideExpiry <= 0 {
		opts.OverrideExpiry = DefaultOverrideExpiry
	}
	if opts.TokenTTL <= 0 {
		opts.TokenTTL = DefaultTokenTTL
	}
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Emulator{
		opts:     opts,
		log:      log,
		conns:    map[string]*conn{},
		services: map[serviceKey]*service{},
		tokens:   map[string]time.Time{},
		timers:   map[*time.Timer]struct{}{},
		calls:    map[string]int{},
		doneCh:   make(chan struct{}),
	}
}

// Addrs are where a started emulator listens.
type Addrs struct {
	HTTP string // host:port of the HTTP API (under ContextPath)
	GRPC string // host:port of the gRPC API
}

// GRPCPort returns the gRPC port.
func (a Addrs) GRPCPort() int {
	_, p, _ := net.SplitHostPort(a.GRPC)
	n, _ := strconv.Atoi(p)
	return n
}

// Start listens on httpAddr and on the gRPC port (Options.GRPCPort; pass
// Addrs.GRPCPort to clients when it is not the HTTP port + 1000). The
// servers stop when ctx ends or Close is called.
func (e *Emulator) Start(ctx context.Context, httpAddr string) (Addrs, error) {
	if e.opts.Mode != ModeV1 && e.opts.Mode != ModeV3 {
		return Addrs{}, fmt.Errorf("starting nacos emulator: mode must be %s or %s, got %q", ModeV1, ModeV3, e.opts.Mode)
	}
	hl, err := net.Listen("tcp", httpAddr)
	if err != nil {
		return Addrs{}, fmt.Errorf("starting nacos emulator: %w", err)
	}
	host, _, _ := net.SplitHostPort(hl.Addr().String())
	grpcPort := e.opts.GRPCPort
	if _, p, _ := net.SplitHostPort(httpAddr); grpcPort == 0 && p != "0" {
		grpcPort = hl.Addr().(*net.TCPAddr).Port + 1000
	}
	grpcAddr := net.JoinHostPort(host, strconv.Itoa(grpcPort))
	gl, err := net.Listen("tcp", grpcAddr)
	if err != nil {
		_ = hl.Close()
		return Addrs{}, fmt.Errorf("starting nacos emulator gRPC: %w", err)
	}
	if err := e.serve(hl, gl); err != nil {
		return Addrs{}, err
	}
	e.wg.Add(1)
	stop := context.AfterFunc(ctx, func() { _ = e.Close() })
	go func() {
		defer e.wg.Done()
		<-e.doneCh
		stop()
	}()
	e.log.Info("nacos emulator listening", "http", e.addrs.HTTP, "grpc", e.addrs.GRPC, "mode", e.opts.Mode, "auth", e.opts.Username != "")
	return e.addrs, nil
}

// serve serves the HTTP and gRPC APIs on their listeners, unless the
// emulator is closed.
func (e *Emulator) serve(hl, gl net.Listener) error {
	// The SDK pings every 60 s even without streams (grpc_client.go
	// getKeepAliveTimeMillis); grpc-go's default policy would answer that
	// with GOAWAY too_many_pings.
	// Stop waits for the handlers, so that a restart sees every
	// connection gone.
	grpcSrv := grpc.NewServer(grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime: 5 * time.Second, PermitWithoutStream: true,
	}), grpc.WaitForHandlers(true))
	auto.RegisterRequestServer(grpcSrv, requestServer{e: e})
	auto.RegisterBiRequestStreamServer(grpcSrv, streamServer{e: e})
	httpSrv := &http.Server{Handler: e.httpHandler(), ReadHeaderTimeout: 10 * time.Second}
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		_ = hl.Close()
		_ = gl.Close()
		return errors.New("nacos emulator: closed")
	}
	e.grpcSrv, e.httpSrv = grpcSrv, httpSrv
	e.addrs = Addrs{HTTP: hl.Addr().String(), GRPC: gl.Addr().String()}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		_ = grpcSrv.Serve(gl)
	}()
	go func() {
		defer e.wg.Done()
		if err := httpSrv.Serve(hl); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("nacos emulator http server stopped", "err", err)
		}
	}()
	return nil
}

// Restart stops the started server and starts it again on the same addresses,
// as a restart of Nacos does. Every client connection drops, so the ephemeral
// instances and subscriptions are gone until their clients reconnect and redo
// them (the SDK redoes them on every reconnect, SDK
// naming_grpc/connection_event_listener.go); what Nacos keeps on disk
// survives: the operator overrides (InstanceMetadata is written through Raft,
// Nacos InstanceOperatorClientImpl) and login tokens (JWTs signed with the
// configured secret key, Nacos JwtTokenManager). Pending override expiries
// are forgotten, as they are kept in memory only
// (NamingMetadataManager.expiredMetadataInfos; UNVERIFIED what a restarted
// server does with overrides whose instance never comes back). down is called
// while the server is stopped, e.g. to keep it down for a while.
func (e *Emulator) Restart(down func()) error {
	e.mu.Lock()
	if e.closed || e.grpcSrv == nil {
		e.mu.Unlock()
		return errors.New("restarting nacos emulator: it is not running")
	}
	grpcSrv, httpSrv, addrs := e.grpcSrv, e.httpSrv, e.addrs
	e.mu.Unlock()
	grpcSrv.Stop() // every connection is gone when it returns
	_ = httpSrv.Close()
	e.mu.Lock()
	for _, s := range e.services {
		for _, o := range s.overrides {
			o.expiresAt = time.Time{}
		}
	}
	e.mu.Unlock()
	if down != nil {
		down()
	}
	hl, err := net.Listen("tcp", addrs.HTTP)
	if err != nil {
		return fmt.Errorf("restarting nacos emulator: %w", err)
	}
	gl, err := net.Listen("tcp", addrs.GRPC)
	if err != nil {
		_ = hl.Close()
		return fmt.Errorf("restarting nacos emulator gRPC: %w", err)
	}
	if err := e.serve(hl, gl); err != nil {
		return fmt.Errorf("restarting nacos emulator: %w", err)
	}
	e.log.Info("nacos emulator restarted", "http", addrs.HTTP, "grpc", addrs.GRPC)
	return nil
}

// Close stops the servers, drops every connection and waits for the
// emulator's goroutines.
func (e *Emulator) Close() error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		e.wg.Wait()
		return nil
	}
	e.closed = true
	for t := range e.timers {
		t.Stop()
	}
	close(e.doneCh)
	grpcSrv, httpSrv := e.grpcSrv, e.httpSrv
	e.mu.Unlock()
	var err error
	if grpcSrv != nil {
		grpcSrv.Stop()
	}
	if httpSrv != nil {
		err = httpSrv.Close()
	}
	e.wg.Wait()
	return err
}

// afterFunc runs f after d unless the emulator closes first. Call with e.mu held.
func (e *Emulator) afterFunc(d time.Duration, f func()) {
	var t *time.Timer
	t = time.AfterFunc(d, func() {
		e.mu.Lock()
		delete(e.timers, t)
		closed := e.closed
		e.mu.Unlock()
		if !closed {
			f()
		}
	})
	e.timers[t] = struct{}{}
}

// Calls returns how many requests were answered: gRPC requests by payload
// type (e.g. ServiceQueryRequest), HTTP requests by "METHOD path".
func (e *Emulator) Calls() map[string]int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return maps.Clone(e.calls)
}

// ResetCalls sets every call counter back to zero.
func (e *Emulator) ResetCalls() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.calls)
}

func (e *Emulator) count(call string) {
	e.mu.Lock()
	e.calls[call]++
	e.mu.Unlock()
}

func newID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
