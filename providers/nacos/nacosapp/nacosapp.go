// Package nacosapp registers an application instance in Nacos the way Spring
// Cloud Alibaba and Dubbo applications do: with the official SDK, over gRPC,
// as an ephemeral instance (weight 1, enabled, cluster DEFAULT unless set)
// whose metadata carries its version. The instance lives as long as the
// SDK's connection. Subscribe is the consumer side: how such applications
// discover the instances they call. The demo fleet and the tests use it.
package nacosapp

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/tandemhq/tandem/providers/nacos/internal/sdk"
	"github.com/tandemhq/tandem/spec"
)

// Config locates the Nacos server and the service's place in it.
type Config struct {
	Servers     []string // host:port of the HTTP API
	GRPCPort    int      // 0: the HTTP port + 1000
	ContextPath string   // default /nacos
	Namespace   string   // default public
	Group       string   // default DEFAULT_GROUP
	Cluster     string   // default DEFAULT
	Username    string   // "" when auth is off
	Password    spec.Secret
	Timeout     time.Duration // per SDK request; default 5 s
}

func (cfg *Config) defaults() {
	if cfg.ContextPath == "" {
		cfg.ContextPath = "/nacos"
	}
	if cfg.Group == "" {
		cfg.Group = "DEFAULT_GROUP"
	}
	if cfg.Cluster == "" {
		cfg.Cluster = "DEFAULT"
	}
}

// Register registers ip:port as an instance of service with metadata (for
// example {"version": "2.4.1"}) and returns a function that deregisters it
// and closes the connection, as an application does when it stops. ctx
// bounds the registration only.
func Register(ctx context.Context, cfg Config, service, ip string, port int, metadata map[string]string) (deregister func(), err error) {
	if err := checkInstance(service, ip, port); err != nil {
		return nil, err
	}
	p, err := NewPublisher(cfg)
	if err != nil {
		return nil, fmt.Errorf("registering %s %s:%d in nacos: %w", service, ip, port, err)
	}
	done := make(chan error, 1)
	go func() { done <- publishOnceConnected(ctx, p, service, ip, port, metadata) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		p.Close() // fails the pending request
		<-done
		return nil, fmt.Errorf("registering %s %s:%d in nacos: %w", service, ip, port, ctx.Err())
	}
	if err != nil {
		p.Close()
		return nil, err
	}
	return func() {
		p.Withdraw(service, ip, port)
		p.Close()
	}, nil
}

// publishOnceConnected publishes, and publishes again while the SDK's
// connection is still being made: the SDK answers a request sent before its
// gRPC connection is up with "client not connected" rather than waiting
// (seen against a Nacos 3 that had just started), and an application keeps
// trying to register while it starts. Other errors are returned at once.
func publishOnceConnected(ctx context.Context, p *Publisher, service, ip string, port int, metadata map[string]string) error {
	wait := 100 * time.Millisecond
	for {
		err := p.Publish(service, ip, port, metadata)
		if err == nil || !strings.Contains(err.Error(), "client not connected") {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// Publisher is one SDK connection that publishes instances, at most one per
// service: Nacos keeps one instance per service and connection (Nacos
// AbstractClient.publishers), so publishing another instance of the same
// service replaces the first. Like Register's, its instances live as long as
// the connection. A few publishers register thousands of instances of as many
// services without a connection each (the scale benchmark does this).
type Publisher struct {
	cfg    Config
	client naming_client.INamingClient
	dir    string
}

// NewPublisher connects to Nacos.
func NewPublisher(cfg Config) (*Publisher, error) {
	cfg.defaults()
	dir, err := os.MkdirTemp("", "tandem-nacosapp-")
	if err != nil {
		return nil, fmt.Errorf("connecting to nacos: %w", err)
	}
	client, err := sdk.NewNamingClient(sdk.Config{
		Servers: cfg.Servers, GRPCPort: cfg.GRPCPort, ContextPath: cfg.ContextPath, Namespace: cfg.Namespace,
		Username: cfg.Username, Password: cfg.Password, Timeout: cfg.Timeout, CacheDir: dir,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("connecting to nacos: %w", err)
	}
	return &Publisher{cfg: cfg, client: client, dir: dir}, nil
}

// Publish registers ip:port as this connection's instance of service, with
// metadata. The SDK bounds the request with Config.Timeout.
func (p *Publisher) Publish(service, ip string, port int, metadata map[string]string) error {
	if err := checkInstance(service, ip, port); err != nil {
		return err
	}
	ok, err := p.client.RegisterInstance(vo.RegisterInstanceParam{
		Ip: ip, Port: uint64(port), ServiceName: service, GroupName: p.cfg.Group, ClusterName: p.cfg.Cluster,
		Weight: 1, Enable: true, Healthy: true, Ephemeral: true, Metadata: metadata,
	})
	if err == nil && !ok {
		// The SDK reports a refused request (auth, bad parameter) as false
		// without an error.
		err = errors.New("the server refused the registration (check auth and parameters)")
	}
	if err != nil {
		return fmt.Errorf("registering %s %s:%d in nacos: %w", service, ip, port, err)
	}
	return nil
}

// Withdraw deregisters this connection's instance of service, best effort.
func (p *Publisher) Withdraw(service, ip string, port int) {
	_, _ = p.client.DeregisterInstance(vo.DeregisterInstanceParam{
		Ip: ip, Port: uint64(port), ServiceName: service, GroupName: p.cfg.Group, Cluster: p.cfg.Cluster, Ephemeral: true,
	})
}

// Close closes the connection: Nacos drops every instance it published.
func (p *Publisher) Close() {
	sdk.Close(p.client)
	_ = os.RemoveAll(p.dir)
}

func checkInstance(service, ip string, port int) error {
	if service == "" || ip == "" || port < 1 || port > 65535 {
		return fmt.Errorf("registering %q %s:%d in nacos: service, ip and a port 1..65535 are required", service, ip, port)
	}
	return nil
}
