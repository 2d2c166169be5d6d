// Package nacos is Tandem's registry provider for Nacos 2.x and 3.x.
//
// It reads a service two ways: as the operator sees it (the admin list,
// disabled instances included) and as consumers see it (a subscription
// through the official nacos-sdk-go, pushed within about a second). It takes
// instances in and out of consumers' view with enabled=false/true through
// the operator HTTP API (v1 for Nacos 2.x and r-nacos, v3 admin for 3.x),
// always sending the instance's current weight and never metadata, and it
// returns only when its own subscription shows the change.
//
// Tandem never registers instances with its own SDK client: the SDK's
// UpdateInstance re-registers on the daemon's connection, which would make
// the daemon a second publisher of the app's address and take nothing
// offline (SDK clients/naming_client/naming_client.go, UpdateInstance).
package nacos

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/clients/naming_client"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
	"github.com/nacos-group/nacos-sdk-go/v2/vo"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos/internal/sdk"
	"github.com/tandemhq/tandem/spec"
)

var (
	_ providers.Registry                  = (*Provider)(nil)
	_ providers.RegistryWatcher           = (*Provider)(nil)
	_ providers.ExpectingRegistryObserver = (*Provider)(nil)
)

// Provider is one Nacos cluster of the daemon's configuration.
type Provider struct {
	cfg      spec.NacosProvider
	log      *slog.Logger
	op       *operator
	password spec.Secret
	dir      string // the SDK clients' cache directories live here

	mu      sync.Mutex
	closed  bool
	clients map[string]naming_client.INamingClient // one per namespace: the SDK binds a client to one
	subs    map[subKey]*subscription
}

// New builds a provider. Credentials come from the environment variables
// the config names. The SDK connects lazily, on the first read of a
// service.
func New(cfg spec.NacosProvider, log *slog.Logger) (*Provider, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("provider", spec.KindNacos+"/"+cfg.Name)
	cfg.Default() // a configuration built in code gets the defaults of tandem.yaml
	if len(cfg.Servers) == 0 {
		return nil, fmt.Errorf("nacos provider %s: no servers", cfg.Name)
	}
	if cfg.API != "v1" && cfg.API != "v3" {
		return nil, fmt.Errorf("nacos provider %s: api must be v1 or v3, got %q", cfg.Name, cfg.API)
	}
	user, err := spec.SecretFromEnv(fmt.Sprintf("providers.nacos[%s].usernameEnv", cfg.Name), cfg.UsernameEnv)
	if err != nil {
		return nil, fmt.Errorf("nacos provider %s: %w", cfg.Name, err)
	}
	pass, err := spec.SecretFromEnv(fmt.Sprintf("providers.nacos[%s].passwordEnv", cfg.Name), cfg.PasswordEnv)
	if err != nil {
		return nil, fmt.Errorf("nacos provider %s: %w", cfg.Name, err)
	}
	timeout := cfg.Timeout.D()
	dir, err := os.MkdirTemp("", "tandem-nacos-"+cfg.Name+"-")
	if err != nil {
		return nil, fmt.Errorf("nacos provider %s: %w", cfg.Name, err)
	}
	hc, err := httpClient(cfg, timeout)
	if err != nil {
		return nil, err
	}
	sdk.SetLog(log)
	return &Provider{
		cfg: cfg,
		log: log,
		op: &operator{
			scheme: cfg.Scheme, servers: cfg.Servers, contextPath: cfg.ContextPath, api: cfg.API,
			user: user.Reveal(), pass: pass,
			hc:  hc,
			now: time.Now,
		},
		password: pass,
		dir:      dir,
		clients:  map[string]naming_client.INamingClient{},
		subs:     map[subKey]*subscription{},
	}, nil
}

// httpClient is the operator API's client: with scheme https, TLS
// verified with the provider's CA file, and its client certificate if any.
func httpClient(cfg spec.NacosProvider, timeout time.Duration) (*http.Client, error) {
	hc := &http.Client{Timeout: timeout}
	if cfg.Scheme != "https" {
		return hc, nil
	}
	tc, err := cfg.TLS().ClientConfig(fmt.Sprintf("providers.nacos[%s]", cfg.Name))
	if err != nil {
		return nil, fmt.Errorf("nacos provider %s: %w", cfg.Name, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tc
	hc.Transport = tr
	return hc, nil
}

// Close closes the SDK clients and removes their cache.
func (p *Provider) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	for _, c := range p.clients {
		sdk.Close(c)
	}
	// The SDK may still be writing its cache for a push that arrived just
	// before the close; what is left is only a cache.
	if err := os.RemoveAll(p.dir); err != nil {
		p.log.Debug("removing nacos sdk cache", "dir", p.dir, "err", err)
	}
	return nil
}

// Instances returns the operator view of the service and what Tandem's own
// subscription currently holds (nil before the first push). The first call
// for a service subscribes.
func (p *Provider) Instances(ctx context.Context, ref spec.NacosRef) (providers.RegistryView, error) {
	return p.InstancesExpecting(ctx, ref, nil)
}

// InstancesExpecting is Instances with the addresses the desired state
// expects: those the operator list lacks are looked up one by one with the
// v1 API (r-nacos leaves disabled instances out of its list and shows them
// only there; docs/nacos-servers.md). The v3 list shows every instance.
func (p *Provider) InstancesExpecting(ctx context.Context, ref spec.NacosRef, expect []providers.Addr) (providers.RegistryView, error) {
	// The operator read goes first: its login reports bad credentials as a
	// permanent error, which the SDK cannot.
	list, err := p.operatorView(ctx, ref, expect)
	if err != nil {
		return providers.RegistryView{}, err
	}
	s, err := p.subscription(ref)
	if err != nil {
		return providers.RegistryView{}, err
	}
	visible, _ := s.visible(ref.Cluster)
	return providers.RegistryView{Instances: list, Visible: visible, PushDelay: p.pushDelay()}, nil
}

// nacosPushDelay is how long the official Nacos 2.x and 3.x server waits
// after a change before it pushes the service to its subscribers:
// nacos.naming.push.pushTaskDelay, 500 ms unless the server's
// configuration changes it (DEFAULT_PUSH_TASK_DELAY in
// https://github.com/alibaba/nacos/blob/develop/naming/src/main/java/com/alibaba/nacos/naming/constants/PushConstants.java).
// A server configured with a shorter delay takes that much from the
// margin drain.propagation keeps beyond consumers' caches when a push
// comes late (docs/propagation.md).
const nacosPushDelay = 500 * time.Millisecond

// pushDelay is the server's push delay where it is known: the official
// Nacos server's default. r-nacos's is not documented (UNVERIFIED): 0, so
// the drain counts from when Tandem's subscription showed the change.
func (p *Provider) pushDelay() time.Duration {
	if p.cfg.Server == spec.NacosServerNacos {
		return nacosPushDelay
	}
	return 0
}

// operatorView lists the service and, with the v1 API, looks up each
// address of expect that the list lacks.
func (p *Provider) operatorView(ctx context.Context, ref spec.NacosRef, expect []providers.Addr) ([]providers.RegistryInstance, error) {
	list, err := p.op.list(ctx, ref)
	if err != nil || p.cfg.API != "v1" {
		return list, err
	}
	for _, a := range expect {
		if slices.ContainsFunc(list, func(in providers.RegistryInstance) bool { return in.IP == a.IP && in.Port == a.Port }) {
			continue
		}
		in, ok, err := p.op.detail(ctx, ref, a)
		if err != nil {
			return nil, err
		}
		if ok {
			list = append(list, in)
		}
	}
	return list, nil
}

// SetEnabled sets enabled on every address with the operator API, sending
// each instance's current weight, its ephemeral flag and cluster, and no
// metadata (see operator.update), then waits (bounded by ctx) until Tandem's
// subscription shows every address (enabled) or none of them (disabled). It
// refuses with providers.ErrWouldDisableAll a change that would leave the
// service with no enabled instance, judged on a fresh operator view.
// Addresses that are not registered are skipped when disabling (consumers
// cannot see them) and are an error when enabling.
func (p *Provider) SetEnabled(ctx context.Context, ref spec.NacosRef, addrs []providers.Addr, enabled bool) error {
	action := "disabling"
	if enabled {
		action = "enabling"
	}
	for _, a := range addrs {
		if a.IP == "" || a.Port < 1 || a.Port > 65535 {
			return providers.Permanentf("InvalidArgument", "%s %s: bad address %q:%d", action, ref, a.IP, a.Port)
		}
	}
	if len(addrs) == 0 {
		return nil
	}
	list, err := p.operatorView(ctx, ref, addrs)
	if err != nil {
		return fmt.Errorf("%s %v in %s: %w", action, addrs, ref, err)
	}
	s, err := p.subscription(ref)
	if err != nil {
		return fmt.Errorf("%s %v in %s: %w", action, addrs, ref, err)
	}
	var targets []providers.RegistryInstance
	var found []providers.Addr
	remaining := 0 // enabled instances that stay enabled
	for _, in := range list {
		switch a := (providers.Addr{IP: in.IP, Port: in.Port}); {
		case slices.Contains(addrs, a):
			found = append(found, a)
			if in.Enabled != enabled {
				targets = append(targets, in)
			}
		case in.Enabled:
			remaining++
		}
	}
	if enabled {
		for _, a := range addrs {
			if !slices.Contains(found, a) {
				return fmt.Errorf("%s %s:%d in %s: the instance is not registered", action, a.IP, a.Port, ref)
			}
		}
	} else if remaining == 0 {
		return fmt.Errorf("%s %v in %s: %w", action, addrs, ref, providers.ErrWouldDisableAll)
	}
	for _, in := range targets {
		p.log.Info("setting nacos instance enabled", "action", action, "service", ref.String(), "ip", in.IP, "port", in.Port)
		if err := p.op.update(ctx, ref, in, enabled); err != nil {
			return err
		}
	}
	if err := s.await(ctx, ref.Cluster, found, enabled); err != nil {
		return fmt.Errorf("%s %v in %s: waiting for Tandem's subscription to show the change: %w", action, found, ref, err)
	}
	return nil
}

// Watch calls notify whenever a push changes the service, until ctx ends.
func (p *Provider) Watch(ctx context.Context, ref spec.NacosRef, notify func()) error {
	s, err := p.subscription(ref)
	if err != nil {
		return err
	}
	stop := s.watch(notify)
	defer stop()
	<-ctx.Done()
	return nil
}

type subKey struct{ namespace, group, service string }

// subscription is Tandem's SDK subscription to one service.
type subscription struct {
	subscribeMu sync.Mutex // serialises the SDK Subscribe call
	subscribed  bool
	param       *vo.SubscribeParam
	client      naming_client.INamingClient

	mu       sync.Mutex
	hosts    []model.Instance
	seen     bool          // a push (or the subscribe answer) arrived
	changed  chan struct{} // closed and replaced on every push
	watchers map[*func()]struct{}
}

// subscription returns the service's subscription, subscribing on first
// use with the namespace's SDK client.
func (p *Provider) subscription(ref spec.NacosRef) (*subscription, error) {
	k := subKey{ref.Namespace, ref.Group, ref.Service}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil, fmt.Errorf("nacos provider %s is closed", p.cfg.Name)
	}
	s := p.subs[k]
	if s == nil {
		s = &subscription{changed: make(chan struct{}), watchers: map[*func()]struct{}{}}
		s.param = &vo.SubscribeParam{ServiceName: ref.Service, GroupName: ref.Group, SubscribeCallback: s.update}
		p.subs[k] = s
	}
	p.mu.Unlock()

	s.subscribeMu.Lock()
	defer s.subscribeMu.Unlock()
	if s.subscribed {
		return s, nil
	}
	client, err := p.client(ref.Namespace)
	if err != nil {
		return nil, err
	}
	// The SDK keeps the subscription for redo on every reconnect
	// (naming_grpc/connection_event_listener.go); the callback runs on the
	// push and must not block.
	if err := client.Subscribe(s.param); err != nil {
		_ = client.Unsubscribe(s.param)
		return nil, fmt.Errorf("subscribing to %s: %w", ref, err)
	}
	s.subscribed, s.client = true, client
	return s, nil
}

// resync asks the server for the service afresh. The SDK's cache can end
// up older than the last push: ServiceInfoHolder.ProcessService is not
// atomic, and the re-subscription the SDK makes when it connects
// (connection_event_listener.go redoSubscribe) can store a stale answer
// after a newer push, which then stays until the next push (seen in this
// package's tests right after a client started). Unsubscribing drops the
// SDK's cache entry, and subscribing again fetches the current state.
//
// Unsubscribe drops the callback and the redo entry before it sends its
// request, which fails while the server is unreachable; Subscribe is made
// whatever that request did, since it puts both back before its own
// request (naming_client.go, naming_grpc_proxy.go): the SDK then redoes the
// subscription when it reconnects, even if this request fails too. Giving
// up after a failed Unsubscribe lost the subscription for good (found by the
// reliability suite restarting Nacos mid-transition).
func (s *subscription) resync() error {
	s.subscribeMu.Lock()
	defer s.subscribeMu.Unlock()
	_ = s.client.Unsubscribe(s.param)
	return s.client.Subscribe(s.param)
}

// client returns the SDK client of a namespace, starting it on first use.
func (p *Provider) client(namespace string) (naming_client.INamingClient, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[namespace]; c != nil {
		return c, nil
	}
	c, err := sdk.NewNamingClient(sdk.Config{
		Servers: p.cfg.Servers, GRPCPort: p.cfg.GRPCPort, ContextPath: p.cfg.ContextPath,
		Namespace: namespace, Username: p.op.user, Password: p.password, Timeout: p.cfg.Timeout.D(),
		CacheDir: p.dir + "/" + strings.ReplaceAll(namespace, "/", "_"),
		Scheme:   p.cfg.Scheme, TLS: p.cfg.TLS(),
	})
	if err != nil {
		return nil, fmt.Errorf("nacos provider %s: %w", p.cfg.Name, err)
	}
	p.clients[namespace] = c
	return c, nil
}

// update is the SDK callback: it runs on every push that changes the
// service's hosts.
func (s *subscription) update(hosts []model.Instance, err error) {
	if err != nil {
		return
	}
	s.mu.Lock()
	s.hosts = slices.Clone(hosts)
	s.seen = true
	close(s.changed)
	s.changed = make(chan struct{})
	watchers := slices.Collect(maps.Keys(s.watchers))
	s.mu.Unlock()
	for _, w := range watchers {
		(*w)()
	}
}

// visible returns the addresses consumers are pushed in the cluster
// (enabled and healthy; the server already leaves disabled ones out), nil
// before the first push, and a channel closed at the next push.
func (s *subscription) visible(cluster string) ([]providers.Addr, <-chan struct{}) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.seen {
		return nil, s.changed
	}
	out := []providers.Addr{}
	for _, h := range s.hosts {
		if h.ClusterName == cluster && h.Enable && h.Healthy {
			out = append(out, providers.Addr{IP: h.Ip, Port: int(h.Port)})
		}
	}
	return out, s.changed
}

// resyncAfter is how long await trusts pushes before it asks the server
// afresh: well above Nacos' 500 ms push delay.
const resyncAfter = 2 * time.Second

// await waits until every address is visible (present) or none is.
func (s *subscription) await(ctx context.Context, cluster string, addrs []providers.Addr, present bool) error {
	resync := time.NewTimer(resyncAfter)
	defer resync.Stop()
	for {
		vis, next := s.visible(cluster)
		if vis != nil && allMatch(vis, addrs, present) {
			return nil
		}
		select {
		case <-next:
		case <-resync.C:
			if err := s.resync(); err != nil {
				return fmt.Errorf("subscribing again: %w", err)
			}
			resync.Reset(resyncAfter)
		case <-ctx.Done():
			if vis == nil {
				return fmt.Errorf("no push received yet (check the gRPC port and credentials): %w", ctx.Err())
			}
			return ctx.Err()
		}
	}
}

func allMatch(visible, addrs []providers.Addr, present bool) bool {
	for _, a := range addrs {
		if slices.Contains(visible, a) != present {
			return false
		}
	}
	return true
}

// watch registers notify for every push; the returned function removes it.
func (s *subscription) watch(notify func()) (stop func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	key := &notify
	s.watchers[key] = struct{}{}
	return func() {
		s.mu.Lock()
		defer s.mu.Unlock()
		delete(s.watchers, key)
	}
}
