package e2e_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/javaapps"
	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/nacos"
	"github.com/tandemhq/tandem/spec"
)

// BenchmarkJavaConsumerPropagation measures how long the Spring Cloud
// consumer of e2e/java keeps calling a provider instance after Tandem
// disabled it in the real Nacos 3: with Spring Cloud LoadBalancer's default
// cache (spring.cloud.loadbalancer.cache.ttl 35 s) and with it shortened to
// 5 s. It sends 20 requests a second through the consumer and reports the
// time from the disable call's return to the last answer from the disabled
// instance: the longest of several disables (propagation-max-s), each
// followed by an enable and a wait until the instance is called again. A
// disable lands at a random point of the cache's life, so the longest is
// the figure drain.propagation must cover (docs/propagation.md). It takes
// about four minutes:
//
//	go test ./e2e -run '^$' -bench BenchmarkJavaConsumerPropagation -benchtime 1x
func BenchmarkJavaConsumerPropagation(b *testing.B) {
	dir := javaapps.Require(b)
	srv := nacostest.Start(b, nacostest.KindNacos3, nacostest.Options{})
	for _, c := range []struct {
		ttl    string
		trials int
	}{{"", 3}, {"5s", 6}} {
		name := "ttl=default"
		if c.ttl != "" {
			name = "ttl=" + c.ttl
		}
		b.Run(name, func(b *testing.B) {
			for b.Loop() {
				ds := measurePropagation(b, dir, srv, c.ttl, c.trials)
				longest := slices.Max(ds)
				b.ReportMetric(longest.Seconds(), "propagation-max-s")
				b.Logf("%s: after the disable returned, the consumer called the disabled instance for %v (longest %s)",
					name, ds, longest.Round(10*time.Millisecond))
			}
		})
	}
}

func measurePropagation(b *testing.B, dir string, srv *nacostest.Server, ttl string, trials int) []time.Duration {
	ctx, cancel := context.WithTimeout(b.Context(), 6*time.Minute)
	defer cancel()
	service := fmt.Sprintf("prop-%d", time.Now().UnixNano()%1_000_000)
	logs := b.TempDir()
	fleet := javaapps.NewFleet()
	defer func() { require.NoError(b, fleet.Close()) }()
	var apps []*javaapps.App
	for i := 1; i <= 2; i++ {
		a, err := fleet.Start(javaapps.Options{Dir: dir, Jar: "provider.jar", Name: fmt.Sprintf("%s-a%d", service, i), Group: "A",
			Version: "1.0.0", Nacos: srv.HTTPAddr, LogDir: logs, Args: []string{"--spring.application.name=" + service}})
		require.NoError(b, err)
		apps = append(apps, a)
	}
	args := []string{"--app.target=" + service}
	if ttl != "" {
		args = append(args, "--spring.cloud.loadbalancer.cache.ttl="+ttl)
	}
	consumer, err := fleet.Start(javaapps.Options{Dir: dir, Jar: "consumer.jar", Name: "consumer", Nacos: srv.HTTPAddr, LogDir: logs, Args: args})
	require.NoError(b, err)
	for _, a := range append(apps, consumer) {
		require.NoError(b, a.Ready(ctx), a.Tail())
	}
	url := "http://" + consumer.Addr

	reg, err := nacos.New(spec.NacosProvider{Name: "bench", Servers: []string{srv.HTTPAddr}, GRPCPort: srv.GRPCPort, API: srv.API,
		ContextPath: srv.ContextPath, Timeout: spec.Duration(5 * time.Second)}, nil)
	require.NoError(b, err)
	defer reg.Close()
	ref := spec.NacosRef{Provider: "bench", Namespace: "public", Group: "DEFAULT_GROUP", Service: service, Cluster: "DEFAULT"}

	// Both instances answer through the consumer before anything changes.
	seen := map[string]bool{}
	for len(seen) < 2 {
		backend, err := call(url)
		if err == nil {
			seen[backend] = true
		}
		require.NoError(b, ctx.Err(), "both instances answer through the consumer (seen %v, last error %v)", seen, err)
	}

	victim := apps[0]
	host, port, _ := net.SplitHostPort(victim.Addr)
	p, _ := strconv.Atoi(port)
	victimAddr := []providers.Addr{{IP: host, Port: p}}
	var (
		mu   sync.Mutex
		last time.Time // the last answer from the victim
		errs int
	)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			backend, err := call(url)
			mu.Lock()
			switch {
			case err != nil:
				errs++
			case backend == victim.Name:
				last = time.Now()
			}
			mu.Unlock()
		}
	})
	lastCall := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return last
	}
	// The cache keeps the list for at most its TTL (35 s by default) after
	// the push: watch well past that.
	watch := 35*time.Second + 10*time.Second
	if ttl != "" {
		d, err := time.ParseDuration(ttl)
		require.NoError(b, err)
		watch = d + 10*time.Second
	}
	var out []time.Duration
	for range trials {
		require.NoError(b, reg.SetEnabled(ctx, ref, victimAddr, false))
		disabled := time.Now()
		select {
		case <-time.After(watch):
		case <-ctx.Done():
		}
		require.NoError(b, ctx.Err())
		out = append(out, max(lastCall().Sub(disabled), 0))
		require.NoError(b, reg.SetEnabled(ctx, ref, victimAddr, true))
		enabled := time.Now()
		for !lastCall().After(enabled) {
			require.NoError(b, ctx.Err(), "the enabled instance is called again")
			time.Sleep(50 * time.Millisecond)
		}
	}
	close(stop)
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	require.Zero(b, errs, "no call through the consumer failed")
	return out
}

// call sends one POST /echo through the consumer and returns the instance
// that answered.
func call(url string) (string, error) {
	resp, err := http.Post(url+"/echo", "text/plain", strings.NewReader("x"))
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s", resp.Status)
	}
	return resp.Header.Get("X-Backend"), nil
}
