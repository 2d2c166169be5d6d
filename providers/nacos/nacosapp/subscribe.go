package nacosapp

import (
	"context"
	"fmt"
	"os"

	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/tandemhq/tandem/providers/nacos/internal/sdk"
)

// Instance is one instance a consumer may call.
type Instance struct {
	IP       string
	Port     int
	Weight   float64
	Metadata map[string]string
}

// Subscribe subscribes to service as a consumer application does (Spring
// Cloud's NacosServiceDiscovery, Dubbo's NacosRegistry): through the
// official SDK, which receives the server's pushes. update is called with
// the instances a consumer may call, those of cfg.Cluster that are enabled
// and healthy with a weight above 0 (the filter of the Java client's
// selectInstances, NacosNamingService), on the first answer
// and on every push that changes them; it must not block. The returned
// function unsubscribes and closes the connection. ctx bounds the
// subscription only.
func Subscribe(ctx context.Context, cfg Config, service string, update func([]Instance)) (stop func(), err error) {
	if service == "" {
		return nil, fmt.Errorf("subscribing to nacos: a service name is required")
	}
	cfg.defaults()
	dir, err := os.MkdirTemp("", "tandem-nacosapp-")
	if err != nil {
		return nil, fmt.Errorf("subscribing to %s in nacos: %w", service, err)
	}
	client, err := sdk.NewNamingClient(sdk.Config{
		Servers: cfg.Servers, GRPCPort: cfg.GRPCPort, ContextPath: cfg.ContextPath, Namespace: cfg.Namespace,
		Username: cfg.Username, Password: cfg.Password, Timeout: cfg.Timeout, CacheDir: dir,
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("subscribing to %s in nacos: %w", service, err)
	}
	closeAll := func() {
		sdk.Close(client)
		_ = os.RemoveAll(dir)
	}
	param := &vo.SubscribeParam{ServiceName: service, GroupName: cfg.Group,
		SubscribeCallback: func(hosts []model.Instance, err error) {
			if err != nil {
				return
			}
			var out []Instance
			for _, h := range hosts {
				if h.ClusterName == cfg.Cluster && h.Enable && h.Healthy && h.Weight > 0 {
					out = append(out, Instance{IP: h.Ip, Port: int(h.Port), Weight: h.Weight, Metadata: h.Metadata})
				}
			}
			update(out)
		}}
	done := make(chan error, 1)
	go func() { done <- client.Subscribe(param) }()
	select {
	case err = <-done:
	case <-ctx.Done():
		closeAll() // fails the pending request
		<-done
		return nil, fmt.Errorf("subscribing to %s in nacos: %w", service, ctx.Err())
	}
	if err != nil {
		closeAll()
		return nil, fmt.Errorf("subscribing to %s in nacos: %w", service, err)
	}
	return func() {
		_ = client.Unsubscribe(param)
		closeAll()
	}, nil
}
