package scalebench_test

import (
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/scalebench"
	"github.com/tandemhq/tandem/spec"
)

// BenchmarkScale runs the scale benchmark once and prints its figures:
//
//	make bench-scale
//	go test ./internal/scalebench -run '^$' -bench Scale -benchtime 1x -timeout 20m
//
// TANDEM_BIN names the tandem binary to run (default: built here);
// TANDEM_SCALE_SERVICES, TANDEM_SCALE_CONCURRENCY and TANDEM_SCALE_PASSES
// change the defaults (1000 services, concurrency 4, 3 passes);
// TANDEM_SCALE_API_LATENCY (e.g. 30ms) is added to every ALB and SLB call;
// TANDEM_SCALE_BUDGET is the rateLimit (calls per second) of the budgeted
// pass (default: the default rateLimit, 50/s with a burst of 100).
func BenchmarkScale(b *testing.B) {
	o := scalebench.Options{
		Dir:         b.TempDir(),
		Tandem:      os.Getenv("TANDEM_BIN"),
		Services:    envInt(b, "TANDEM_SCALE_SERVICES"),
		Concurrency: envInt(b, "TANDEM_SCALE_CONCURRENCY"),
		Passes:      envInt(b, "TANDEM_SCALE_PASSES"),
		APILatency:  envDuration(b, "TANDEM_SCALE_API_LATENCY"),
		Budget:      spec.RateLimit{CallsPerSecond: float64(envInt(b, "TANDEM_SCALE_BUDGET"))},
		Log:         slog.New(slog.NewTextHandler(os.Stderr, nil)),
	}
	if o.Tandem == "" {
		o.Tandem = buildTandem(b)
	}
	for range b.N {
		res, err := scalebench.Run(b.Context(), o)
		if err != nil {
			b.Fatal(err)
		}
		if err := res.Print(os.Stdout); err != nil {
			b.Fatal(err)
		}
		if err := res.Err(); err != nil {
			b.Error(err)
		}
		worst := time.Duration(0)
		for _, p := range res.Daemon {
			worst = max(worst, p.Took)
		}
		b.ReportMetric(worst.Seconds(), "pass-s")
		b.ReportMetric(float64(res.HWM)/1024, "peak-rss-MB")
	}
}

func envInt(b *testing.B, name string) int {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("%s must be a positive integer, got %q", name, v)
	}
	return n
}

func envDuration(b *testing.B, name string) time.Duration {
	v := os.Getenv(name)
	if v == "" {
		return 0
	}
	d, err := time.ParseDuration(v)
	if err != nil || d < 0 {
		b.Fatalf("%s must be a duration such as 30ms, got %q", name, v)
	}
	return d
}

// buildTandem builds cmd/tandem into a temporary directory.
func buildTandem(tb testing.TB) string {
	tb.Helper()
	bin := filepath.Join(tb.TempDir(), "tandem")
	cmd := exec.Command("go", "build", "-o", bin, "github.com/tandemhq/tandem/cmd/tandem")
	if out, err := cmd.CombinedOutput(); err != nil {
		tb.Fatalf("building tandem: %v\n%s", err, out)
	}
	return bin
}
