package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/spec"
)

// restart is one in-place restart of the serving group.
type restart struct {
	Version string
	Took    time.Duration // until every WebSocket client was connected again
	Loss    loss
}

// baselineRun is the measured naive baseline.
type baselineRun struct {
	restarts []restart
	report   loadgen.Report // through the load balancer, for the timeline
	all      loss
}

// settle is how long each restart is watched after the clients are back,
// so that late failures are counted in it.
const settle = time.Second

func measureBaseline(ctx context.Context, o options, log *slog.Logger) (*baselineRun, error) {
	s, dir, err := newStage(ctx, o, true, log)
	if err != nil {
		return nil, err
	}
	defer closeStage(s, dir)
	tr, err := startTraffic(ctx, s, o)
	if err != nil {
		return nil, err
	}
	run := &baselineRun{}
	for i := 1; i <= 2*o.releases; i++ {
		version := "1.0.0"
		if i%2 == 1 {
			version = fmt.Sprintf("1.%d.0", (i+1)/2)
		}
		before := tr.counts()
		start := time.Now()
		if err := s.RestartGroup(service, spec.GroupA, version); err != nil {
			return nil, err
		}
		if err := waitFor(ctx, 30*time.Second, func() bool {
			return tr.lb.Snapshot().Connected == o.clients && tr.consumer.Snapshot().Connected == consumerClients
		}); err != nil {
			return nil, fmt.Errorf("waiting for the WebSocket clients after restart %d: %w", i, err)
		}
		took := time.Since(start)
		time.Sleep(settle)
		r := restart{Version: version, Took: took, Loss: tr.counts().minus(before)}
		run.restarts = append(run.restarts, r)
		fmt.Fprintf(os.Stderr, "restart %d at %s: %d failed, %d lost\n", i, version, r.Loss.Failed, r.Loss.Lost)
	}
	run.report = tr.lb.Stop()
	run.all = lossOf(run.report).add(lossOf(tr.consumer.Stop()))
	return run, nil
}

func (r *baselineRun) print(w io.Writer) {
	fmt.Fprintf(w, "%-3s %-7s %9s %7s %6s %9s %5s %8s %12s\n", "#", "version", "back(ms)", "reqs", "failed", "messages", "lost", "abnormal", "failed-conn")
	for i, x := range r.restarts {
		fmt.Fprintf(w, "%-3d %-7s %9s %7d %6d %9d %5d %8d %12d\n", i+1, x.Version, ms(x.Took),
			x.Loss.Requests, x.Loss.Failed, x.Loss.Messages, x.Loss.Lost, x.Loss.Abnormal, x.Loss.DialFailures)
	}
	fmt.Fprintf(w, "back: restart until every WebSocket client was connected again\n")
	fmt.Fprintf(w, "users saw: %d requests, %d failed; %d WebSocket messages, %d lost; %d abnormal closes, %d failed connection attempts\n",
		r.all.Requests, r.all.Failed, r.all.Messages, r.all.Lost, r.all.Abnormal, r.all.DialFailures)
}

// waitFor polls cond every 20ms until it holds, ctx ends or limit passes.
func waitFor(ctx context.Context, limit time.Duration, cond func() bool) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-t.C:
		}
	}
	return nil
}
