package ha

import (
	"testing"
	"time"

	"github.com/tandemhq/tandem/internal/etcdtest"
)

// go test -run '^$' -bench . -benchtime 5x ./ha/

// BenchmarkEmbeddedEtcdStart is the time from StartEtcd to a ready server.
func BenchmarkEmbeddedEtcdStart(b *testing.B) {
	for b.Loop() {
		srv, err := etcdtest.Start(b.TempDir(), "ha-test")
		if err != nil {
			b.Fatal(err)
		}
		b.StopTimer()
		srv.Close()
		b.StartTimer()
	}
}

// BenchmarkFailover is the time from a leader's crash to its successor
// leading, and from a leader stepping down to its successor leading, with
// the production minimum TTL of 2s.
func BenchmarkFailover(b *testing.B) {
	var crashTotal, resignTotal time.Duration
	for b.Loop() {
		crashTotal += handoverTime(b, crash)
		resignTotal += handoverTime(b, resign)
	}
	b.ReportMetric(crashTotal.Seconds()/float64(b.N), "s-after-crash")
	b.ReportMetric(resignTotal.Seconds()/float64(b.N), "s-after-resign")
}

func handoverTime(tb testing.TB, how handover) time.Duration {
	cfg := haConfig(tb, 2*time.Second)
	replicas, terms := pair(tb, cfg)
	first := receive(tb, terms)
	start := time.Now()
	switch how {
	case crash:
		replicas[first.who].crash()
	case resign:
		close(first.resign)
	}
	receive(tb, terms)
	took := time.Since(start)
	for _, r := range replicas {
		r.stop()
	}
	return took
}
