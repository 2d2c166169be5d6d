package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/spec"
)

func printSummary(w io.Writer, t *tandemRun, b *baselineRun) {
	fmt.Fprintf(w, "%-22s %11s %9s %7s %9s %6s %8s %11s\n", "summary", "transitions", "requests", "failed", "messages", "lost", "abnormal", "failed-conn")
	row := func(name string, n int, l loss) {
		fmt.Fprintf(w, "%-22s %11d %9d %7d %9d %6d %8d %11d\n", name, n, l.Requests, l.Failed, l.Messages, l.Lost, l.Abnormal, l.DialFailures)
	}
	row("tandem", len(t.transitions), t.all)
	row("naive in-place restart", len(b.restarts), b.all)

	var over, rel, dep, rev []time.Duration
	for _, x := range t.transitions {
		over = append(over, x.overhead(t.waits))
		if x.Kind == "release" {
			rel, dep = append(rel, x.Total), append(dep, x.Deploy)
		} else {
			rev = append(rev, x.Total)
		}
	}
	fmt.Fprintf(w, "release total: mean %s (deploy mean %s); revert total: mean %s\n", mean(rel), mean(dep), mean(rev))
	fmt.Fprintf(w, "overhead (total - deploy - %s = %s): mean %s, min %s, max %s\n",
		t.waitsText, t.waits, mean(over), minOf(over), maxOf(over))
}

func mean(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	var sum time.Duration
	for _, d := range ds {
		sum += d
	}
	return (sum / time.Duration(len(ds))).Round(time.Millisecond)
}

func minOf(ds []time.Duration) time.Duration {
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
	return sorted[0].Round(time.Millisecond)
}

func maxOf(ds []time.Duration) time.Duration {
	sorted := append([]time.Duration(nil), ds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i] > sorted[j] })
	return sorted[0].Round(time.Millisecond)
}

// writeCSV writes one row per transition and per baseline restart.
func writeCSV(path string, t *tandemRun, b *baselineRun) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	head := []string{"run", "index", "kind", "version", "commit_to_start_ms", "total_ms"}
	for _, p := range phases {
		head = append(head, string(p)+"_ms")
	}
	head = append(head, "deploy_ms", "drain_zero_ms", "overhead_ms", "requests", "failed", "messages", "lost", "abnormal", "failed_connections")
	_ = w.Write(head)
	n := strconv.Itoa
	counts := func(l loss) []string {
		return []string{n(l.Requests), n(l.Failed), n(l.Messages), n(l.Lost), n(l.Abnormal), n(l.DialFailures)}
	}
	for i, x := range t.transitions {
		row := []string{"tandem", n(i + 1), x.Kind, x.Version, ms(x.Started.Sub(x.Commit)), ms(x.Total)}
		for _, p := range phases {
			row = append(row, ms(x.Phases[p]))
		}
		row = append(row, ms(x.Deploy), ms(x.DrainZero), ms(x.overhead(t.waits)))
		_ = w.Write(append(row, counts(x.Loss)...))
	}
	for i, x := range b.restarts {
		row := []string{"naive", n(i + 1), "restart-in-place", x.Version, "", ms(x.Took)}
		row = append(row, make([]string, len(phases)+3)...)
		_ = w.Write(append(row, counts(x.Loss)...))
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// plot writes the timelines and renders OUT/timeline.png with gnuplot.
func plot(out string, t *tandemRun, b *baselineRun) (string, error) {
	for name, r := range map[string]loadgen.Report{"tandem": t.report, "naive": b.report} {
		if err := writeFile(filepath.Join(out, "timeline-"+name+".csv"), r.WriteTimelineCSV); err != nil {
			return "", err
		}
		if err := writeFile(filepath.Join(out, "timeline-"+name+".dat"), func(w io.Writer) error { return byGroup(w, r) }); err != nil {
			return "", err
		}
	}
	script := filepath.Join(out, "timeline.gp")
	png := filepath.Join(out, "timeline.png")
	gp := fmt.Sprintf(gnuplotScript, png, t.lb,
		len(t.transitions), t.all.Requests, t.all.Failed, t.all.Messages, t.all.Lost, gnuplotMarks(t.started, t.marks), filepath.Join(out, "timeline-tandem.dat"),
		len(b.restarts), b.all.Requests, b.all.Failed, b.all.Messages, b.all.Lost, filepath.Join(out, "timeline-naive.dat"))
	if err := os.WriteFile(script, []byte(gp), 0o644); err != nil {
		return "", err
	}
	if msg, err := exec.Command("gnuplot", script).CombinedOutput(); err != nil {
		return "", fmt.Errorf("gnuplot %s (scripts/install-gnuplot.sh installs it): %w: %s", script, err, strings.TrimSpace(string(msg)))
	}
	return png, nil
}

func writeFile(path string, write func(io.Writer) error) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := write(f); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// byGroup writes "seconds answeredByA answeredByB failed" per 100ms bucket.
func byGroup(w io.Writer, r loadgen.Report) error {
	type bucket struct{ a, b, failed int }
	buckets := map[time.Duration]*bucket{}
	var last time.Duration
	for _, p := range r.Timeline {
		x := buckets[p.At]
		if x == nil {
			x = &bucket{}
			buckets[p.At] = x
		}
		switch stage.GroupOf(p.Backend) {
		case spec.GroupA:
			x.a += p.Requests
		case spec.GroupB:
			x.b += p.Requests
		}
		x.failed += p.Failed
		last = max(last, p.At)
	}
	for at := time.Duration(0); at <= last; at += 100 * time.Millisecond {
		x := buckets[at]
		if x == nil {
			x = &bucket{}
		}
		if _, err := fmt.Fprintf(w, "%.1f %d %d %d\n", at.Seconds(), x.a, x.b, x.failed); err != nil {
			return err
		}
	}
	return nil
}

const gnuplotScript = `# written by internal/cmd/bench-e2e
set terminal pngcairo size 1500,900 font "sans,10"
set output '%s'
set multiplot layout 2,1 title "POST answers per 100 ms through the load balancer (%s), by backend group; failures in red"
set grid ytics
set ylabel "answers / 100 ms"
set yrange [0:*]
set key top right opaque box
set style fill solid 1.0
set title "Tandem: %d transitions (releases and their reverts); %d requests, %d failed; %d WebSocket messages, %d lost"
%splot '%s' using 1:2 with steps lw 1.5 lc rgb '#1f77b4' title 'group A (1.0.0)', \
     '' using 1:3 with steps lw 1.5 lc rgb '#ff7f0e' title 'group B (released 1.x.0)', \
     '' using 1:4 with impulses lw 3 lc rgb '#d62728' title 'failed'
set xlabel "seconds since the traffic started"
unset arrow
unset label
set title "Naive baseline: group A restarted in place %d times; %d requests, %d failed; %d WebSocket messages, %d lost"
plot '%s' using 1:2 with steps lw 1.5 lc rgb '#1f77b4' title 'group A (restarted in place)', \
     '' using 1:4 with impulses lw 3 lc rgb '#d62728' title 'failed'
unset multiplot
`
