package providers

import (
	"context"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Observe is told about every provider call: which provider instance (kind
// "/" name), which operation, how long it took and how it ended.
type Observe func(provider, op string, took time.Duration, err error)

// Instrument wraps every load balancer and registry of s so that each call
// is reported to observe (metrics of provider API latency and failures).
// Optional abilities (SessionCloser, RegistryWatcher,
// ExpectingRegistryObserver) are kept.
func Instrument(s *Set, observe Observe) *Set {
	c := *s
	c.LoadBalancers = make(map[string]LoadBalancer, len(s.LoadBalancers))
	for key, lb := range s.LoadBalancers {
		c.LoadBalancers[key] = instrumentLB(key, lb, observe)
	}
	c.Registries = make(map[string]Registry, len(s.Registries))
	for name, r := range s.Registries {
		c.Registries[name] = instrumentRegistry(spec.KindNacos+"/"+name, r, observe)
	}
	return &c
}

func timed[T any](observe Observe, provider, op string, call func() (T, error)) (T, error) {
	start := time.Now()
	v, err := call()
	observe(provider, op, time.Since(start), err)
	return v, err
}

type instrumentedLB struct {
	key     string
	lb      LoadBalancer
	observe Observe
}

func (i instrumentedLB) Backends(ctx context.Context, b spec.Binding) ([]Backend, error) {
	return timed(i.observe, i.key, "backends", func() ([]Backend, error) { return i.lb.Backends(ctx, b) })
}

func (i instrumentedLB) SetWeights(ctx context.Context, b spec.Binding, changes []WeightChange) error {
	_, err := timed(i.observe, i.key, "set-weights", func() (struct{}, error) { return struct{}{}, i.lb.SetWeights(ctx, b, changes) })
	return err
}

type instrumentedCloser struct {
	instrumentedLB
	closer SessionCloser
}

func (i instrumentedCloser) CloseSessions(ctx context.Context, b spec.Binding, ids []string) (int, error) {
	return timed(i.observe, i.key, "close-sessions", func() (int, error) { return i.closer.CloseSessions(ctx, b, ids) })
}

func instrumentLB(key string, lb LoadBalancer, observe Observe) LoadBalancer {
	base := instrumentedLB{key: key, lb: lb, observe: observe}
	if c, ok := lb.(SessionCloser); ok {
		return instrumentedCloser{base, c}
	}
	return base
}

type instrumentedRegistry struct {
	key     string
	r       Registry
	observe Observe
}

func (i instrumentedRegistry) Instances(ctx context.Context, ref spec.NacosRef) (RegistryView, error) {
	return timed(i.observe, i.key, "instances", func() (RegistryView, error) { return i.r.Instances(ctx, ref) })
}

// InstancesExpecting passes expect on when the registry takes it, so the
// wrapper keeps that ability whatever it wraps.
func (i instrumentedRegistry) InstancesExpecting(ctx context.Context, ref spec.NacosRef, expect []Addr) (RegistryView, error) {
	return timed(i.observe, i.key, "instances", func() (RegistryView, error) { return ReadRegistry(ctx, i.r, ref, expect) })
}

func (i instrumentedRegistry) SetEnabled(ctx context.Context, ref spec.NacosRef, addrs []Addr, enabled bool) error {
	_, err := timed(i.observe, i.key, "set-enabled", func() (struct{}, error) { return struct{}{}, i.r.SetEnabled(ctx, ref, addrs, enabled) })
	return err
}

type instrumentedWatcher struct {
	instrumentedRegistry
	w RegistryWatcher
}

func (i instrumentedWatcher) Watch(ctx context.Context, ref spec.NacosRef, notify func()) error {
	return i.w.Watch(ctx, ref, notify)
}

func instrumentRegistry(key string, r Registry, observe Observe) Registry {
	base := instrumentedRegistry{key: key, r: r, observe: observe}
	if w, ok := r.(RegistryWatcher); ok {
		return instrumentedWatcher{base, w}
	}
	return base
}
