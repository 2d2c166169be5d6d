package nacostest

import (
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients"
	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/common/constant"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"github.com/stretchr/testify/require"
)

// awaitTimeout bounds every wait for a push or a state change.
const awaitTimeout = 20 * time.Second

// newSDKClient returns a nacos-sdk-go naming client connected to s (through
// sc when not nil, to reach it through a proxy), closed at cleanup.
func newSDKClient(t testing.TB, s *Server, sc *constant.ServerConfig) naming_client.INamingClient {
	t.Helper()
	if sc == nil {
		c := s.SDKServerConfig()
		sc = &c
	}
	// Not t.TempDir: the SDK's logger may still write after CloseClient, and
	// TempDir fails the test when it cannot remove everything.
	dir, err := os.MkdirTemp("", "nacostest-sdk-")
	require.NoError(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	cc := constant.ClientConfig{
		TimeoutMs:            5000,
		NotLoadCacheAtStart:  true,
		UpdateCacheWhenEmpty: true,
		CacheDir:             dir,
		LogDir:               dir,
		LogLevel:             "warn",
		Username:             s.Username,
		Password:             s.Password,
	}
	client, err := clients.NewNamingClient(vo.NacosClientParam{ClientConfig: &cc, ServerConfigs: []constant.ServerConfig{*sc}})
	require.NoError(t, err)
	t.Cleanup(client.CloseClient)
	return client
}

// app is an application instance registered the way applications do: an
// ephemeral instance over the SDK's gRPC connection.
type app struct {
	service, group string
	ip             string
	port           uint64
	weight         float64
	metadata       map[string]string
}

func (a app) register(t testing.TB, client naming_client.INamingClient) {
	t.Helper()
	ok, err := client.RegisterInstance(vo.RegisterInstanceParam{
		Ip: a.ip, Port: a.port, ServiceName: a.service, GroupName: a.group,
		Weight: a.weight, Enable: true, Healthy: true, Ephemeral: true, Metadata: a.metadata,
	})
	require.NoError(t, err)
	require.True(t, ok)
}

// watcher records what a subscriber is pushed.
type watcher struct {
	mu      sync.Mutex
	pushed  bool             // at least one push arrived
	latest  []model.Instance // the last push
	at      time.Time        // when it arrived
	changed chan struct{}    // signalled after each push
}

// subscribe subscribes client to the service and returns what it is pushed.
func subscribe(t testing.TB, client naming_client.INamingClient, service, group string) *watcher {
	t.Helper()
	w := &watcher{changed: make(chan struct{}, 1)}
	param := &vo.SubscribeParam{
		ServiceName: service,
		GroupName:   group,
		SubscribeCallback: func(instances []model.Instance, err error) {
			w.mu.Lock()
			w.pushed, w.latest, w.at = true, append([]model.Instance(nil), instances...), time.Now()
			w.mu.Unlock()
			select {
			case w.changed <- struct{}{}:
			default:
			}
		},
	}
	require.NoError(t, client.Subscribe(param))
	t.Cleanup(func() { client.Unsubscribe(param) })
	return w
}

// await waits until the latest push satisfies cond and returns it with the
// time it arrived.
func (w *watcher) await(t testing.TB, what string, cond func([]model.Instance) bool) ([]model.Instance, time.Time) {
	t.Helper()
	deadline := time.NewTimer(awaitTimeout)
	defer deadline.Stop()
	for {
		w.mu.Lock()
		pushed, latest, at := w.pushed, w.latest, w.at
		w.mu.Unlock()
		if pushed && cond(latest) {
			return latest, at
		}
		select {
		case <-w.changed:
		case <-deadline.C:
			t.Fatalf("subscriber was not pushed %s within %s; last push: %+v", what, awaitTimeout, latest)
		}
	}
}

// find returns the instance at ip:port.
func find(instances []model.Instance, ip string, port uint64) (model.Instance, bool) {
	for _, in := range instances {
		if in.Ip == ip && in.Port == port {
			return in, true
		}
	}
	return model.Instance{}, false
}

func has(ip string, port uint64) func([]model.Instance) bool {
	return func(in []model.Instance) bool { _, ok := find(in, ip, port); return ok }
}

func hasNot(ip string, port uint64) func([]model.Instance) bool {
	return func(in []model.Instance) bool { _, ok := find(in, ip, port); return !ok }
}
