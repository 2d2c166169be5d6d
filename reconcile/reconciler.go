package reconcile

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Target is the desired state of one service at a pinned revision.
type Target struct {
	Service  *spec.Service
	Revision Revision
}

// Result tells the worker whether to look at a service again at once. A
// pass that waits says when to come back in its *WaitingError; any other
// pass comes back at the next resync.
type Result struct {
	Requeue bool // true: again at once (a step was applied, or a transition just ended)
}

// Reconciler runs passes: load desired, observe, plan, guard, apply, verify.
type Reconciler struct {
	Providers   *providers.Set
	Store       Store
	Fence       Fence    // nil: always allowed (single daemon with a file lock)
	Recorder    Recorder // nil: events are only logged
	Log         *slog.Logger
	Heal        bool          // drift mode heal
	DriftRepeat time.Duration // re-announce unresolved drift this often (0: never)
	DryRun      bool          // plan and report, change nothing
	// MetadataKeys are the registry metadata keys whose values Status
	// shows besides the service's version key; other values show as
	// <redacted> (metadata may carry anything an application registers).
	MetadataKeys []string

	statusMu sync.RWMutex
	status   map[string]*Status
	drift    map[string]driftMemo
	probed   map[string]map[spec.Group]GroupProbe // last probe of each group, by service
	requests map[string]Request                   // from the API, for the next pass of each service
	stalls   map[string]string                    // service -> reason of the stall last announced
	waiting  map[string]map[string]bool           // service -> services waiting for its next pass (after:)
}

type driftMemo struct {
	signature string
	announced time.Time
}

func (r *Reconciler) log() *slog.Logger {
	if r.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Log
}

func (r *Reconciler) now() time.Time {
	if r.Providers != nil && r.Providers.Clock != nil {
		return r.Providers.Clock.Now()
	}
	return time.Now()
}

func (r *Reconciler) record(evs ...Event) {
	for _, e := range evs {
		level := slog.LevelInfo
		if e.Type == EventWarning {
			level = slog.LevelWarn
		}
		r.log().Log(context.Background(), level, "event", "target", e.Service, "reason", e.Reason, "message", e.Message,
			"revision", e.Revision, "phase", e.Phase)
		if r.Recorder != nil {
			r.Recorder.Record(e)
		}
	}
}

// Reconcile runs one pass for one service. At most one side effect is
// applied per pass; the result asks for the next pass at once when one was.
// The returned error is classified by Classify.
func (r *Reconciler) Reconcile(ctx context.Context, tgt Target) (res Result, err error) {
	svc := tgt.Service
	log := r.log().With("target", svc.Name, "revision", tgt.Revision.Hash)
	status := &Status{Service: svc.Name, Revision: tgt.Revision, DesiredActive: svc.Active, DesiredVersion: svc.Version,
		Suspended: svc.Suspend, LastPass: r.now()}
	var st State
	defer func() { r.setStatus(status, st, err) }()
	st, err = r.Store.Load(ctx, svc.Name)
	if err != nil {
		return Result{}, fmt.Errorf("loading journal of %s: %w", svc.Name, err)
	}
	if st, err = r.applyRequest(ctx, st, tgt); err != nil {
		return Result{}, err
	}
	suspended := svc.Suspend || st.Suspended != nil
	status.Suspended = suspended

	live, err := Observe(ctx, r.Providers, svc, r.needs(svc, st))
	if err != nil {
		return Result{}, err
	}
	status.observed(svc, live, r.MetadataKeys)
	status.Probed = r.rememberProbes(svc, st, live, status.LastPass)

	plan := Compute(Input{Service: svc, Revision: tgt.Revision, Live: live, State: st, Now: r.now(), Heal: r.Heal})
	status.planned(svc, plan)
	r.announceDrift(svc.Name, tgt.Revision, plan.Drift)
	if suspended || r.DryRun {
		if suspended {
			status.Message = "suspended: " + plan.Summary
		}
		return Result{}, nil
	}
	if plan.Step != nil && st.Transition == nil && plan.Next.Transition != nil {
		if err := r.dependenciesReady(svc, tgt.Revision); err != nil {
			return Result{}, err
		}
	}
	if plan.Step == nil {
		if !reflect.DeepEqual(plan.Next, st) {
			if err := r.save(ctx, plan.Next); err != nil {
				return Result{}, err
			}
			if st.Transition == nil && plan.Next.Transition == nil {
				// No transition ran (e.g. the live state was adopted as
				// applied): this pass's probes hold for the new revision.
				r.probesHold(svc.Name, status.LastPass, appliedRevision(plan.Next))
			}
			st = plan.Next
		}
		r.record(plan.Events...)
		switch {
		case plan.Stall != nil:
			return Result{}, plan.Stall
		case plan.Wait != nil:
			return Result{}, &WaitingError{Reason: plan.Wait.Reason, Message: plan.Wait.Message, RequeueAfter: r.wakeAfter(svc, plan.Wait)}
		case plan.Next.Transition == nil && st.Transition == nil && len(plan.Events) > 0:
			return Result{Requeue: true}, nil // e.g. a transition just finished: look once more
		}
		return Result{}, nil
	}

	step := plan.Step
	if err := Guard(svc, live, step); err != nil {
		return Result{}, err // a stall: announced once by setStatus
	}
	if err := r.save(ctx, plan.Next); err != nil { // the journal before the side effect
		return Result{}, err
	}
	st = plan.Next
	r.record(plan.Events...)

	start := r.now()
	log.Info("applying step", "action", step.Action, "phase", plan.Phase, "step", step.Describe)
	out, applyErr := r.apply(ctx, svc, tgt.Revision, step)
	took := r.now().Sub(start)
	next, absorbed := complete(st, step, out, applyErr)
	t := st.Transition
	e := Event{Time: r.now(), Service: svc.Name, Type: EventNormal, Reason: ReasonStepApplied, Message: step.Describe,
		Revision: t.Revision, Author: t.Author, Subject: t.Subject, Transition: t.ID, Phase: t.Phase, Duration: took}
	if out.Output != "" {
		e.Message += "\n" + out.Output
	}
	if applyErr != nil {
		e.Type, e.Reason = EventWarning, ReasonStepFailed
		e.Message = fmt.Sprintf("%s: %v", step.Describe, applyErr)
	}
	if !reflect.DeepEqual(next, st) {
		if err := r.save(ctx, next); err != nil {
			return Result{}, err
		}
		st = next
	}
	r.record(e)
	if applyErr != nil && !absorbed {
		return Result{}, fmt.Errorf("%s: %w", step.Describe, applyErr)
	}
	return Result{Requeue: true}, nil
}

// wakeAfter is when to look at a waiting service again: when the wait's
// time is up, or, for a wait on the registry whose provider does not push
// changes (providers.RegistryWatcher), at the next sample.
func (r *Reconciler) wakeAfter(svc *spec.Service, w *Wait) time.Duration {
	if !w.Registry || svc.Registry == nil || svc.Registry.Nacos == nil || r.Providers == nil {
		return w.For
	}
	if _, pushes := r.Providers.Registries[svc.Registry.Nacos.Provider].(providers.RegistryWatcher); pushes {
		return w.For
	}
	return min(w.For, EvidencePoll)
}

// stepOutput is what a step reports besides success or failure.
type stepOutput struct {
	Output string // for the events log (deploy output, notes)
	Closed int    // close-sessions: how many were closed
	Smoke  []providers.SmokeResult
}

// complete records the outcome of a step in the state to journal. absorbed
// reports that a failure became part of the transition (it will be undone)
// instead of being retried with backoff.
func complete(st State, s *Step, out stepOutput, err error) (State, bool) {
	next := st.Clone()
	t := next.Transition
	if t == nil {
		return next, false
	}
	if err == nil {
		t.StepFailures = 0
		switch s.Action {
		case ActionDeploy:
			t.Deploy.Done = true
		case ActionSignalDrain:
			// Recorded once every instance was asked: a restart during the
			// step asks them all again (closing sessions is idempotent).
			t.Drain.Signaled = true
		case ActionSmoke:
			if t.Smoke != nil {
				t.Smoke.Done, t.Smoke.Results = true, out.Smoke
			}
		case ActionCloseSessions:
			t.Drain.Closed += out.Closed
			t.Drain.ClosedOn = append(t.Drain.ClosedOn, s.Binding.Key())
		}
		return next, false
	}
	if errors.Is(err, context.Canceled) {
		return next, false // shutting down: the step is repeated after the restart
	}
	t.StepFailures++
	if v, why := onStepFailure(t, s, Classify(err) == ClassStalled, err); v == undoTransition {
		t.Failure = why // the next pass undoes the transition
		return next, true
	}
	return next, false
}

func (r *Reconciler) save(ctx context.Context, st State) error {
	if r.Fence != nil {
		if err := r.Fence.Check(ctx); err != nil {
			return fmt.Errorf("not acting on %s: %w", st.Service, err)
		}
	}
	if err := r.Store.Save(ctx, st); err != nil {
		return fmt.Errorf("journaling %s: %w", st.Service, err)
	}
	return nil
}

// apply performs one step through the providers. The fence is checked
// immediately before each provider write (under HA, ctx is also cancelled
// the moment the leadership ends, which stops a write in flight).
func (r *Reconciler) apply(ctx context.Context, svc *spec.Service, rev Revision, s *Step) (stepOutput, error) {
	fenced := func() error {
		if r.Fence == nil {
			return nil
		}
		if err := r.Fence.Check(ctx); err != nil {
			return fmt.Errorf("not acting on %s: %w", svc.Name, err)
		}
		return nil
	}
	ps := r.Providers
	switch s.Action {
	case ActionDeploy:
		d, err := ps.Deployer(svc)
		if err != nil {
			return stepOutput{}, providers.Permanent("DeployerInvalid", fmt.Errorf("deployer of %s: %w", svc.Name, err))
		}
		dctx, cancel := context.WithTimeout(ctx, s.Timeout)
		defer cancel()
		if err := fenced(); err != nil {
			return stepOutput{}, err
		}
		res, err := d.Deploy(dctx, providers.DeployRequest{Service: svc.Name, Group: s.Group, Version: s.Version,
			Instances: s.Instances, Revision: rev.Hash})
		return stepOutput{Output: res.Output}, err
	case ActionSetWeights:
		lb := ps.LoadBalancers[providers.LBKey(s.Binding.Kind(), s.Binding.Provider())]
		if err := fenced(); err != nil {
			return stepOutput{}, err
		}
		return stepOutput{}, lb.SetWeights(ctx, *s.Binding, s.Weights)
	case ActionSetEnabled:
		ref := *svc.Registry.Nacos
		addrs := make([]providers.Addr, len(s.Instances))
		for i, in := range s.Instances {
			addrs[i] = providers.Addr{IP: in.IP, Port: in.Port}
		}
		if err := fenced(); err != nil {
			return stepOutput{}, err
		}
		return stepOutput{}, ps.Registries[ref.Provider].SetEnabled(ctx, ref, addrs, s.Enabled)
	case ActionSignalDrain:
		var errs []error
		for _, in := range s.Instances {
			if err := fenced(); err != nil {
				return stepOutput{}, err
			}
			if err := ps.Instances.SignalDrain(ctx, svc, in); err != nil {
				errs = append(errs, fmt.Errorf("signalling %s: %w", in, err))
			}
		}
		// A failed signal only means sessions stay until the drain ceiling.
		if err := errors.Join(errs...); err != nil {
			return stepOutput{Output: "signal failed on some instances (sessions will be closed at the ceiling): " + err.Error()}, nil
		}
		return stepOutput{}, nil
	case ActionSmoke:
		if ps.Smoke == nil {
			return stepOutput{}, providers.Permanentf("SmokeUnavailable", "%s has gates.smoke, but the daemon has no smoke runner", svc.Name)
		}
		sctx, cancel := context.WithTimeout(ctx, s.Timeout)
		defer cancel()
		if err := fenced(); err != nil {
			return stepOutput{}, err
		}
		res, err := ps.Smoke.Smoke(sctx, svc, providers.SmokeRequest{Service: svc.Name, Group: s.Group, Version: s.Version,
			Instances: s.Instances, Revision: rev.Hash})
		if err != nil {
			return stepOutput{}, err
		}
		return stepOutput{Output: smokeSummary(res), Smoke: res}, nil
	case ActionCloseSessions:
		lb := ps.LoadBalancers[providers.LBKey(s.Binding.Kind(), s.Binding.Provider())]
		closer, ok := lb.(providers.SessionCloser)
		if !ok {
			return stepOutput{Output: fmt.Sprintf("%s cannot close sessions; they end with the LB's own drain timeout", s.Binding.Key())}, nil
		}
		ids := make([]string, len(s.Instances))
		for i, in := range s.Instances {
			ids[i] = in.ID
		}
		if err := fenced(); err != nil {
			return stepOutput{}, err
		}
		n, err := closer.CloseSessions(ctx, *s.Binding, ids)
		return stepOutput{Output: fmt.Sprintf("closed %d sessions", n), Closed: n}, err
	}
	return stepOutput{}, fmt.Errorf("unknown action %q", s.Action)
}

// dependenciesReady refuses to start a transition while a service this one
// comes after is not in sync at the same revision: of a commit that
// releases both, the dependency moves first. The service is woken by the
// end of each pass of a dependency it waits for (the only thing that
// changes a dependency's status; Worker takes them with takeWaiting), so
// its wait names no sample interval, only a backstop.
func (r *Reconciler) dependenciesReady(svc *spec.Service, rev Revision) error {
	var waiting []string
	// Under the status lock: a dependency's pass that ends after this check
	// finds the service registered as waiting for it.
	r.statusMu.Lock()
	for _, dep := range svc.After {
		st, ok := r.status[dep]
		if !ok || !st.Ready() || st.Transition != nil || st.Revision.Hash != rev.Hash {
			waiting = append(waiting, dep)
			if r.waiting == nil {
				r.waiting = map[string]map[string]bool{}
			}
			if r.waiting[dep] == nil {
				r.waiting[dep] = map[string]bool{}
			}
			r.waiting[dep][svc.Name] = true
		}
	}
	r.statusMu.Unlock()
	if len(waiting) > 0 {
		return &WaitingError{Reason: "WaitingForDependencies", RequeueAfter: DependencyBackstop,
			Message: fmt.Sprintf("waiting for %s to be in sync first (after:)", strings.Join(waiting, ", "))}
	}
	return nil
}

// takeWaiting returns the services waiting for a pass of service to end
// (dependenciesReady) and forgets them: each is woken once, and waits
// again if it still must.
func (r *Reconciler) takeWaiting(service string) []string {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	w := r.waiting[service]
	delete(r.waiting, service)
	return slices.Sorted(maps.Keys(w))
}

// announceDrift emits DriftDetected when drift appears or changes, again
// every DriftRepeat while it lasts, and DriftResolved when it ends.
func (r *Reconciler) announceDrift(service string, rev Revision, drift []string) {
	sig := strings.Join(drift, "\n")
	now := r.now()
	r.statusMu.Lock()
	if r.drift == nil {
		r.drift = map[string]driftMemo{}
	}
	memo := r.drift[service]
	var e *Event
	switch {
	case sig == "" && memo.signature != "":
		e = &Event{Reason: ReasonDriftResolved, Type: EventNormal, Message: "live state matches the desired state again"}
		delete(r.drift, service)
	case sig != "" && (sig != memo.signature || (r.DriftRepeat > 0 && now.Sub(memo.announced) >= r.DriftRepeat)):
		e = &Event{Reason: ReasonDriftDetected, Type: EventWarning, Message: "live state differs from Git: " + strings.Join(drift, "; ")}
		r.drift[service] = driftMemo{signature: sig, announced: now}
	}
	r.statusMu.Unlock()
	if e != nil {
		e.Time, e.Service, e.Revision, e.Author, e.Subject = now, service, rev.Hash, rev.Author, rev.Subject
		r.record(*e)
	}
}
