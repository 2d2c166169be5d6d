package nacostest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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

// BenchmarkEnableSeenByQuery enables a disabled instance through the
// operator API and reports, per server, how long after the write returned
// the change showed in the operator's list, in a consumer's query and in a
// subscriber's push (the reads polled every 10 ms):
//
//	go test ./internal/nacostest -run '^$' -bench EnableSeenByQuery -benchtime 5x
//
// It tells whether a query can confirm an enable sooner than the push does
// (docs/propagation.md, "Confirming the enable").
func BenchmarkEnableSeenByQuery(b *testing.B) {
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
			var admin, query, push time.Duration
			b.ResetTimer()
			for range b.N {
				op.updateInstance(instanceForm(a, false, 1, `{"version":"v1"}`))
				w.await(b, "the list without the disabled instance", hasNot(a.ip, a.port))
				sent := time.Now()
				op.updateInstance(instanceForm(a, true, 1, `{"version":"v1"}`))
				var adminAt, queryAt time.Time
				for adminAt.IsZero() || queryAt.IsZero() {
					if in, ok := op.adminLookup(a); adminAt.IsZero() && ok && in.Enabled {
						adminAt = time.Now()
					}
					if queryAt.IsZero() && op.consumerQueryHas(a) {
						queryAt = time.Now()
					}
					if time.Since(sent) > awaitTimeout {
						b.Fatalf("the enable of %s:%d did not show in the reads within %s", a.ip, a.port, awaitTimeout)
					}
					time.Sleep(10 * time.Millisecond) // the polling period of this measurement
				}
				_, pushAt := w.await(b, "the re-enabled instance", has(a.ip, a.port))
				admin += adminAt.Sub(sent)
				query += queryAt.Sub(sent)
				push += pushAt.Sub(sent)
			}
			n := float64(b.N)
			b.ReportMetric(float64(admin.Milliseconds())/n, "ms/admin")
			b.ReportMetric(float64(query.Milliseconds())/n, "ms/query")
			b.ReportMetric(float64(push.Milliseconds())/n, "ms/push")
		})
	}
}

// consumerQueryHas says whether a consumer's query of the service (the
// client list, which leaves disabled instances out) lists a.
func (o *operator) consumerQueryHas(a app) bool {
	o.t.Helper()
	path := "/v1/ns/instance/list"
	if o.s.API == "v3" {
		path = "/v3/client/ns/instance/list"
	}
	status, body := o.call(http.MethodGet, path, url.Values{"serviceName": {a.service}, "groupName": {a.group}})
	if status != http.StatusOK {
		return false
	}
	var out struct {
		Data  []adminInstance // v3 client API
		Hosts []adminInstance // v1
	}
	if err := json.Unmarshal(body, &out); err != nil {
		o.t.Fatalf("GET %s: %v: %s", path, err, body)
	}
	for _, in := range append(out.Data, out.Hosts...) {
		if in.IP == a.ip && in.Port == a.port && in.Enabled {
			return true
		}
	}
	return false
}
