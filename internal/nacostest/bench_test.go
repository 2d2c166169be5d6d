package nacostest

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/model"
)

// BenchmarkStart starts and stops a server of each kind and reports how long
// both take and the server's resident memory once ready:
//
//	go test ./internal/nacostest -run '^$' -bench Start -benchtime 3x
func BenchmarkStart(b *testing.B) {
	for _, kind := range Kinds() {
		b.Run(kind, func(b *testing.B) {
			requireInstalled(b, kind)
			var start, stop time.Duration
			var rssKB int
			for range b.N {
				t0 := time.Now()
				s, err := launch(kind, Options{})
				if err != nil {
					b.Fatal(err)
				}
				start += time.Since(t0)
				rssKB += vmRSSKB(b, s.proc.cmd.Process.Pid)
				t1 := time.Now()
				if err := s.stop(); err != nil {
					b.Fatal(err)
				}
				stop += time.Since(t1)
			}
			b.ReportMetric(float64(start.Milliseconds())/float64(b.N), "start-ms")
			b.ReportMetric(float64(stop.Milliseconds())/float64(b.N), "stop-ms")
			b.ReportMetric(float64(rssKB)/1024/float64(b.N), "rss-MB")
		})
	}
}

// vmRSSKB reads a process's resident set size from /proc.
func vmRSSKB(b *testing.B, pid int) int {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(rest), " kB"))
			if err != nil {
				b.Fatal(err)
			}
			return kb
		}
	}
	b.Fatalf("no VmRSS in /proc/%d/status", pid)
	return 0
}

// BenchmarkDisablePush disables and re-enables an instance through the
// operator API and reports how long a subscriber waits for each push:
//
//	go test ./internal/nacostest -run '^$' -bench DisablePush -benchtime 10x
func BenchmarkDisablePush(b *testing.B) {
	for _, kind := range Kinds() {
		b.Run(kind, func(b *testing.B) {
			s := Shared(b, kind, Options{})
			svc := serviceName(b)
			a := app{service: svc, group: "DEFAULT_GROUP", ip: "127.0.0.1", port: 8080, weight: 1, metadata: map[string]string{"version": "v1"}}
			other := app{service: svc, group: "DEFAULT_GROUP", ip: "127.0.0.2", port: 8080, weight: 1}
			a.register(b, newSDKClient(b, s, nil))
			other.register(b, newSDKClient(b, s, nil))
			w := subscribe(b, newSDKClient(b, s, nil), svc, a.group)
			w.await(b, "both instances", func(in []model.Instance) bool { return has(a.ip, a.port)(in) && has(other.ip, other.port)(in) })
			op := newOperator(b, s)
			var total time.Duration
			b.ResetTimer()
			for range b.N {
				sent := time.Now()
				op.updateInstance(instanceForm(a, false, 1, `{"version":"v1"}`))
				_, at := w.await(b, "the list without the disabled instance", hasNot(a.ip, a.port))
				total += at.Sub(sent)
				sent = time.Now()
				op.updateInstance(instanceForm(a, true, 1, `{"version":"v1"}`))
				_, at = w.await(b, "the re-enabled instance", has(a.ip, a.port))
				total += at.Sub(sent)
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(2*b.N), "ms/push")
		})
	}
}
