// Package sdk builds nacos-sdk-go naming clients the way Tandem and its demo
// apps use them: gRPC, no disk cache loaded at start, empty pushes applied,
// and the SDK's process-global logger kept off stdout.
package sdk

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/common/logger"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/tandemhq/tandem/spec"
)

// Config locates a Nacos server and says how to talk to it.
type Config struct {
	Servers     []string // host:port of the HTTP API
	GRPCPort    int      // 0: each server's HTTP port + 1000
	ContextPath string
	Namespace   string // "" or "public": the public namespace
	Username    string // "" when auth is off
	Password    spec.Secret
	Timeout     time.Duration // per request; 0: 5 s
	// CacheDir is where the SDK writes its service cache and would write
	// its log file; it must be private to the client.
	CacheDir string
	// Scheme is http ("" too) or https. With https the SDK's HTTP login
	// and its gRPC connection use TLS (constant.ClientConfig.TLSCfg, read
	// by common/http_agent and common/remote/rpc in v2.3.5), verified with
	// TLS.CAFile, which must be set: without it the SDK's HTTP client
	// skips verification (common/tls/tls.go NewTLS). The gRPC side verifies
	// against the system roots plus TLS.CAFile and ignores ServerName.
	Scheme string
	TLS    spec.TLSFiles
}

// lifecycle serialises creating and closing SDK clients in the process:
// v2.3.5 deletes its client from a process-global map without a lock when a
// client closes (common/remote/rpc/rpc_client.go RpcClient.Shutdown), so two
// clients closing at once (apps of a fleet stopping together) crash the
// process with "concurrent map writes" (nacos-group/nacos-sdk-go issue
// #861, fixed after v2.3.5 by PR #862).
var lifecycle sync.Mutex

// Close closes a client made by NewNamingClient; use it instead of the
// client's own CloseClient.
func Close(c naming_client.INamingClient) {
	lifecycle.Lock()
	defer lifecycle.Unlock()
	c.CloseClient()
}

// NewNamingClient starts a naming client. The SDK logs in over HTTP (when a
// username is set) and connects over gRPC before it returns.
func NewNamingClient(c Config) (naming_client.INamingClient, error) {
	lifecycle.Lock()
	defer lifecycle.Unlock()
	quietOnce.Do(func() { logger.SetLogger(quietLogger{}) })
	if len(c.Servers) == 0 {
		return nil, fmt.Errorf("creating nacos client: no server")
	}
	scheme, tlsCfg := "http", constant.TLSConfig{Appointed: true} // Appointed: not from the environment
	if c.Scheme == "https" {
		if c.TLS.CAFile == "" {
			return nil, fmt.Errorf("creating nacos client: https needs a CA file (the SDK would not verify the server without one)")
		}
		scheme = "https"
		tlsCfg = constant.TLSConfig{Appointed: true, Enable: true, CaFile: c.TLS.CAFile, CertFile: c.TLS.CertFile,
			KeyFile: c.TLS.KeyFile, ServerNameOverride: c.TLS.ServerName}
	}
	servers := make([]constant.ServerConfig, 0, len(c.Servers))
	for _, s := range c.Servers {
		host, port, err := net.SplitHostPort(s)
		if err != nil {
			return nil, fmt.Errorf("creating nacos client: server %q: %w", s, err)
		}
		p, err := strconv.ParseUint(port, 10, 16)
		if err != nil {
			return nil, fmt.Errorf("creating nacos client: server %q: port: %w", s, err)
		}
		servers = append(servers, constant.ServerConfig{
			Scheme: scheme, IpAddr: host, Port: p, GrpcPort: uint64(c.GRPCPort), ContextPath: c.ContextPath,
		})
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	cc := constant.ClientConfig{
		TimeoutMs:   uint64(timeout / time.Millisecond),
		NamespaceId: c.Namespace,
		Username:    c.Username,
		Password:    c.Password.Reveal(),
		CacheDir:    c.CacheDir,
		LogDir:      c.CacheDir,
		LogLevel:    "warn",
		// Without these the SDK keeps the last non-empty host list, and loads
		// a stale one from disk at start (SDK
		// naming_cache/service_info_holder.go).
		UpdateCacheWhenEmpty: true,
		NotLoadCacheAtStart:  true,
		TLSCfg:               tlsCfg,
	}
	nc, err := clients.NewNamingClient(vo.NacosClientParam{ClientConfig: &cc, ServerConfigs: servers})
	if err != nil {
		return nil, fmt.Errorf("creating nacos client for %v: %w", c.Servers, err)
	}
	return nc, nil
}

// SetLog routes the SDK's warnings and errors to log at debug level. The
// SDK's logger is process-global: the last call wins. nil discards them.
func SetLog(log *slog.Logger) { sdkLog.Store(log) }

var (
	quietOnce sync.Once
	sdkLog    atomic.Pointer[slog.Logger]
)

// quietLogger is the SDK's logger.Logger: info and debug are dropped,
// warnings and errors go to SetLog's logger at debug level, never stdout.
type quietLogger struct{}

func (quietLogger) log(level, msg string) {
	if l := sdkLog.Load(); l != nil {
		l.LogAttrs(context.Background(), slog.LevelDebug, "nacos sdk", slog.String("level", level), slog.String("msg", msg))
	}
}

func (quietLogger) Info(...any)           {}
func (quietLogger) Debug(...any)          {}
func (quietLogger) Infof(string, ...any)  {}
func (quietLogger) Debugf(string, ...any) {}
func (q quietLogger) Warn(args ...any)    { q.log("warn", fmt.Sprint(args...)) }
func (q quietLogger) Error(args ...any)   { q.log("error", fmt.Sprint(args...)) }
func (q quietLogger) Warnf(f string, args ...any) {
	q.log("warn", fmt.Sprintf(f, args...))
}
func (q quietLogger) Errorf(f string, args ...any) {
	q.log("error", fmt.Sprintf(f, args...))
}
func (quietLogger) Close() error { return nil }
