package scalebench

import (
	"context"
	"strings"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// unbudgeted is the rateLimit of the daemon whose idle passes are timed:
// those figures are the engine's, so the API budget must not be what
// bounds them (at the default budget a pass over 1,000 services on one
// account takes about 16 s by design; see Budget).
var unbudgeted = spec.RateLimit{CallsPerSecond: 1e6, Burst: 1e6}

// Budget is the API budget part of a run: what 1,000 services cost per
// second at the default resync interval, and one idle pass made in process
// under a low rateLimit, to show that the limit holds and that only time
// grows (every service is still observed and in sync, no call fails).
type Budget struct {
	Interval time.Duration            // the default resync interval (reconcile.interval)
	Default  spec.RateLimit           // the default rateLimit of a provider instance
	PerPass  map[string]int           // ALB, SLB: API calls of one idle pass of the daemon, per provider instance
	Limit    spec.RateLimit           // the low limit of the budgeted pass
	Took     time.Duration            // the budgeted pass
	Calls    map[string]int           // ALB, SLB: API calls of the budgeted pass
	Busy     map[string]time.Duration // ALB, SLB: from the first call of the pass to the last
	Err      error                    // the budgeted pass failed (a service not observed or not in sync)
}

// arrivalSlack widens the busy window in Holds: it is measured where the
// calls arrive (at the emulator), which can narrow it by the jitter of a
// loaded machine compared with where the tokens were taken.
const arrivalSlack = 100 * time.Millisecond

// Holds reports whether every instance stayed within its limit while it
// was being called: calls ≤ burst + rate × (busy time + arrivalSlack).
func (b *Budget) Holds() bool {
	for api, n := range b.Calls {
		if float64(n) > float64(b.Limit.Burst)+b.Limit.CallsPerSecond*(b.Busy[api]+arrivalSlack).Seconds() {
			return false
		}
	}
	return len(b.Calls) > 0
}

// perAPI sums calls by API (the "ALB " or "SLB " prefix of the action).
func perAPI(c Calls) map[string]int {
	out := map[string]int{}
	for a, n := range c.ByAction {
		if api, _, ok := strings.Cut(a, " "); ok && (api == "ALB" || api == "SLB") {
			out[api] += n
		}
	}
	return out
}

// budget runs one idle pass in process with every Alibaba provider
// instance limited to limit, with concurrency 16 so that the budget, not
// the workers, bounds the pass (at the default limit the pass takes
// about calls/limit: 16 s for 1,000 services, within the 30 s interval).
func (r *runner) budget(ctx context.Context, cfgPath, repoDir, journalDir string, limit spec.RateLimit) error {
	b := &Budget{Interval: 30 * time.Second, Default: spec.RateLimit{CallsPerSecond: spec.DefaultCallsPerSecond, Burst: spec.DefaultBurst}, Limit: limit}
	if len(r.res.Daemon) > 0 {
		b.PerPass = perAPI(r.res.Daemon[0].Calls)
	}
	var def spec.Config
	def.Default()
	b.Interval = def.Reconcile.Interval.D()
	r.res.Budget = b
	cfg, err := spec.LoadConfig(cfgPath)
	if err != nil {
		return err
	}
	for _, ps := range [][]spec.AlibabaProvider{cfg.Providers.ALB, cfg.Providers.SLB} {
		for i := range ps {
			ps[i].RateLimit = limit
		}
	}
	op, closeProviders, err := newObservePlan(cfg, repoDir, journalDir, 16)
	if err != nil {
		return err
	}
	defer closeProviders()
	r.takeCalls()
	start := time.Now()
	_, b.Err = op.pass(ctx)
	b.Took = time.Since(start)
	b.Busy = r.ali.calls.busy()
	b.Calls = perAPI(r.takeCalls())
	r.log.Info("budgeted idle pass in process", "limit", limit.CallsPerSecond, "took", b.Took.Round(time.Millisecond), "calls", b.Calls, "err", b.Err)
	return nil
}

// print writes the budget section of the report.
func (b *Budget) print(p func(string, ...any)) {
	p("API budget (rateLimit, per provider instance)\tcalls\tper second\tlimit\t")
	for _, api := range sortedKeys(b.PerPass) {
		n := b.PerPass[api]
		rate := float64(n) / b.Interval.Seconds()
		p("  %s: one idle pass every %s (the default resync interval)\t%d\t%.1f\t%.0f/s default\t%s",
			api, seconds(b.Interval), n, rate, b.Default.CallsPerSecond, fits(rate <= b.Default.CallsPerSecond))
	}
	if b.Calls == nil {
		return
	}
	p("  one idle pass in process under rateLimit %.0f/s, burst %d, per instance: %s (unlimited: see above)\t\t\t\t", b.Limit.CallsPerSecond, b.Limit.Burst, seconds(b.Took))
	for _, api := range sortedKeys(b.Calls) {
		n, busy := b.Calls[api], b.Busy[api]
		p("    %s, while it was being called (%s)\t%d\t%.1f\t%.0f/s\t", api, seconds(busy), n, float64(n)/busy.Seconds(), b.Limit.CallsPerSecond)
	}
	p("  the limit holds: calls ≤ burst + limit × time called, per instance\t\t\t\t%s", met(b.Holds()))
	if b.Err != nil {
		p("  the budgeted pass: every service observed and in sync, no call failed\t\t\t\tMISSED: %v", b.Err)
	} else {
		p("  the budgeted pass: every service observed and in sync, no call failed (the daemon slows down)\t\t\t\tmet")
	}
}

func fits(ok bool) string {
	if ok {
		return "fits"
	}
	return "slower than the interval: passes take longer"
}
