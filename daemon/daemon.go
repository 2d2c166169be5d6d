// Package daemon is `tandem run`: the Git source, the providers and the
// reconcile loop wired together. Git changes, registry pushes, resync ticks
// and API requests only enqueue a service name; every pass re-reads the
// desired state at the revision in force and the live state fresh.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

// Source is the desired-state source (gitsource.Source in production). The
// daemon does not run it: the caller runs it for the life of the process,
// so that it outlives a daemon that loses its leadership.
type Source interface {
	Trigger()
	Subscribe() <-chan struct{}
	Current() gitsource.Status
}

// Options configure a daemon.
type Options struct {
	Config    *spec.Config
	Providers *providers.Set
	Source    Source
	Store     reconcile.Store // the journal
	Fence     reconcile.Fence // nil: always allowed
	// Term is the term during which this daemon may act (under HA, the
	// leadership; nil: for the life of Run's context). When it ends, a
	// step in progress is cancelled at once; when only Run's context ends
	// (a shutdown), the step may finish within the shutdown grace.
	Term     context.Context
	Recorder reconcile.Recorder // events sink (audit log, notifications, metrics); nil: log only
	Log      *slog.Logger
	DryRun   bool // plan and report, change nothing
	// OnPass is told about every finished pass (metrics).
	OnPass reconcile.PassObserver
	// OnSource is told about every change of the source's status (metrics).
	OnSource func(gitsource.Status)
	// Redactor learns the secrets a revision names (deploy.http.tokenEnv),
	// so that they are redacted wherever the daemon writes; nil: none.
	Redactor *redact.Redactor
	// MetadataKeys are the registry metadata keys whose values status
	// shows besides each service's version key (api.metadataKeys).
	MetadataKeys []string
}

// Daemon runs the reconcile loop for every service of the desired state.
type Daemon struct {
	opts  Options
	log   *slog.Logger
	rec   *reconcile.Reconciler
	queue *reconcile.Queue

	mu        sync.RWMutex
	rev       *gitsource.Revision // the good revision in force
	rejected  string              // head hash of the last announced rejection
	fetchDown bool                // a fetch failure was announced and no fetch succeeded since
	watches   map[string]context.CancelFunc
	ready     chan struct{} // closed once a good revision is in force
	readyOnce sync.Once
}

// New builds a daemon; Run starts it.
func New(opts Options) *Daemon {
	log := opts.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{opts: opts, log: log, queue: reconcile.NewQueue(),
		watches: map[string]context.CancelFunc{}, ready: make(chan struct{})}
	d.rec = &reconcile.Reconciler{
		Providers:   opts.Providers,
		Store:       opts.Store,
		Fence:       opts.Fence,
		Recorder:    opts.Recorder,
		Log:         log,
		Heal:        opts.Config.Drift.Mode == spec.DriftHeal,
		DriftRepeat: opts.Config.Drift.Repeat.D(),
		DryRun:      opts.DryRun,
		// Status is served: metadata values other than these are redacted.
		MetadataKeys: opts.MetadataKeys,
	}
	return d
}

// Reconciler exposes the reconciler (status for the API).
func (d *Daemon) Reconciler() *reconcile.Reconciler { return d.rec }

// Run watches the source and reconciles until ctx ends. A pass in progress
// when ctx ends may finish its step (bounded) and journal it, so that a
// stop never leaves a phase half-applied.
func (d *Daemon) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	srcCtx, stopSrc := context.WithCancel(ctx)
	defer func() {
		stopSrc()
		wg.Wait()
	}()
	changes := d.opts.Source.Subscribe()
	wg.Go(func() {
		d.follow(srcCtx, changes)
	})
	worker := &reconcile.Worker{
		Queue: d.queue, Reconciler: d.rec, Desired: d.Desired,
		Concurrency: d.opts.Config.Reconcile.Concurrency,
		Resync:      d.opts.Config.Reconcile.Interval.D(),
		Backoff:     reconcile.Backoff{Base: time.Second, Max: 2 * time.Minute},
		Grace:       shutdownGrace,
		Term:        d.opts.Term,
		Log:         d.log,
		OnPass:      d.opts.OnPass,
	}
	worker.Run(ctx)
	return nil
}

// shutdownGrace bounds how long a step may run on after a stop signal,
// while this daemon may still act (Options.Term).
const shutdownGrace = 2 * time.Minute

// follow applies source changes: a new good revision enqueues every
// service; a rejected head is announced once.
func (d *Daemon) follow(ctx context.Context, changes <-chan struct{}) {
	d.apply(ctx, d.opts.Source.Current())
	for {
		select {
		case <-ctx.Done():
			return
		case <-changes:
			d.apply(ctx, d.opts.Source.Current())
		}
	}
}

func (d *Daemon) apply(ctx context.Context, st gitsource.Status) {
	if d.opts.OnSource != nil {
		d.opts.OnSource(st)
	}
	if rj := st.Rejected; rj != nil && st.Head != nil && st.Head.Hash != d.rejected {
		d.rejected = st.Head.Hash
		in := "none yet"
		if st.Good != nil {
			in = short(st.Good.Hash)
		}
		d.record(reconcile.Event{Time: time.Now(), Type: reconcile.EventWarning, Reason: reconcile.ReasonRevisionRejected,
			Revision: st.Head.Hash, Author: st.Head.Author, Subject: st.Head.Subject,
			Message: fmt.Sprintf("commit %s was not applied (%s); revision %s stays in force:\n%s", short(st.Head.Hash), rj.Reason, in, rj.Err)})
	}
	d.announceFetch(st)
	if st.Good == nil {
		return
	}
	d.mu.Lock()
	prev := d.rev
	if prev != nil && prev.Hash == st.Good.Hash {
		d.mu.Unlock()
		return
	}
	d.rev = st.Good
	d.mu.Unlock()
	d.learnSecrets(st.Good.Set)
	d.readyOnce.Do(func() { close(d.ready) })
	d.log.Info("desired state in force", "revision", st.Good.Hash, "author", st.Good.Author, "subject", st.Good.Subject,
		"services", len(st.Good.Set.Services))
	names := map[string]bool{}
	for _, svc := range st.Good.Set.Services {
		names[svc.Name] = true
		d.queue.Add(svc.Name)
	}
	if prev != nil {
		for _, svc := range prev.Set.Services {
			if !names[svc.Name] {
				d.queue.Add(svc.Name) // the worker forgets it
			}
		}
	}
	d.watchRegistries(ctx, st.Good.Set)
}

// learnSecrets tells the redactor the values of the variables the desired
// state names as deploy tokens.
func (d *Daemon) learnSecrets(set *spec.Set) {
	if d.opts.Redactor == nil {
		return
	}
	for _, svc := range set.Services {
		if h := svc.Deploy.HTTP; h != nil && h.TokenEnv != "" {
			d.opts.Redactor.Add(os.Getenv(h.TokenEnv))
		}
	}
}

// announceFetch reports the start of a Git outage once (the desired state
// cannot be fetched: the revision in force stays), and its end.
func (d *Daemon) announceFetch(st gitsource.Status) {
	switch {
	case st.FetchErr != nil && !d.fetchDown:
		d.fetchDown = true
		in := "none yet"
		if st.Good != nil {
			in = short(st.Good.Hash)
		}
		d.record(reconcile.Event{Time: time.Now(), Type: reconcile.EventWarning, Reason: reconcile.ReasonGitFetchFailed,
			Message: fmt.Sprintf("the desired state cannot be fetched (retrying; revision %s stays in force): %v", in, st.FetchErr)})
	case st.FetchErr == nil && d.fetchDown && !st.LastFetch.IsZero():
		d.fetchDown = false
		d.record(reconcile.Event{Time: time.Now(), Type: reconcile.EventNormal, Reason: reconcile.ReasonGitFetchRecovered,
			Message: "the desired state is fetched again"})
	}
}

// watchRegistries keeps one push subscription per registry service, so that
// a change in Nacos (an instance enabled by hand) is seen at once.
func (d *Daemon) watchRegistries(ctx context.Context, set *spec.Set) {
	want := map[string]*spec.Service{}
	for _, svc := range set.Services {
		if svc.Registry != nil && svc.Registry.Nacos != nil {
			want[svc.Name+"|"+svc.Registry.Nacos.String()] = svc
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for key, cancel := range d.watches {
		if want[key] == nil {
			cancel()
			delete(d.watches, key)
		}
	}
	for key, svc := range want {
		if d.watches[key] != nil {
			continue
		}
		reg, ok := d.opts.Providers.Registries[svc.Registry.Nacos.Provider]
		w, watches := reg.(providers.RegistryWatcher)
		if !ok || !watches {
			continue
		}
		wctx, cancel := context.WithCancel(ctx)
		d.watches[key] = cancel
		name, ref := svc.Name, *svc.Registry.Nacos
		go func() {
			if err := w.Watch(wctx, ref, func() { d.queue.Add(name) }); err != nil && wctx.Err() == nil {
				d.log.Warn("registry watch ended; changes are seen at the next resync", "target", name, "error", err)
			}
		}()
	}
}

// Desired returns the desired state of a service at the revision in force.
func (d *Daemon) Desired(name string) (reconcile.Target, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if d.rev == nil {
		return reconcile.Target{}, false
	}
	svc, ok := d.rev.Set.Get(name)
	if !ok {
		return reconcile.Target{}, false
	}
	return reconcile.Target{Service: svc, Revision: reconcile.Revision{Hash: d.rev.Hash, Author: d.rev.Author, Subject: d.rev.Subject}}, true
}

// Revision returns the good revision in force (nil before the first).
func (d *Daemon) Revision() *gitsource.Revision {
	d.mu.RLock()
	defer d.mu.RUnlock()
	return d.rev
}

// Ready is closed once a good revision is in force.
func (d *Daemon) Ready() <-chan struct{} { return d.ready }

// ErrNotFound is returned by actions on a service that is not in the
// desired state.
var ErrNotFound = errors.New("no such service in the desired state")

// Sync asks for a pass now. With retry, the pass first forgets a failed
// release, so that the same desired state is tried again: the worker that
// owns the service does it, never this caller, so that it cannot overwrite
// a transition the service's pass journals meanwhile.
func (d *Daemon) Sync(_ context.Context, service string, retry bool) error {
	if _, ok := d.Desired(service); !ok {
		return fmt.Errorf("sync %s: %w", service, ErrNotFound)
	}
	if retry {
		d.rec.Request(service, reconcile.Request{Retry: true})
	}
	d.opts.Source.Trigger()
	d.queue.Add(service)
	return nil
}

// Suspend stops (or resumes) acting on a service; the spec's own `suspend`
// still applies. The service's next pass journals it (events Suspended and
// Resumed), so that it holds across restarts and leader changes.
func (d *Daemon) Suspend(_ context.Context, service string, suspend bool) error {
	if _, ok := d.Desired(service); !ok {
		return fmt.Errorf("suspend %s: %w", service, ErrNotFound)
	}
	d.rec.Request(service, reconcile.Request{Suspend: &suspend})
	d.queue.Add(service)
	return nil
}

// ErrNotPaused is returned by Decide when the service has no release paused
// for approval, or not the transition named (the API answers 409).
var ErrNotPaused = server.ErrNotPaused

// Decide promotes or aborts the release of service paused at its approval
// gate or at a manual rollout step: transition names it ("" for whichever
// is paused now, as the last pass saw it), step the pause (0 the approval
// gate, n rollout step n, reconcile.AnyPause whichever is open), by says
// who asks. The decision is bound to that transition and that pause and
// journaled by the service's own pass, so it holds across restarts and
// leader changes and never ends a later pause.
func (d *Daemon) Decide(_ context.Context, service, transition string, step int, action spec.ApprovalDecision, by string) error {
	if _, ok := d.Desired(service); !ok {
		return fmt.Errorf("%s %s: %w", action, service, ErrNotFound)
	}
	st, _ := d.rec.Status(service)
	t := st.Transition
	a, open := t.OpenPause()
	switch {
	case a == nil:
		return fmt.Errorf("%s %s: %w", action, service, ErrNotPaused)
	case transition != "" && transition != t.ID:
		return fmt.Errorf("%s %s: %w (transition %s is paused, not %s)", action, service, ErrNotPaused, t.ID, transition)
	case step != reconcile.AnyPause && step != open:
		return fmt.Errorf("%s %s: %w (transition %s is paused at %s, not at %s)", action, service, ErrNotPaused, t.ID, reconcile.PauseName(open), reconcile.PauseName(step))
	}
	d.rec.Request(service, reconcile.Request{Decisions: []reconcile.ApprovalVerdict{
		{Transition: t.ID, Step: open, Action: action, By: by}}})
	d.queue.Add(service)
	return nil
}

func (d *Daemon) record(e reconcile.Event) {
	d.log.Info("event", "target", e.Service, "reason", e.Reason, "message", e.Message)
	if d.opts.Recorder != nil {
		d.opts.Recorder.Record(e)
	}
}

// Once waits for the (running) source's first good revision, or its
// failure, then passes over every service, dependencies first, until each
// is in sync, stalled or waiting; it returns the statuses.
func (d *Daemon) Once(ctx context.Context, maxPasses int) ([]reconcile.Status, error) {
	changes := d.opts.Source.Subscribe()
	for {
		st := d.opts.Source.Current()
		d.apply(ctx, st)
		if st.Good != nil {
			break
		}
		if st.FetchErr != nil || st.Rejected != nil {
			return nil, fmt.Errorf("no desired state: %w", errors.Join(st.FetchErr, rejection(st)))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-changes:
		}
	}
	for _, name := range order(d.Revision().Set) {
		for range maxPasses {
			tgt, _ := d.Desired(name)
			res, err := d.rec.Reconcile(ctx, tgt)
			if err != nil || !res.Requeue {
				break
			}
		}
	}
	return d.rec.Statuses(), nil
}

func rejection(st gitsource.Status) error {
	if st.Rejected == nil {
		return nil
	}
	return st.Rejected
}

// order lists services so that each comes after the services it names in
// `after` (the spec guarantees there is no cycle).
func order(set *spec.Set) []string {
	var out []string
	seen := map[string]bool{}
	var visit func(string)
	visit = func(n string) {
		if seen[n] {
			return
		}
		seen[n] = true
		svc, _ := set.Get(n)
		deps := append([]string(nil), svc.After...)
		sort.Strings(deps)
		for _, dep := range deps {
			visit(dep)
		}
		out = append(out, n)
	}
	for _, n := range set.Names() {
		visit(n)
	}
	return out
}

func short(hash string) string {
	if len(hash) > 12 {
		return hash[:12]
	}
	return strings.TrimSpace(hash)
}
