package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"time"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

type demoFlags struct {
	once          bool
	listen, level string
}

func init() {
	var f demoFlags
	register(&command{
		name: "demo",
		summary: `Show a release and its git revert under live traffic, on embedded emulators (no external services).
Everything runs in this process on 127.0.0.1. It starts the Alibaba emulator (ALB and SLB with their data planes), the Nacos
emulator, demo apps in groups A and B for the three example services, a local Git repository of their desired
state, HTTP and WebSocket traffic, and the daemon as tandem run wires it (journal, events, metrics, API and
dashboard). It commits a release, waits for it, commits its git revert, waits, and prints what users saw: the
zero-loss report. Then it keeps running, dashboard and traffic live, until Ctrl-C.
--once exits after the report: 0 if nothing was lost and both transitions succeeded, 1 otherwise.`,
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&f.once, "once", false, "exit after the report (0: nothing lost and both transitions succeeded, 1: not)")
			fs.StringVar(&f.listen, "listen", "127.0.0.1:8080", "address of the dashboard and the API (127.0.0.1:0 picks a free port)")
			fs.StringVar(&f.level, "log-level", "error", "log level of the daemon and the environment, on stderr: debug, info, warn or error")
		},
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) != 0 {
				return usagef("demo takes no arguments")
			}
			log, err := newLogger(env, "text", f.level)
			if err != nil {
				return usagef("%v", err)
			}
			err = runDemo(ctx, env, f, log)
			if ctx.Err() != nil && errors.Is(err, context.Canceled) {
				return errors.New("interrupted before the report")
			}
			return err
		},
	})
}

// demoServices are the three services of examples/services, on loopback:
// the same groups, load balancers, registry, versions and ordering. One
// difference: user-service reports its version on GET /version, not in its
// Nacos metadata. The Nacos provider writes the instance's metadata into
// the operator override when it disables a group, and Nacos applies that
// override over a re-registration for up to 60 s (docs/nacos-servers.md),
// so after a redeploy the metadata would still show the old version.
var demoServices = []stage.Service{
	{Name: "gateway", LB: spec.KindSLB, Version: "1.8.0", Active: spec.GroupA,
		Comment: "The API gateway: SLB (CLB) in front of two gateway node groups."},
	{Name: "user-service", Nacos: true, Version: "2.4.1", Active: spec.GroupB, After: []string{"gateway"},
		Comment: `The user service: Spring Cloud / Dubbo consumers find it through Nacos.
Groups are split by IP; a group is taken out of consumers' view by
disabling its instances in Nacos.`},
	{Name: "push", LB: spec.KindALB, Version: "3.2.0", Active: spec.GroupA, After: []string{"gateway"},
		Comment: `WebSocket push service behind ALB. Old instances are asked to close their
WebSockets with 1001 so that clients reconnect to the new group.`},
}

// demoRelease is what the release commit sets.
var demoRelease = map[string]string{"gateway": "1.9.0", "user-service": "2.5.0", "push": "3.3.0"}

// demoLoad is the users' traffic of one service.
type demoLoad struct {
	service string
	entry   string // how users reach it
	rate    int    // POST/s
	clients int    // WebSocket clients, each sending a numbered message every 50ms
}

var demoTraffic = []demoLoad{
	{service: "gateway", entry: "slb", rate: 200},
	{service: "user-service", entry: "nacos-consumer", rate: 100},
	{service: "push", entry: "alb", rate: 50, clients: 20},
}

var entryNames = map[string]string{"slb": "the SLB's data plane", "alb": "the ALB's data plane", "nacos-consumer": "a Nacos consumer"}

// Bounds of the demo's waits.
const (
	demoTransitionTimeout = 3 * time.Minute // a release or a revert, from its commit to every service in sync
	demoFollowInterval    = 100 * time.Millisecond
	demoTrafficDuration   = 24 * time.Hour // the traffic of a demo left running
)

// runDemo runs the demo until the report (--once) or until ctx ends.
func runDemo(ctx context.Context, env *cli, f demoFlags, log *slog.Logger) (err error) {
	ln, err := net.Listen("tcp", f.listen)
	if err != nil {
		return fmt.Errorf("the dashboard cannot listen: %w (choose another address with --listen; 127.0.0.1:0 picks a free port)", err)
	}
	defer ln.Close()
	dir, err := os.MkdirTemp("", "tandem-demo-")
	if err != nil {
		return fmt.Errorf("creating the demo's directory: %w", err)
	}
	defer func() { err = errors.Join(err, os.RemoveAll(dir)) }()
	d := &demo{out: env.stdout, tap: &eventTap{added: make(chan struct{}, 1)}, since: time.Now(),
		api: "http://" + ln.Addr().String(), watched: map[string]watchState{}}
	d.say("Tandem demo: a whole environment on 127.0.0.1, in this process; its files are in %s (removed at exit).", dir)

	st, err := startDemoStage(ctx, dir, log)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, st.Close()) }()
	for _, l := range demoTraffic {
		svc, _ := st.Service(l.service)
		d.say("  %-12s groups A and B, %d demo apps each; %s (%s), group %s serves %s; users reach it through %s",
			l.service, len(svc.Groups.A.Instances), bindingText(svc), nacosText(svc), svc.Active, svc.Version, entryNames[l.entry])
	}
	d.say("  Nacos: %s; Alibaba ALB and SLB: the emulator (in-process), with a data plane per load balancer", st.NacosName())
	d.say("  desired state: Git repository %s (services/*.yaml, committed)", st.RepoDir())

	// The daemon runs until runDemo returns (after the traffic stopped);
	// if it stops before, everything waiting on ctx stops with its error.
	cfg := *st.Config()
	cfg.Listen = ln.Addr().String()
	ctx, fail := context.WithCancelCause(ctx)
	defer fail(nil)
	a, err := daemon.Assemble(&cfg, daemon.AssembleOptions{Log: log, Listener: ln, Recorder: d.tap, ConfigName: "(generated by tandem demo)"})
	if err != nil {
		return err
	}
	daemonCtx, stopDaemon := context.WithCancel(context.WithoutCancel(ctx))
	daemonDone := make(chan struct{})
	go func() {
		defer close(daemonDone)
		err := a.Run(daemonCtx)
		if err == nil {
			err = errors.New("it returned")
		}
		fail(fmt.Errorf("the daemon stopped: %w", err)) // no effect once runDemo returned
	}()
	defer func() {
		stopDaemon()
		<-daemonDone
		err = errors.Join(err, a.Close())
	}()

	head, err := st.Head()
	if err != nil {
		return err
	}
	d.say("\nDaemon: tandem run's wiring with a generated tandem.yaml; journal and events log in %s.", cfg.StateDir)
	if err := d.waitInSync(ctx, head); err != nil {
		return err
	}
	d.say("\nDashboard: %s/  (API: %s/api/v1/services, metrics: %s/metrics)\n", d.api, d.api, d.api)

	traffic, err := startDemoTraffic(ctx, st, d)
	if err != nil {
		return err
	}
	defer stopTraffic(traffic)
	rep := &demoReport{}
	rep.failure = d.releaseAndRevert(ctx, st, rep)
	if ctx.Err() != nil {
		return rep.failure // interrupted: no report
	}
	for i, l := range demoTraffic {
		rep.traffic = append(rep.traffic, trafficRow{load: l, r: traffic[i].Stop()})
	}
	rep.transitions(d.tap.all(), st.Deploys())
	rep.print(env.stdout)
	verdict := rep.verdict()
	if f.once {
		return verdict
	}

	traffic, err = startDemoTraffic(ctx, st, d)
	if err != nil {
		return err
	}
	defer stopTraffic(traffic)
	d.say("\nStill running: the dashboard at %s/, the same traffic again. The desired state is the Git repository", d.api)
	d.say("%s: commit to it and Tandem follows, e.g. cd %s && git revert --no-edit HEAD", st.RepoDir(), st.RepoDir())
	d.say("(the release again, on the still-warm groups). Ctrl-C stops the demo.\n")
	d.since = time.Now()
	if err := d.follow(ctx, func([]reconcile.Status) (bool, error) { return false, nil }); !errors.Is(err, context.Canceled) {
		return err
	}
	d.say("\nStopping. What users saw after the report:")
	for i, l := range demoTraffic {
		d.say("  %-12s %s", l.service, usersSaw(l, traffic[i].Stop()))
	}
	return verdict
}

// releaseAndRevert commits the release, waits until every service is in
// sync at it, commits its git revert and waits again, noting the commits
// and how long each took in rep.
func (d *demo) releaseAndRevert(ctx context.Context, st *stage.Stage, rep *demoReport) error {
	rev, err := st.ReleaseAll(demoRelease)
	if err != nil {
		return err
	}
	if err := d.commit(st, "Release", rev); err != nil {
		return err
	}
	rep.commits = append(rep.commits, reportCommit{name: "release", rev: rev})
	took, err := d.timeInSync(ctx, rev)
	if err != nil {
		return err
	}
	rep.release = took
	d.say("Release done: every service in sync at %s, %s after the commit.", short(rev), seconds(took))

	revert, err := st.RevertCommit(rev)
	if err != nil {
		return err
	}
	if err := d.commit(st, "Rollback: git revert "+short(rev), revert); err != nil {
		return err
	}
	rep.commits = append(rep.commits, reportCommit{name: "revert", rev: revert})
	if took, err = d.timeInSync(ctx, revert); err != nil {
		return err
	}
	rep.revert = took
	d.say("Rollback done: every service in sync at %s, %s after the commit.", short(revert), seconds(took))
	return nil
}

// startDemoStage starts the environment; Ctrl-C while it starts stops it,
// later it stops when runDemo closes it (after the traffic and the daemon).
func startDemoStage(ctx context.Context, dir string, log *slog.Logger) (*stage.Stage, error) {
	stageCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	st, err := stage.Start(stageCtx, stage.Options{Dir: dir, Services: demoServices, Manual: true, Log: log})
	if err != nil {
		cancel()
		return nil, err
	}
	return st, nil
}

// startDemoTraffic starts the users of every service, in demoTraffic's order.
func startDemoTraffic(ctx context.Context, st *stage.Stage, d *demo) ([]*loadgen.Generator, error) {
	var out []*loadgen.Generator
	for _, l := range demoTraffic {
		g, err := st.StartLoad(ctx, loadgen.Config{URL: st.URL(l.service), Rate: l.rate, WebSockets: l.clients,
			Duration: demoTrafficDuration, Bucket: time.Second})
		if err != nil {
			stopTraffic(out)
			return nil, fmt.Errorf("starting the traffic of %s: %w", l.service, err)
		}
		out = append(out, g)
		what := fmt.Sprintf("%d POST/s", l.rate)
		if l.clients > 0 {
			what += fmt.Sprintf(" and %d WebSocket clients (numbered messages, every one must be echoed)", l.clients)
		}
		d.say("Traffic: %-12s %s through %s", l.service, what, entryNames[l.entry])
	}
	return out, nil
}

func stopTraffic(gs []*loadgen.Generator) {
	for _, g := range gs {
		g.Stop()
	}
}

func bindingText(svc *spec.Service) string {
	var parts []string
	for _, b := range svc.Traffic {
		parts = append(parts, b.Key())
	}
	if len(parts) == 0 {
		return "no load balancer"
	}
	return strings.Join(parts, ", ")
}

func nacosText(svc *spec.Service) string {
	if svc.Registry == nil || svc.Registry.Nacos == nil {
		return "not in Nacos"
	}
	return "registered in Nacos"
}

// demo prints the demo's progress.
type demo struct {
	out   io.Writer
	tap   *eventTap
	api   string    // the daemon's HTTP API
	since time.Time // progress offsets are from here: the last commit

	printed int                   // events printed
	rev     string                // the revision of the last event printed
	watched map[string]watchState // by service
}

// watchState is what was printed of a service's status.
type watchState struct {
	transition string
	drain      string // the evidence printed last: "nonzero" or "zero"
	waiting    string // the dependency wait printed last
}

func (d *demo) say(format string, args ...any) { fmt.Fprintf(d.out, format+"\n", args...) }

// commit announces a commit and makes it the origin of the progress times.
func (d *demo) commit(st *stage.Stage, what, rev string) error {
	subject, err := st.Subject(rev)
	if err != nil {
		return err
	}
	d.printEvents()
	d.since, d.rev = time.Now(), rev
	d.say("\n%s: commit %s: %s", what, short(rev), subject)
	return nil
}

// waitInSync follows the daemon until every service is in sync at rev.
func (d *demo) waitInSync(ctx context.Context, rev string) error {
	ctx, cancel := context.WithTimeoutCause(ctx, demoTransitionTimeout,
		fmt.Errorf("the services were not in sync at %s within %s", short(rev), demoTransitionTimeout))
	defer cancel()
	return d.follow(ctx, func(sts []reconcile.Status) (bool, error) {
		if len(sts) != len(demoServices) {
			return false, nil
		}
		for _, s := range sts {
			if s.Revision.Hash != rev {
				return false, nil
			}
			for _, c := range s.Conditions {
				if c.Type == reconcile.ConditionStalled && c.Status {
					return false, fmt.Errorf("%s stalled at %s: %s: %s", s.Service, short(rev), c.Reason, c.Message)
				}
			}
			if !s.InSync {
				return false, nil
			}
		}
		return true, nil
	})
}

// timeInSync is waitInSync that also says how long it took since the commit.
func (d *demo) timeInSync(ctx context.Context, rev string) (time.Duration, error) {
	err := d.waitInSync(ctx, rev)
	return time.Since(d.since), err
}

// follow prints the daemon's events and the drain evidence it waits on as
// they happen, until done reports true or an error, or ctx ends. It reads
// the statuses from the daemon's API, as the dashboard does.
func (d *demo) follow(ctx context.Context, done func([]reconcile.Status) (bool, error)) error {
	t := time.NewTicker(demoFollowInterval)
	defer t.Stop()
	for {
		sts, err := server.FetchStatus(ctx, d.api)
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err != nil {
			return err
		}
		d.printEvents()
		d.printStatuses(sts)
		if ok, err := done(sts); ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-t.C:
		case <-d.tap.added:
		}
	}
}

func (d *demo) offset(t time.Time) string {
	return fmt.Sprintf("%+7.2fs", max(0, t.Sub(d.since)).Seconds())
}

// printEvents prints the events recorded since the last call, each new
// revision first (a commit someone else made: from its first event on).
func (d *demo) printEvents() {
	evs := d.tap.all()
	for _, e := range evs[d.printed:] {
		if e.Revision != "" && e.Revision != d.rev {
			d.since, d.rev = e.Time, e.Revision
			d.say("Commit %s by %s: %s", short(e.Revision), e.Author, e.Subject)
		}
		d.say("  %s  %-12s  %s", d.offset(e.Time), e.Service, eventText(e))
	}
	d.printed = len(evs)
}

func eventText(e reconcile.Event) string {
	msg := firstLine(e.Message)
	switch e.Reason {
	case reconcile.ReasonStepApplied:
		return fmt.Sprintf("%s: %s (%s)", e.Phase, msg, seconds(e.Duration))
	case reconcile.ReasonPhaseCompleted:
		return fmt.Sprintf("%s: done in %s", e.Phase, seconds(e.Duration))
	case reconcile.ReasonTransitionSucceeded:
		return "done: " + msg
	}
	if e.Type == reconcile.EventWarning {
		return fmt.Sprintf("WARNING %s: %s", e.Reason, msg)
	}
	return msg
}

// printStatuses prints what the events do not say: a service waiting for
// another (after:), and the drain evidence of the old group until it
// reaches 0.
func (d *demo) printStatuses(sts []reconcile.Status) {
	for _, s := range sts {
		w := d.watched[s.Service]
		if t := s.Transition; t != nil && t.ID != w.transition {
			w = watchState{transition: t.ID}
		}
		if s.InSync {
			w.waiting = ""
		}
		switch t := s.Transition; {
		case t == nil && !s.InSync && s.Message != "" && s.Message != w.waiting:
			w.waiting = s.Message
			d.say("  %s  %-12s  %s", d.offset(time.Now()), s.Service, s.Message)
		case t == nil || t.Phase != reconcile.PhaseDrain || s.Evidence == "":
		case drainState(t) != w.drain:
			w.drain = drainState(t)
			d.say("  %s  %-12s  drain: %s", d.offset(time.Now()), s.Service, s.Evidence)
		}
		d.watched[s.Service] = w
	}
}

func drainState(t *reconcile.Transition) string {
	if t.Drain.ZeroSince.IsZero() {
		return "nonzero"
	}
	return "zero"
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }

func short(hash string) string { return hash[:min(len(hash), 8)] }
