package nacos_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// BenchmarkPushLatency measures, per target, how long an operator change
// takes to reach (1) Tandem's own subscription: SetEnabled returns when it
// shows the change, and (2) a consumer's SDK subscription. It prints the
// median and the maximum over b.N disable+enable rounds.
//
//	go test ./providers/nacos -run '^$' -bench PushLatency -benchtime 20x
func BenchmarkPushLatency(b *testing.B) {
	for _, tg := range targets() {
		if tg.auth {
			continue
		}
		b.Run(tg.name, func(b *testing.B) {
			srv := tg.start(b)
			h := &harness{t: b, srv: srv}
			f := h.fleet("bench")
			var self, consumer []time.Duration
			b.ResetTimer()
			for i := range b.N {
				enabled := i%2 == 1
				want := f.b
				if enabled {
					want = f.all()
				}
				start := time.Now()
				require.NoError(b, f.p.SetEnabled(context.Background(), f.ref, f.a, enabled))
				self = append(self, time.Since(start))
				consumer = append(consumer, f.consumer.waitFor(h.t, want).Sub(start))
			}
			b.StopTimer()
			report(b, "self", self)
			report(b, "consumer", consumer)
		})
	}
}

func report(b *testing.B, name string, ds []time.Duration) {
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, name+"-p50-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, name+"-max-ms")
}
