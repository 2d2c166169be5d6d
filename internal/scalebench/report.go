package scalebench

import (
	"fmt"
	"io"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Print writes the figures and whether each target is met.
func (r *Result) Print(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("Tandem scale benchmark: %s", r.Mix)
	p("reconcile.concurrency %d; %d CPUs; the emulators and instances in the benchmark process, the daemon in its own", r.Concurrency, runtime.NumCPU())
	if r.APILatency > 0 {
		p("every ALB and SLB API call takes %s more (the emulator's latency knob)", r.APILatency)
	}
	p("")
	p("startup: every service Ready %s after the daemon started (first passes probe every instance, then adopt the live state)", seconds(r.Startup))
	p("")
	p("idle pass over %d services\t%s\tworst\ttarget\t", r.Services, passHeads(len(r.Daemon)))
	worst := maxTook(r.Daemon)
	p("  daemon: sync requests until every pass is counted\t%s\t%s\t< %s\t%s", columns(r.Daemon, took), seconds(worst), seconds(TargetPass), met(worst < TargetPass))
	p("  daemon: mean of one service's pass\t%s\t\t\t", columns(r.Daemon, mean))
	p("  daemon: CPU time used\t%s\t\t\t", columns(r.Daemon, cpu))
	p("  in process: observe and plan only\t%s\t%s\t\t", columns(r.InProcess, took), seconds(maxTook(r.InProcess)))
	p("  in process: mean of one service\t%s\t\t\t", columns(r.InProcess, mean))
	p("")
	p("daemon memory\tready\tafter passes\tpeak\ttarget\t")
	p("  resident (VmRSS, VmHWM)\t%s\t%s\t%s\t< %s\t%s", mb(r.RSSReady), mb(r.RSSIdle), mb(r.HWM), mb(TargetRSS), met(r.HWM < TargetRSS))
	p("")
	if len(r.Daemon) > 0 {
		first := r.Daemon[0]
		p("API calls in one idle pass of the daemon (pass 1)\tcalls\t")
		writeCalls(p, first.Calls)
		ok := true
		for _, ps := range [][]Pass{r.Daemon, r.InProcess} {
			for _, pass := range ps {
				good, _ := r.Check(pass.Calls)
				ok = ok && good
			}
		}
		_, lines := r.Check(first.Calls)
		for _, l := range lines {
			p("  %s", l)
		}
		p("  every idle pass (daemon and in process): one list call per server group, no probe\ttarget ≤ 1\t%s", met(ok))
		p("")
	}
	if r.Budget != nil {
		r.Budget.print(p)
		p("")
	}
	p("API calls of the daemon in %s with no pass running\tcalls\tper second", seconds(r.BetweenFor))
	writeRates(p, r.Between, r.BetweenFor)
	p("")
	p("reading the daemon's HTTP API (after the passes)\tsize\tdaemon CPU per request")
	for _, rd := range r.Reads {
		p("  GET %s\t%.0f KB\t%.1f ms", rd.Path, float64(rd.Bytes)/1024, float64(rd.CPU.Microseconds())/1000)
	}
	p("")
	p("API calls until every service was Ready (first passes)\tcalls\t")
	writeCalls(p, r.StartupAPI)
	return tw.Flush()
}

func writeCalls(p func(string, ...any), c Calls) {
	for _, a := range sortedKeys(c.ByAction) {
		p("  %s\t%d\t", a, c.ByAction[a])
	}
	if len(c.ByAction) == 0 {
		p("  none\t\t")
	}
}

func writeRates(p func(string, ...any), c Calls, d time.Duration) {
	for _, a := range sortedKeys(c.ByAction) {
		p("  %s\t%d\t%.1f", a, c.ByAction[a], float64(c.ByAction[a])/d.Seconds())
	}
	if len(c.ByAction) == 0 {
		p("  none\t\t")
	}
}

func sortedKeys(m map[string]int) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func passHeads(n int) string {
	var h []string
	for i := range n {
		h = append(h, fmt.Sprintf("pass %d", i+1))
	}
	return strings.Join(h, "\t")
}

// columns formats one figure of each pass, tab-separated.
func columns(ps []Pass, figure func(Pass) string) string {
	var out []string
	for _, p := range ps {
		out = append(out, figure(p))
	}
	return strings.Join(out, "\t")
}

func took(p Pass) string { return seconds(p.Took) }
func cpu(p Pass) string  { return seconds(p.CPU) }
func mean(p Pass) string { return fmt.Sprintf("%.2f ms", float64(p.Mean.Microseconds())/1000) }

func maxTook(ps []Pass) time.Duration {
	return slices.MaxFunc(append([]Pass{{}}, ps...), func(a, b Pass) int { return int(a.Took - b.Took) }).Took
}

func seconds(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }

func mb(kb int) string { return fmt.Sprintf("%.0f MB", float64(kb)/1024) }

func met(ok bool) string {
	if ok {
		return "met"
	}
	return "MISSED"
}
