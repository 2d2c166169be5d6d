package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/tandemhq/tandem/internal/demoapp"
)

// registerNacos registers the app in the Nacos server at addr (host:port of
// its HTTP API; the SDK speaks gRPC on port+1000) as an ephemeral instance of
// service in DEFAULT_GROUP, with metadata version and group, through the
// official SDK. An ephemeral instance belongs to the SDK's gRPC connection
// (Nacos AbstractClient.publishers): the returned function deregisters it and
// closes the connection. providers/nacos may replace this once it lands.
func registerNacos(addr, service, ip string, port int, o demoapp.Options, log *slog.Logger) (func(), error) {
	if parsed := net.ParseIP(ip); parsed == nil || parsed.IsUnspecified() {
		return nil, fmt.Errorf("registering in nacos: --listen must name the IP consumers reach, got %q", ip)
	}
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, fmt.Errorf("registering in nacos: --nacos-addr %q: %w", addr, err)
	}
	nacosPort, err := strconv.ParseUint(p, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("registering in nacos: --nacos-addr %q: bad port", addr)
	}
	// The SDK writes its log and service cache to files; keep them per
	// instance under the temporary directory.
	dir := filepath.Join(os.TempDir(), "tandem-demoapp-nacos", strconv.Itoa(port))
	client, err := clients.NewNamingClient(vo.NacosClientParam{
		ClientConfig: constant.NewClientConfig(
			constant.WithTimeoutMs(5000),
			constant.WithNotLoadCacheAtStart(true),
			constant.WithLogDir(filepath.Join(dir, "log")),
			constant.WithCacheDir(filepath.Join(dir, "cache")),
			constant.WithLogLevel("warn"),
		),
		ServerConfigs: []constant.ServerConfig{*constant.NewServerConfig(host, nacosPort)},
	})
	if err != nil {
		return nil, fmt.Errorf("registering in nacos %s: %w", addr, err)
	}
	ok, err := client.RegisterInstance(vo.RegisterInstanceParam{
		Ip: ip, Port: uint64(port), ServiceName: service,
		Weight: 1, Enable: true, Healthy: true, Ephemeral: true,
		Metadata: map[string]string{"version": o.Version, "group": o.Group},
	})
	if err == nil && !ok {
		err = fmt.Errorf("the server refused it")
	}
	if err != nil {
		client.CloseClient()
		return nil, fmt.Errorf("registering %s:%d as %s in nacos %s: %w", ip, port, service, addr, err)
	}
	log.Info("registered in nacos", "service", service, "nacos", addr)
	return func() {
		if _, err := client.DeregisterInstance(vo.DeregisterInstanceParam{
			Ip: ip, Port: uint64(port), ServiceName: service, Ephemeral: true,
		}); err != nil {
			log.Warn("deregistering from nacos failed; closing the connection removes the instance", "err", err)
		}
		client.CloseClient()
	}, nil
}
