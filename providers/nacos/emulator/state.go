package emulator

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	auto "github.com/nacos-group/nacos-sdk-go/v2/api/grpc"
	"github.com/nacos-group/nacos-sdk-go/v2/model"
)

const (
	defaultNamespace = "public"        // constant.DEFAULT_NAMESPACE_ID
	defaultGroup     = "DEFAULT_GROUP" // constant.DEFAULT_GROUP
	defaultCluster   = "DEFAULT"       // UtilsAndCommons.DEFAULT_CLUSTER_NAME
	groupSeparator   = "@@"            // constant.SERVICE_INFO_SPLITER
	// cacheMillis is what Nacos 2.x puts in every ServiceInfo (10 s).
	cacheMillis = 10000
	maxWeight   = 10000 // Nacos naming Constants: weight may be 0–10000
)

type serviceKey struct{ namespace, group, name string }

func (k serviceKey) grouped() string { return k.group + groupSeparator + k.name }

func (k serviceKey) String() string { return k.namespace + "/" + k.grouped() }

// newServiceKey applies Nacos' defaults for an empty namespace or group and
// accepts "group@@name" service names (Nacos ServiceNameFilter).
func newServiceKey(namespace, group, name string) serviceKey {
	if namespace == "" {
		namespace = defaultNamespace
	}
	if g, n, ok := strings.Cut(name, groupSeparator); ok {
		group, name = g, n
	}
	if group == "" {
		group = defaultGroup
	}
	return serviceKey{namespace, group, name}
}

type service struct {
	key         serviceKey
	lastRefTime uint64
	// overrides are the operator's InstanceMetadata keyed ip:port:cluster
	// (Nacos InstanceOperatorClientImpl.updateInstance).
	overrides   map[string]*override
	pushPending bool
}

// override is one InstanceMetadata written by the operator API.
type override struct {
	Enabled  bool
	Weight   float64
	Metadata map[string]string
	// expiresAt is set while no connection publishes the instance; the
	// override is deleted then (Nacos NamingMetadataManager
	// .handleClientDisconnectEvent, ExpiredMetadataCleaner).
	expiresAt time.Time
}

// conn is one client connection: the unary calls and the bidirectional stream
// of one gRPC ClientConn, keyed by peer address, as r-nacos does
// (src/grpc/server.rs).
type conn struct {
	id     string
	stream auto.BiRequestStream_RequestBiStreamServer
	sendMu sync.Mutex
	// published holds one instance per service (Nacos
	// AbstractClient.publishers is a Map<Service,InstancePublishInfo>).
	published  map[serviceKey]model.Instance
	subscribed map[serviceKey]bool
}

func metadataID(ip string, port uint64, cluster string) string {
	return ip + ":" + strconv.FormatUint(port, 10) + ":" + cluster
}

// errNotFound is a missing service or instance.
var errNotFound = errors.New("not found")

// errInvalid is a bad parameter.
var errInvalid = errors.New("invalid parameter")

// errMissing is a missing required parameter.
var errMissing = fmt.Errorf("%w: required parameter is not present", errInvalid)

// service returns the service entry, creating it when create is set
// (registration creates a service: ServiceManager.getSingleton). Call with
// e.mu held.
func (e *Emulator) service(k serviceKey, create bool) *service {
	s := e.services[k]
	if s == nil && create {
		s = &service{key: k, overrides: map[string]*override{}}
		e.services[k] = s
	}
	return s
}

// register makes in the connection's one instance of the service and
// pushes (Nacos EphemeralClientOperationServiceImpl
// .registerInstance).
func (e *Emulator) register(c *conn, k serviceKey, in model.Instance) error {
	if !in.Ephemeral {
		// Persistent instances are registered by another request over gRPC
		// (PersistentInstanceRequest); apps register ephemerally.
		return fmt.Errorf("%w: the emulator accepts ephemeral instances only", errInvalid)
	}
	if in.Weight < 0 || in.Weight > maxWeight {
		return fmt.Errorf("%w: weight must be 0..%d, got %v", errInvalid, maxWeight, in.Weight)
	}
	if in.Ip == "" || in.Port == 0 {
		return fmt.Errorf("%w: instance needs ip and port", errInvalid)
	}
	if in.ClusterName == "" {
		in.ClusterName = defaultCluster
	}
	// For gRPC instances, healthy means the connection is alive (Nacos
	// ConnectionBasedClient).
	in.Healthy = true
	in.ServiceName = k.grouped()
	in.InstanceId = in.Ip + "#" + strconv.FormatUint(in.Port, 10) + "#" + in.ClusterName + "#" + k.grouped()
	in.Metadata = maps.Clone(in.Metadata)
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.service(k, true)
	if old, ok := c.published[k]; ok {
		delete(c.published, k)
		e.ownerGone(s, old)
	}
	c.published[k] = in
	e.log.Debug("nacos emulator register", "conn", c.id, "service", k.String(), "ip", in.Ip)
	// Re-registration cancels the expiry of an override (InstanceMetadataEvent
	// with expired=false: NamingMetadataManager.handleInstanceMetadataEvent).
	// So an app that restarts within the expiry comes back still disabled
	// (confirmed on Nacos 3, docs/nacos-servers.md).
	if o := s.overrides[metadataID(in.Ip, in.Port, in.ClusterName)]; o != nil {
		o.expiresAt = time.Time{}
	}
	e.changed(s)
	return nil
}

// deregister drops the connection's instance of the service; its override
// starts to expire (EphemeralClientOperationServiceImpl.deregisterInstance
// publishes InstanceMetadataEvent with expired=true).
func (e *Emulator) deregister(c *conn, k serviceKey) {
	e.mu.Lock()
	defer e.mu.Unlock()
	old, ok := c.published[k]
	if !ok {
		return
	}
	delete(c.published, k)
	s := e.service(k, true)
	e.ownerGone(s, old)
	e.changed(s)
}

// disconnect drops everything a connection published or subscribed and
// pushes (Nacos: the instance disappears when the connection closes).
func (e *Emulator) disconnect(c *conn) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.conns[c.id] == c {
		delete(e.conns, c.id)
	}
	for k, in := range c.published {
		s := e.service(k, true)
		e.ownerGone(s, in)
		e.changed(s)
	}
	c.published = map[serviceKey]model.Instance{}
	c.subscribed = map[serviceKey]bool{}
}

// ownerGone starts the expiry of the override of an instance whose
// publisher left (NamingMetadataManager.handleClientDisconnectEvent marks it
// expired whatever other publishers exist; ExpiredMetadataCleaner deletes
// it once the expiry passed, unless a registration cleared the mark). Call
// with e.mu held.
func (e *Emulator) ownerGone(s *service, in model.Instance) {
	id := metadataID(in.Ip, in.Port, in.ClusterName)
	o := s.overrides[id]
	if o == nil || !o.expiresAt.IsZero() {
		return
	}
	o.expiresAt = time.Now().Add(e.opts.OverrideExpiry)
	at := o.expiresAt
	e.afterFunc(e.opts.OverrideExpiry, func() {
		e.mu.Lock()
		defer e.mu.Unlock()
		if s.overrides[id] == o && o.expiresAt.Equal(at) {
			delete(s.overrides, id)
			e.changed(s)
		}
	})
}

// update writes an operator override (Nacos
// InstanceOperatorClientImpl.updateInstance): the new override replaces the
// old one whole (NamingMetadataOperateService.updateInstanceMetadata); at
// every read its enabled and weight replace the instance's and its metadata
// keys are merged over the app's (instances). Only the service must exist,
// not the instance.
func (e *Emulator) update(k serviceKey, ip string, port uint64, cluster string, o override) error {
	if o.Weight < 0 || o.Weight > maxWeight {
		return fmt.Errorf("%w: weight must be 0..%d, got %v", errInvalid, maxWeight, o.Weight)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.service(k, false)
	if s == nil {
		return fmt.Errorf("%w: service %s", errNotFound, k)
	}
	id := metadataID(ip, port, cluster)
	// A new value keeps a running expiry: the expired entry is tracked apart
	// from the value (NamingMetadataManager.expiredMetadataInfos).
	if old := s.overrides[id]; old != nil {
		o.expiresAt = old.expiresAt
	}
	s.overrides[id] = &o
	e.changed(s)
	return nil
}

// instances lists the service's instances with overrides applied
// (ServiceStorage.parseInstance applies InstanceUtil.updateInstanceMetadata
// to each publisher's copy: enabled and weight replaced, metadata keys merged
// over what the app registered last), sorted by address; enabledOnly hides
// disabled ones as every client-facing read does (Nacos
// selectInstancesWithHealthyProtection with enableOnly=true). Weight 0 is not
// hidden. cluster "" means all. Call with e.mu held.
//
// Every read answers from the current state. Nacos answers its reads from
// what its last push task built (ServiceStorage.getData), so there a change
// shows in reads only when it is pushed. Tandem's SetEnabled returns once
// its subscription was pushed its change, by when both read the same
// (docs/propagation.md, "Confirming the enable").
func (e *Emulator) instances(k serviceKey, cluster string, enabledOnly bool) []model.Instance {
	s := e.services[k]
	var out []model.Instance
	for _, c := range e.conns {
		in, ok := c.published[k]
		if !ok || (cluster != "" && in.ClusterName != cluster) {
			continue
		}
		if s != nil {
			if o := s.overrides[metadataID(in.Ip, in.Port, in.ClusterName)]; o != nil {
				in.Enable, in.Weight = o.Enabled, o.Weight
				in.Metadata = maps.Clone(in.Metadata)
				if in.Metadata == nil {
					in.Metadata = map[string]string{}
				}
				maps.Copy(in.Metadata, o.Metadata)
			}
		}
		if enabledOnly && !in.Enable {
			continue
		}
		out = append(out, in)
	}
	slices.SortFunc(out, func(a, b model.Instance) int {
		return strings.Compare(a.InstanceId, b.InstanceId)
	})
	return out
}

// serviceInfo is what subscribers receive. lastRefTime grows strictly per
// service, as the SDK drops an update whose lastRefTime did not increase
// (SDK naming_cache/service_info_holder.go). clusters is echoed: it is part
// of the SDK's cache key (SDK util.GetServiceCacheKey). Call with e.mu held.
func (e *Emulator) serviceInfo(k serviceKey, clusters string) model.Service {
	hosts := e.instances(k, "", true)
	if hosts == nil {
		hosts = []model.Instance{}
	}
	var last uint64
	s := e.services[k]
	if s != nil {
		last = s.lastRefTime
	}
	ref := max(uint64(time.Now().UnixMilli()), last+1)
	if s != nil {
		s.lastRefTime = ref
	}
	return model.Service{
		Name:        k.name,
		GroupName:   k.group,
		Clusters:    clusters,
		CacheMillis: cacheMillis,
		Hosts:       hosts,
		LastRefTime: ref,
		Valid:       true,
	}
}

// changed schedules a push of the service to its subscribers after
// PushDelay; changes within the delay share one push (Nacos: the change
// fires ServiceChangedEvent, the push follows after pushTaskDelay). Call
// with e.mu held.
func (e *Emulator) changed(s *service) {
	if s.pushPending || e.closed {
		return
	}
	s.pushPending = true
	e.afterFunc(e.opts.PushDelay, func() { e.push(s.key) })
}

// push sends NotifySubscriberRequest to every subscriber of the service.
func (e *Emulator) push(k serviceKey) {
	e.mu.Lock()
	if s := e.services[k]; s != nil {
		s.pushPending = false
	}
	type target struct {
		c    *conn
		info model.Service
	}
	var targets []target
	for _, c := range e.conns {
		if c.subscribed[k] {
			targets = append(targets, target{c, e.serviceInfo(k, "")})
		}
	}
	e.mu.Unlock()
	for _, t := range targets {
		e.log.Debug("nacos emulator push", "conn", t.c.id, "service", k.String(), "hosts", len(t.info.Hosts), "lastRefTime", t.info.LastRefTime)
		if err := t.c.send(notifyPayload(k, t.info)); err != nil {
			e.log.Debug("nacos emulator push failed", "conn", t.c.id, "service", k.String(), "err", err)
		}
	}
}

// Override is the operator override of one instance, as the emulator
// holds it.
type Override struct {
	Enabled  bool
	Weight   float64
	Metadata map[string]string
	// Expiring is set while no connection publishes the instance.
	Expiring bool
}

// Override returns the operator override of ip:port:cluster in a service,
// for tests that watch it expire.
func (e *Emulator) Override(namespace, group, service, ip string, port int, cluster string) (Override, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.services[newServiceKey(namespace, group, service)]
	if s == nil {
		return Override{}, false
	}
	if cluster == "" {
		cluster = defaultCluster
	}
	o := s.overrides[metadataID(ip, uint64(port), cluster)]
	if o == nil {
		return Override{}, false
	}
	return Override{Enabled: o.Enabled, Weight: o.Weight, Metadata: maps.Clone(o.Metadata), Expiring: !o.expiresAt.IsZero()}, true
}

// Instances lists every instance of a service, disabled ones included, with
// the operator overrides applied, as the operator's list shows them; tests
// read live state through it.
func (e *Emulator) Instances(namespace, group, service string) []model.Instance {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.instances(newServiceKey(namespace, group, service), "", false)
}
