// Command bench-e2e is `make bench-e2e`: it measures releases and reverts
// through Tandem under load, and the naive baseline (the serving group
// restarted in place, no Tandem) under the same load, on a stage of real
// HAProxy (or the ALB emulator), the Nacos emulator, demo apps, a Git
// repository and the daemon (internal/stage).
//
// It prints, per transition, the total time, the time of each phase, when
// the old group's drain evidence reached zero after the shift, and what
// users lost; the baseline's losses beside it; and Tandem's overhead: the
// release time minus the deploy time and the configured waits. It writes
// OUT/e2e.csv, the traffic timelines (OUT/timeline-*.csv) and
// OUT/timeline.png (gnuplot).
//
// With -rollout, releases and reverts move traffic in steps: it prints the
// share of requests each step's new group answered against the configured
// share, and the timeline marks each step.
//
//	go run ./internal/cmd/bench-e2e -releases 5 -out results
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/spec"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "bench-e2e:", err)
		os.Exit(1)
	}
}

// options are the command's flags.
type options struct {
	releases      int
	lb            string
	rate, clients int
	out           string
	rollout       string // the service's rollout, a YAML flow mapping ("" none)
}

// The traffic through the Nacos consumer, beside the load balancer's.
const consumerRate, consumerClients = 50, 10

const service = "web"

func run(ctx context.Context, args []string, stdout io.Writer) error {
	var o options
	fs := flag.NewFlagSet("bench-e2e", flag.ContinueOnError)
	fs.IntVar(&o.releases, "releases", 5, "releases to make, each followed by its revert")
	fs.StringVar(&o.lb, "lb", spec.KindHAProxy, "load balancer: haproxy (real) or alb (the emulator's data plane)")
	fs.IntVar(&o.rate, "rate", 320, "POST requests per second through the load balancer")
	fs.IntVar(&o.clients, "websockets", 50, "WebSocket clients through the load balancer")
	fs.StringVar(&o.out, "out", "results", "directory for e2e.csv and the timelines")
	fs.StringVar(&o.rollout, "rollout", "", `the service's rollout as YAML, e.g. "{steps: [{traffic: 10, pause: 3s}, {traffic: 50, pause: 3s}]}": releases and reverts move traffic in these steps; the bench prints each step's share of requests`)
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case o.releases < 1:
		return errors.New("-releases must be at least 1")
	case o.lb != spec.KindHAProxy && o.lb != spec.KindALB:
		return fmt.Errorf("-lb must be haproxy or alb, got %q", o.lb)
	case o.rate < 1 || o.clients < 1:
		return errors.New("-rate and -websockets must be at least 1")
	}
	if err := os.MkdirAll(o.out, 0o755); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	fmt.Fprintf(stdout, "Tandem: %d releases and %d reverts of %q behind %s with Nacos; traffic: %d POST/s and %d WebSocket clients through the load balancer, %d POST/s and %d through a Nacos consumer\n\n",
		o.releases, o.releases, service, o.lb, o.rate, o.clients, consumerRate, consumerClients)
	tandem, err := measureTandem(ctx, o, log)
	if err != nil {
		return fmt.Errorf("tandem run: %w", err)
	}
	tandem.print(stdout)
	printSteps(stdout, tandem)

	fmt.Fprintf(stdout, "\nNaive baseline: group A restarted in place %d times at a new version (no Tandem), same traffic\n\n", 2*o.releases)
	naive, err := measureBaseline(ctx, o, log)
	if err != nil {
		return fmt.Errorf("baseline run: %w", err)
	}
	naive.print(stdout)

	fmt.Fprintln(stdout)
	printSummary(stdout, tandem, naive)
	if err := writeCSV(filepath.Join(o.out, "e2e.csv"), tandem, naive); err != nil {
		return err
	}
	png, err := plot(o.out, tandem, naive)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nwrote %s, %s\n", filepath.Join(o.out, "e2e.csv"), png)
	return nil
}

// newStage starts the stage both runs share the shape of.
func newStage(ctx context.Context, o options, manual bool, log *slog.Logger) (*stage.Stage, string, error) {
	dir, err := os.MkdirTemp("", "tandem-bench-e2e-")
	if err != nil {
		return nil, "", err
	}
	s, err := stage.Start(ctx, stage.Options{Dir: dir, Manual: manual, Log: log,
		Services: []stage.Service{{Name: service, LB: o.lb, Nacos: true, Rollout: o.rollout}}})
	if err != nil {
		_ = os.RemoveAll(dir)
		return nil, "", err
	}
	return s, dir, nil
}

// closeStage stops the stage and removes its files.
func closeStage(s *stage.Stage, dir string) error {
	return errors.Join(s.Close(), os.RemoveAll(dir))
}

// since formats a duration in milliseconds.
func ms(d time.Duration) string {
	if d < 0 {
		return "-"
	}
	return fmt.Sprintf("%d", d.Milliseconds())
}
