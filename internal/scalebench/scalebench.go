// Package scalebench measures one Tandem daemon in charge of a thousand
// services: the time of an idle pass over all of them (observe and plan,
// nothing to change), the daemon's resident memory, and the API calls an
// idle pass makes on the load balancers and Nacos.
//
// Everything runs on 127.0.0.1. The benchmark process holds the Alibaba
// OpenAPI emulator (ALB server groups, SLB vServer groups), the Nacos
// emulator, the services' instances (one loopback listener each, answering
// /healthz and /version) and a Git repository of desired state in sync with
// that live state. The daemon is the real `tandem run`, a child process, so
// that its memory is measured alone. Once every service is Ready (the
// first pass probed every instance and journaled the adopted state, so
// later passes probe nothing), the benchmark asks for a pass of every
// service (POST /api/v1/services/NAME/sync) and times until the daemon's
// metrics count that many more passes, reading the API calls the
// emulators answered meanwhile. It then repeats the pass in process
// (reconcile.Observe and reconcile.Compute with the production providers,
// without status, metrics and events) to show what the engine alone costs.
//
// Run it with `make bench-scale`.
package scalebench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Options configure a run.
type Options struct {
	Dir         string        // where the run keeps its files (a new directory is made inside); must exist
	Tandem      string        // the tandem binary
	Services    int           // default 1000
	Concurrency int           // reconcile.concurrency; default 4, the daemon's default
	Passes      int           // idle passes measured, by the daemon and in process; default 3
	Between     time.Duration // how long the daemon's calls are counted with no pass running; default 10 s
	// APILatency is added to every ALB and SLB API call (the emulator's
	// latency knob), to see a pass bound by a real cloud API's latency
	// rather than by CPU; default none.
	APILatency time.Duration
	// Budget is the rateLimit under which one more idle pass runs in
	// process, to show the limit hold; default: the default rateLimit of a
	// provider instance (50 calls/s, burst 100).
	Budget spec.RateLimit
	Log    *slog.Logger // progress; nil: none
}

// Targets of the scale benchmark (README, "Benchmarks"; docs/bench-scale.md).
const (
	TargetPass = 2 * time.Second
	TargetRSS  = 150 << 10 // kB
)

// Result holds the figures of a run.
type Result struct {
	Mix         string
	Services    int
	Concurrency int
	APILatency  time.Duration
	Startup     time.Duration // from the daemon's start until every service was Ready
	StartupAPI  Calls         // API calls until then (first passes: probes, adoption)
	Daemon      []Pass        // idle passes of the daemon
	InProcess   []Pass        // idle passes in process
	RSSReady    int           // kB, once every service was Ready
	RSSIdle     int           // kB, after the idle passes
	HWM         int           // kB, the daemon's peak resident set
	Between     Calls         // API calls of the daemon while no pass ran
	BetweenFor  time.Duration
	Reads       []Read         // what reading the daemon's status and metrics costs it
	Budget      *Budget        // the API budget: calls per second, and a pass under a low limit
	lists       map[string]int // list action -> resources it must read once per pass
}

// Pass is one idle pass over every service.
type Pass struct {
	Took  time.Duration // wall time: from the first sync request until every pass finished
	Mean  time.Duration // mean time of one service's pass
	CPU   time.Duration // CPU time the daemon used (user and system)
	Calls Calls         // API calls answered meanwhile
}

// Read is the cost of one GET of the daemon's HTTP API, with every
// service's status in it (the dashboard's stream encodes the same list
// every second).
type Read struct {
	Path  string
	Bytes int64
	CPU   time.Duration // the daemon's CPU time per request, averaged
}

// Calls are API calls the emulators answered, by action ("ALB
// ListServerGroupServers", "Nacos GET /nacos/v1/ns/catalog/instances",
// "Instances GET /healthz", ...). Nacos gRPC calls include those of the
// benchmark's own publishing connections (each sends HealthCheckRequest as
// its keepalive).
type Calls struct {
	ByAction map[string]int
	// Resources and MostOnOne, for the ALB and SLB actions: how many
	// distinct resources (server group, listener, ...) were named, and the
	// most calls one of them received.
	Resources map[string]int
	MostOnOne map[string]int
}

// Run builds the world, runs the daemon and measures. Errors are failures
// of the benchmark itself (a part did not start, a service never became
// Ready); targets missed are reported in the result.
func Run(ctx context.Context, o Options) (*Result, error) {
	o.defaults()
	dir, err := os.MkdirTemp(o.Dir, "scale-")
	if err != nil {
		return nil, err
	}
	services, m := layout(o.Services)
	r := &runner{o: o, log: o.Log,
		res: &Result{Mix: m.String(), Services: m.services, Concurrency: o.Concurrency, APILatency: o.APILatency,
			lists: map[string]int{
				"ALB ListServerGroupServers":        m.alb,
				"SLB DescribeVServerGroupAttribute": m.slb,
				"Nacos GET " + nacosListPath:        m.nacos,
			}}}
	for _, s := range services {
		r.names = append(r.names, s.name)
	}
	r.log.Info("scale benchmark", "dir", dir, "layout", m.String())

	if r.fleet, err = startFleet(services); err != nil {
		return nil, err
	}
	defer r.fleet.close()
	if r.ali, err = startAlibaba(services, o.APILatency); err != nil {
		return nil, err
	}
	defer r.ali.close()
	start := time.Now()
	if r.nacos, err = startNacos(ctx, services); err != nil {
		return nil, err
	}
	defer r.nacos.close()
	r.log.Info("nacos instances registered, idle groups disabled", "took", time.Since(start).Round(time.Millisecond))
	repoDir, stateDir, cfgPath := filepath.Join(dir, "repo"), filepath.Join(dir, "state"), filepath.Join(dir, "tandem.yaml")
	if err := writeRepo(repoDir, services); err != nil {
		return nil, err
	}
	if err := writeConfig(cfgPath, daemonConfig(repoDir, stateDir, o.Concurrency, r.ali, r.nacos)); err != nil {
		return nil, err
	}
	if err := r.daemon(ctx, cfgPath, stateDir, filepath.Join(dir, "tandem.log")); err != nil {
		return nil, err
	}
	if err := r.inProcess(ctx, cfgPath, repoDir, filepath.Join(stateDir, "journal")); err != nil {
		return nil, err
	}
	if err := r.budget(ctx, cfgPath, repoDir, filepath.Join(stateDir, "journal"), o.Budget); err != nil {
		return nil, err
	}
	return r.res, nil
}

func (o *Options) defaults() {
	if o.Services <= 0 {
		o.Services = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 4
	}
	if o.Passes <= 0 {
		o.Passes = 3
	}
	if o.Between <= 0 {
		o.Between = 10 * time.Second
	}
	if o.Budget.CallsPerSecond <= 0 {
		o.Budget.CallsPerSecond = spec.DefaultCallsPerSecond
	}
	if o.Budget.Burst <= 0 {
		o.Budget.Burst = spec.DefaultBurst
	}
	if o.Log == nil {
		o.Log = slog.New(slog.DiscardHandler)
	}
}

type runner struct {
	o     Options
	log   *slog.Logger
	names []string
	fleet *fleet
	ali   *alibaba
	nacos *nacosSide
	res   *Result
}

// nacosListPath is the operator list the Nacos provider reads (API v1).
const nacosListPath = "/nacos/v1/ns/catalog/instances"

// Bounds of the benchmark's waits.
const (
	readyTimeout = 5 * time.Minute
	passTimeout  = 2 * time.Minute
)

// daemon runs `tandem run` until every service is Ready, then measures
// idle passes, the calls between passes and the memory, and stops it.
func (r *runner) daemon(ctx context.Context, cfgPath, stateDir, logPath string) (err error) {
	r.takeCalls()
	start := time.Now()
	d, err := startDaemon(ctx, r.o.Tandem, cfgPath, stateDir, logPath)
	if err != nil {
		return err
	}
	defer func() {
		if stopErr := d.stop(); stopErr != nil && err == nil {
			err = fmt.Errorf("stopping the daemon: %w (its log: %s)", stopErr, logPath)
		}
	}()
	readyCtx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	if err := d.waitReady(readyCtx, len(r.names), start, 250*time.Millisecond); err != nil {
		return fmt.Errorf("%w (the daemon's log: %s)", err, logPath)
	}
	r.res.Startup = time.Since(start)
	if err := d.waitQuiet(readyCtx, time.Second); err != nil {
		return err
	}
	r.res.StartupAPI = r.takeCalls()
	if r.res.RSSReady, _, err = d.memory(); err != nil {
		return err
	}
	r.log.Info("every service is ready", "took", r.res.Startup.Round(time.Millisecond), "rss_kb", r.res.RSSReady)

	for i := range r.o.Passes {
		p, err := r.daemonPass(ctx, d)
		if err != nil {
			return fmt.Errorf("idle pass %d: %w (the daemon's log: %s)", i+1, err, logPath)
		}
		r.log.Info("daemon idle pass", "pass", i+1, "took", p.Took.Round(time.Millisecond), "mean", p.Mean.Round(time.Microsecond))
		r.res.Daemon = append(r.res.Daemon, p)
	}

	// What the daemon asks of the APIs when no pass runs: a window of
	// measurement, not a wait for anything.
	r.takeCalls()
	t := time.NewTimer(r.o.Between)
	select {
	case <-ctx.Done():
		t.Stop()
		return ctx.Err()
	case <-t.C:
	}
	r.res.Between, r.res.BetweenFor = r.takeCalls(), r.o.Between
	if r.res.RSSIdle, r.res.HWM, err = d.memory(); err != nil {
		return err
	}
	for _, path := range []string{"/api/v1/services", "/metrics"} {
		rd, err := d.readCost(ctx, path, 10)
		if err != nil {
			return err
		}
		r.res.Reads = append(r.res.Reads, rd)
	}
	return nil
}

// daemonPass asks the daemon for a pass of every service and times until
// its metrics count that many more passes.
func (r *runner) daemonPass(ctx context.Context, d *daemonProc) (Pass, error) {
	ctx, cancel := context.WithTimeout(ctx, passTimeout)
	defer cancel()
	count0, sum0, err := d.passCounter(ctx)
	if err != nil {
		return Pass{}, err
	}
	cpu0, err := d.cpu()
	if err != nil {
		return Pass{}, err
	}
	r.takeCalls()
	start := time.Now()
	if err := d.sync(ctx, r.names); err != nil {
		return Pass{}, err
	}
	// Each pass reads its service's group or Nacos service once: that is
	// watched in process, at no cost to the daemon, before its metrics
	// are read.
	r.waitLists(ctx)
	// A scrape of the metrics costs the daemon some CPU (see Reads): after
	// the lists, only the last few passes are left.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		count, sum, err := d.passCounter(ctx)
		if err != nil {
			return Pass{}, err
		}
		if n := count - count0; n >= len(r.names) {
			p := Pass{Took: time.Since(start), Mean: (sum - sum0) / time.Duration(n), Calls: r.takeCalls()}
			cpu, err := d.cpu()
			if err != nil {
				return Pass{}, err
			}
			p.CPU = cpu - cpu0
			// Every service passed, in sync, since the requests.
			return p, d.waitReady(ctx, len(r.names), start, 10*time.Millisecond)
		}
		select {
		case <-ctx.Done():
			return Pass{}, fmt.Errorf("%d of %d passes counted: %w", count-count0, len(r.names), ctx.Err())
		case <-d.Exited():
			return Pass{}, fmt.Errorf("the daemon exited: %v", d.Err())
		case <-tick.C:
		}
	}
}

// waitLists polls the emulators' counters until the list calls of one pass
// were answered, or they stop growing for a second (passes that read less
// than they should: Check reports it), or ctx ends.
func (r *runner) waitLists(ctx context.Context) {
	want := 0
	for _, n := range r.res.lists {
		want += n
	}
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	last, since := -1, time.Now()
	for {
		got := r.ali.calls.count("ListServerGroupServers") + r.ali.calls.count("DescribeVServerGroupAttribute") +
			r.nacos.Emu.Calls()["GET "+nacosListPath]
		if got != last {
			last, since = got, time.Now()
		}
		if got >= want || time.Since(since) > time.Second {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// inProcess measures idle passes with the engine alone, after a first
// pass that subscribes the Nacos provider to every service.
func (r *runner) inProcess(ctx context.Context, cfgPath, repoDir, journalDir string) error {
	for env, v := range map[string]string{alibabaKeyIDEnv: alibabaKeyID, alibabaKeySecretEnv: alibabaKeySecret} {
		if err := os.Setenv(env, v); err != nil {
			return err
		}
	}
	cfg, err := spec.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	op, closeProviders, err := newObservePlan(cfg, repoDir, journalDir, r.o.Concurrency)
	if err != nil {
		return err
	}
	defer closeProviders()
	if _, err := op.pass(ctx); err != nil {
		return fmt.Errorf("first pass in process: %w", err)
	}
	for i := range r.o.Passes {
		r.takeCalls()
		start := time.Now()
		mean, err := op.pass(ctx)
		if err != nil {
			return fmt.Errorf("idle pass %d in process: %w", i+1, err)
		}
		p := Pass{Took: time.Since(start), Mean: mean, Calls: r.takeCalls()}
		r.log.Info("in-process idle pass", "pass", i+1, "took", p.Took.Round(time.Millisecond), "mean", p.Mean.Round(time.Microsecond))
		r.res.InProcess = append(r.res.InProcess, p)
	}
	return nil
}

// takeCalls returns the calls both emulators answered since the last take.
func (r *runner) takeCalls() Calls {
	c := Calls{ByAction: map[string]int{}, Resources: map[string]int{}, MostOnOne: map[string]int{}}
	for k, n := range r.ali.calls.take() {
		a := k.api + " " + k.action
		c.ByAction[a] += n
		if k.resource != "" {
			c.Resources[a]++
			c.MostOnOne[a] = max(c.MostOnOne[a], n)
		}
	}
	for k, n := range r.nacos.Emu.Calls() {
		c.ByAction["Nacos "+k] += n
	}
	r.nacos.Emu.ResetCalls()
	for k, n := range r.fleet.take() {
		c.ByAction["Instances "+k] += n
	}
	return c
}

// Check reports whether an idle pass read every server group (and Nacos
// service) with exactly one list call and probed no instance, and
// describes what it saw.
func (r *Result) Check(c Calls) (bool, []string) {
	ok := true
	var lines []string
	for _, a := range sortedKeys(r.lists) {
		want := r.lists[a]
		if strings.HasPrefix(a, "Nacos ") {
			// The emulator counts by path: one list per Nacos service shows
			// as the total.
			got := c.ByAction[a]
			ok = ok && got == want
			lines = append(lines, fmt.Sprintf("%s: %d calls for %d services", a, got, want))
			continue
		}
		ok = ok && c.Resources[a] == want && c.MostOnOne[a] <= 1
		lines = append(lines, fmt.Sprintf("%s: %d calls on %d of %d groups, at most %d on one", a, c.ByAction[a], c.Resources[a], want, c.MostOnOne[a]))
	}
	probes := 0
	for a, n := range c.ByAction {
		if strings.HasPrefix(a, "Instances ") {
			probes += n
		}
	}
	ok = ok && probes == 0
	lines = append(lines, fmt.Sprintf("instance probes (health, version): %d", probes))
	return ok, lines
}

// Err is the benchmark's own check (Check) over every idle pass, the
// daemon's and those in process.
func (r *Result) Err() error {
	var errs []error
	for i, p := range append(append([]Pass(nil), r.Daemon...), r.InProcess...) {
		if ok, lines := r.Check(p.Calls); !ok {
			errs = append(errs, fmt.Errorf("idle pass %d: %s", i+1, strings.Join(lines, "; ")))
		}
	}
	if b := r.Budget; b != nil {
		if b.Err != nil {
			errs = append(errs, fmt.Errorf("the pass under rateLimit %.0f/s failed: %w", b.Limit.CallsPerSecond, b.Err))
		}
		if !b.Holds() {
			errs = append(errs, fmt.Errorf("rateLimit %.0f/s did not hold: %v calls in %s", b.Limit.CallsPerSecond, b.Calls, seconds(b.Took)))
		}
	}
	return errors.Join(errs...)
}
