package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// loss is what users saw during one transition or restart.
type loss struct {
	Requests, Failed, Messages, Lost, Abnormal, DialFailures int
}

func (l loss) add(m loss) loss {
	return loss{l.Requests + m.Requests, l.Failed + m.Failed, l.Messages + m.Messages, l.Lost + m.Lost,
		l.Abnormal + m.Abnormal, l.DialFailures + m.DialFailures}
}

// traffic is users' traffic through the load balancer and the consumer.
type traffic struct {
	lb, consumer *loadgen.Generator
}

func startTraffic(ctx context.Context, s *stage.Stage, o options) (*traffic, error) {
	lb, err := s.StartTraffic(ctx, s.URL(service), o.rate, o.clients)
	if err != nil {
		return nil, err
	}
	c, err := s.StartTraffic(ctx, s.ConsumerURL(service), consumerRate, consumerClients)
	if err != nil {
		lb.Stop()
		return nil, err
	}
	return &traffic{lb: lb, consumer: c}, nil
}

// counts is the traffic's totals so far.
func (t *traffic) counts() loss {
	return lossOf(t.lb.Snapshot()).add(lossOf(t.consumer.Snapshot()))
}

func lossOf(r loadgen.Report) loss {
	return loss{r.Requests, r.Failed, r.Messages, r.Lost, r.Abnormal, r.DialFailures}
}

func (l loss) minus(m loss) loss {
	return loss{l.Requests - m.Requests, l.Failed - m.Failed, l.Messages - m.Messages, l.Lost - m.Lost,
		l.Abnormal - m.Abnormal, l.DialFailures - m.DialFailures}
}

// transition is one release or revert as the daemon's events tell it.
type transition struct {
	Kind, Version string
	From          spec.Group
	Commit        time.Time                         // when the commit was made
	Started       time.Time                         // TransitionStarted
	Total         time.Duration                     // TransitionSucceeded
	Phases        map[reconcile.Phase]time.Duration // PhaseCompleted
	Deploy        time.Duration                     // the deploy step
	DrainZero     time.Duration                     // shift completed -> old group's evidence at 0 for good; -1 unknown
	Loss          loss
	Cost          cost // what the daemon spent on it, from its /metrics
}

// overhead is the total minus the deploy and the configured waits.
func (t transition) overhead(waits time.Duration) time.Duration { return t.Total - t.Deploy - waits }

// tandemRun is the measured run through Tandem.
type tandemRun struct {
	lb          string
	nacos       string
	transitions []transition
	waits       time.Duration // drain.propagation + drain.quiet + verify.window
	waitsText   string
	report      loadgen.Report // through the load balancer, for the timeline
	all         loss
	// With a rollout: the steps reached, and when the traffic started
	// (the timeline's origin).
	rollout string
	started time.Time
	marks   []stepMark
}

func measureTandem(ctx context.Context, o options, log *slog.Logger) (*tandemRun, error) {
	s, dir, err := newStage(ctx, o, false, log)
	if err != nil {
		return nil, err
	}
	defer closeStage(s, dir)
	svc, _ := s.Service(service)
	run := &tandemRun{lb: o.lb, nacos: s.NacosName(), rollout: o.rollout}
	run.waits = svc.Drain.Propagation.D() + svc.Drain.Quiet.D() + svc.Verify.Window.D()
	run.waitsText = fmt.Sprintf("drain.propagation %s + drain.quiet %s + verify.window %s", svc.Drain.Propagation, svc.Drain.Quiet, svc.Verify.Window)
	var pauses time.Duration
	for _, st := range svc.Rollout.Plan() {
		pauses += max(st.Pause.D(), st.Hold.D())
	}
	if pauses > 0 {
		run.waits += pauses
		run.waitsText += fmt.Sprintf(" + rollout pauses %s", pauses)
	}

	head, err := s.Head()
	if err != nil {
		return nil, err
	}
	if _, err := s.WaitInSync(ctx, service, head); err != nil {
		return nil, err
	}
	tr, err := startTraffic(ctx, s, o)
	if err != nil {
		return nil, err
	}
	run.started = tr.lb.Started()
	sampler := startSampler(ctx, s, svc)
	defer sampler.stop()

	step := func(kind, version string, from spec.Group, commit func() (string, error)) error {
		before := tr.counts()
		costBefore, err := scrapeCost(ctx, s.APIAddr())
		if err != nil {
			return err
		}
		at := time.Now()
		rev, err := commit()
		if err != nil {
			return err
		}
		if _, err := s.WaitInSync(ctx, service, rev); err != nil {
			return err
		}
		t := transitionOf(s.Events(), rev)
		t.Kind, t.Version, t.From, t.Commit = kind, version, from, at
		t.DrainZero = sampler.zeroAfter(s.Events(), rev, from)
		run.marks = append(run.marks, rolloutMarks(s.Events(), rev, from.Other(), len(run.transitions))...)
		costAfter, err := scrapeCost(ctx, s.APIAddr())
		if err != nil {
			return err
		}
		t.Cost = costAfter.minus(costBefore)
		// Let the new group carry the traffic for a moment, so that what
		// users saw of this transition is counted in it.
		time.Sleep(time.Second)
		t.Loss = tr.counts().minus(before)
		run.transitions = append(run.transitions, t)
		fmt.Fprintf(os.Stderr, "%s %s done in %s\n", kind, version, t.Total.Round(time.Millisecond))
		return nil
	}
	for i := 1; i <= o.releases; i++ {
		version := fmt.Sprintf("1.%d.0", i)
		if err := step("release", version, spec.GroupA, func() (string, error) { return s.Release(ctx, service, version) }); err != nil {
			return nil, err
		}
		if err := step("revert", "1.0.0", spec.GroupB, func() (string, error) { return s.Revert(ctx, service) }); err != nil {
			return nil, err
		}
	}
	run.report = tr.lb.Stop()
	consumer := tr.consumer.Stop()
	run.all = lossOf(run.report).add(lossOf(consumer))
	return run, nil
}

// transitionOf reads a transition's timings from the events of its revision.
func transitionOf(events []reconcile.Event, rev string) transition {
	t := transition{Phases: map[reconcile.Phase]time.Duration{}, DrainZero: -1}
	for _, e := range events {
		if e.Revision != rev {
			continue
		}
		switch e.Reason {
		case reconcile.ReasonTransitionStarted:
			t.Started = e.Time
		case reconcile.ReasonPhaseCompleted:
			t.Phases[e.Phase] += e.Duration
		case reconcile.ReasonStepApplied:
			if e.Phase == reconcile.PhasePrepare && strings.HasPrefix(e.Message, "deploy ") {
				t.Deploy += e.Duration
			}
		case reconcile.ReasonTransitionSucceeded:
			t.Total = e.Duration
		}
	}
	return t
}

// phases are the columns of the table.
var phases = []reconcile.Phase{reconcile.PhasePrepare, reconcile.PhaseVerify, reconcile.PhaseEnable, reconcile.PhaseShift,
	reconcile.PhaseDisable, reconcile.PhaseDrain, reconcile.PhaseWatch}

func (r *tandemRun) print(w io.Writer) {
	fmt.Fprintf(w, "stage: %s, Nacos %s; times in ms\n", r.lb, r.nacos)
	fmt.Fprintf(w, "%-3s %-8s %-7s %7s %6s", "#", "kind", "version", "commit>", "total")
	for _, p := range phases {
		fmt.Fprintf(w, " %7s", p)
	}
	fmt.Fprintf(w, " %7s %8s %9s %7s %6s %9s %5s\n", "deploy", "drain>0", "overhead", "reqs", "failed", "messages", "lost")
	for i, t := range r.transitions {
		fmt.Fprintf(w, "%-3d %-8s %-7s %7s %6s", i+1, t.Kind, t.Version, ms(t.Started.Sub(t.Commit)), ms(t.Total))
		for _, p := range phases {
			fmt.Fprintf(w, " %7s", ms(t.Phases[p]))
		}
		fmt.Fprintf(w, " %7s %8s %9s %7d %6d %9d %5d\n", ms(t.Deploy), ms(t.DrainZero), ms(t.overhead(r.waits)),
			t.Loss.Requests, t.Loss.Failed, t.Loss.Messages, t.Loss.Lost)
	}
	fmt.Fprintf(w, "commit>: commit to the first action; drain>0: shift completed to the old group's evidence (HAProxy sessions, in-flight requests, WebSockets) at 0 for good; overhead: total - deploy - (%s)\n", r.waitsText)
	var c cost
	var took time.Duration
	for _, t := range r.transitions {
		c, took = c.plus(t.Cost), took+t.Total
	}
	if n := len(r.transitions); n > 0 {
		fmt.Fprintf(w, "daemon cost per transition (its /metrics, commit to in sync): %.1f reconcile passes of %s (%.1f/s)\n",
			float64(c.Passes)/float64(n), service, float64(c.Passes)/took.Seconds())
	}
	fmt.Fprintf(w, "users saw: %d requests, %d failed; %d WebSocket messages, %d lost; %d abnormal closes, %d failed connection attempts\n",
		r.all.Requests, r.all.Failed, r.all.Messages, r.all.Lost, r.all.Abnormal, r.all.DialFailures)
}

// sampler records the drain evidence of both groups every 50ms: sessions
// the load balancer reports and the apps' own in-flight requests and
// WebSockets.
type sampler struct {
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.Mutex
	samples []sample
}

type sample struct {
	at       time.Time
	evidence map[spec.Group]int // -1: unreadable
}

const sampleEvery = 50 * time.Millisecond

func startSampler(ctx context.Context, s *stage.Stage, svc *spec.Service) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	sm := &sampler{cancel: cancel, done: make(chan struct{})}
	ps := s.Providers()
	go func() {
		defer close(sm.done)
		t := time.NewTicker(sampleEvery)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			smp := sample{at: time.Now(), evidence: map[spec.Group]int{}}
			for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
				smp.evidence[g] = evidence(ctx, ps, svc, g)
			}
			sm.mu.Lock()
			sm.samples = append(sm.samples, smp)
			sm.mu.Unlock()
		}
	}()
	return sm
}

func (sm *sampler) stop() {
	sm.cancel()
	<-sm.done
}

// evidence sums what the LBs and the apps of g report (-1: unreadable).
func evidence(ctx context.Context, ps *providers.Set, svc *spec.Service, g spec.Group) int {
	total := 0
	ids := map[string]bool{}
	for _, in := range svc.Instances(g) {
		ids[in.ID] = true
		e, err := ps.Instances.Evidence(ctx, svc, in)
		if err != nil {
			return -1
		}
		total += e.InFlight + e.Sessions
	}
	for _, b := range svc.Traffic {
		backends, err := ps.LoadBalancers[providers.LBKey(b.Kind(), b.Provider())].Backends(ctx, b)
		if err != nil {
			return -1
		}
		for _, be := range backends {
			if ids[be.ID] && be.Sessions > 0 {
				total += be.Sessions
			}
		}
	}
	return total
}

// zeroAfter returns how long after the shift of rev completed the
// evidence of from reached 0 for good (until the drain completed).
func (sm *sampler) zeroAfter(events []reconcile.Event, rev string, from spec.Group) time.Duration {
	var shifted, drained time.Time
	for _, e := range events {
		if e.Revision == rev && e.Reason == reconcile.ReasonPhaseCompleted {
			switch e.Phase {
			case reconcile.PhaseShift:
				shifted = e.Time
			case reconcile.PhaseDrain:
				drained = e.Time
			}
		}
	}
	if shifted.IsZero() || drained.IsZero() {
		return -1
	}
	sm.mu.Lock()
	defer sm.mu.Unlock()
	zero := time.Time{}
	for _, smp := range sm.samples {
		if smp.at.Before(shifted) || smp.at.After(drained) {
			continue
		}
		switch n := smp.evidence[from]; {
		case n != 0:
			zero = time.Time{}
		case zero.IsZero():
			zero = smp.at
		}
	}
	if zero.IsZero() {
		return -1
	}
	return zero.Sub(shifted)
}
