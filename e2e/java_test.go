package e2e_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/haproxytest"
	"github.com/tandemhq/tandem/internal/javaapps"
	"github.com/tandemhq/tandem/internal/loadgen"
	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// The Java service's traffic: modest, so that four provider JVMs, the
// consumer's JVM and Nacos 3 share two cores with the rest.
const (
	javaService                  = "jweb"
	javaLBRate, javaLBClients    = 100, 20
	javaConsumerRate             = 30
	javaReleases                 = 2
	slowRequest                  = 5 * time.Second
	javaConsumerCache            = "1s"
	javaPropagation              = 3 * time.Second // the consumer's cache (1 s) and Nacos' push, with room
	javaLBName, javaConsumerName = "load balancer", "Spring Cloud consumer"
)

// What users of Tandem mostly run: e2e/java's Spring Boot provider,
// registered in the real Nacos 3 by Spring Cloud Alibaba, behind a real
// HAProxy and called by name through a Spring Cloud LoadBalancer consumer.
// Releases and reverts under load lose nothing, health and version are read
// with the spring-boot presets, and the first release's drain waits for a
// slow request that reached the old group directly (as one from a consumer
// with a stale list does): only Micrometer's gauge knows about it.
func TestJavaReleasesAndRevertsLoseNothing(t *testing.T) {
	haproxytest.SkipUnlessInstalled(t)
	dir := javaapps.Require(t)
	if err := nacostest.Installed(nacostest.KindNacos3); err != nil && os.Getenv(nacostest.RequireEnv) != "1" {
		t.Skip(err)
	}
	nacos := nacostest.Start(t, nacostest.KindNacos3, nacostest.Options{})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testkit.LogWriter{T: t}, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// The consumer's JVM starts while the stage starts the providers'.
	logs := t.TempDir()
	consumers := javaapps.NewFleet()
	t.Cleanup(func() { require.NoError(t, consumers.Close()) })
	consumer, err := consumers.Start(javaapps.Options{Dir: dir, Jar: "consumer.jar", Name: "consumer", Nacos: nacos.HTTPAddr, LogDir: logs,
		Args: []string{"--app.target=" + javaService, "--spring.cloud.loadbalancer.cache.ttl=" + javaConsumerCache}})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("consumer log:\n%s", consumer.Tail())
		}
	})
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), JavaDir: dir, Log: log,
		Services: []stage.Service{{Name: javaService, LB: spec.KindHAProxy, Nacos: true, VersionFromNacos: true, Java: true}},
		Nacos:    &stage.NacosServer{Name: "Nacos 3 (real)", Addr: nacos.HTTPAddr, GRPCPort: nacos.GRPCPort, API: nacos.API},
		Timing:   stage.Timing{Propagation: javaPropagation}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.NoError(t, consumer.Ready(ctx))
	consumerURL := "http://" + consumer.Addr
	require.NoError(t, answers(ctx, consumerURL), "the consumer reaches the provider through Nacos")

	head, err := s.Head()
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, javaService, head)
	require.NoError(t, err)
	viaLB, err := s.StartTraffic(ctx, s.URL(javaService), javaLBRate, javaLBClients)
	require.NoError(t, err)
	viaConsumer, err := s.StartLoad(ctx, loadgen.Config{URL: consumerURL, Rate: javaConsumerRate, Duration: time.Hour})
	require.NoError(t, err)

	revisions := []string{head}
	for i := 1; i <= javaReleases; i++ {
		version := fmt.Sprintf("1.%d.0", i)
		rev, err := s.Release(ctx, javaService, version)
		require.NoError(t, err)
		var slow <-chan slowResult
		if i == 1 {
			slow = slowRequestBeforeTheShift(t, ctx, s, rev)
		}
		_, err = s.WaitInSync(ctx, javaService, rev)
		require.NoError(t, err, "release %s", version)
		if slow != nil {
			requireDrainWaitedFor(t, s, rev, <-slow)
		}
		waitServed(t, ctx, viaLB, version)
		rev2, err := s.Revert(ctx, javaService)
		require.NoError(t, err)
		_, err = s.WaitInSync(ctx, javaService, rev2)
		require.NoError(t, err, "revert of %s", version)
		revisions = append(revisions, rev, rev2)
	}
	lb, java := viaLB.Stop(), viaConsumer.Stop()
	t.Logf("through the %s: %s", javaLBName, lb)
	t.Logf("through the %s: %s", javaConsumerName, java)
	requireUnnoticed(t, javaLBName, lb)
	requireEachVersionOnItsGroup(t, javaLBName, lb)
	require.Positive(t, java.Requests)
	require.Zero(t, java.Failed, "%s: failed requests: %s", javaConsumerName, java)
	require.True(t, java.Clean(), java.String())
	requireEachVersionOnItsGroup(t, javaConsumerName, java)
	require.Len(t, s.Deploys(), javaReleases, "one deploy per release, none for a revert")
	requireTransitionsSucceeded(t, ctx, s, javaService, revisions)
}

// answers waits (bounded) until url's POST /echo answers 200.
func answers(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var last string
	for {
		resp, err := http.Post(url+"/echo", "text/plain", strings.NewReader("hello"))
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = fmt.Sprintf("%s: %s", resp.Status, body)
		} else {
			last = err.Error()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s/echo does not answer 200 (last: %s): %w", url, last, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

type slowResult struct {
	answered time.Time
	err      error
}

// slowRequestBeforeTheShift sends POST /slow straight to an instance of the
// serving group A as soon as the release's transition enables group B,
// just before it shifts traffic: the request is still in flight when the
// drain of group A begins.
func slowRequestBeforeTheShift(t *testing.T, ctx context.Context, s *stage.Stage, rev string) <-chan slowResult {
	t.Helper()
	svc, ok := s.Service(javaService)
	require.True(t, ok)
	target := "http://" + svc.Instances(spec.GroupA)[0].Addr()
	out := make(chan slowResult, 1)
	go func() {
		res := slowResult{err: fmt.Errorf("the transition to %s never reached its enable phase", rev)}
		defer func() { out <- res }()
		for ctx.Err() == nil {
			st, ok := s.Daemon().Reconciler().Status(javaService)
			if tr := st.Transition; ok && tr != nil && tr.Revision == rev && tr.Phase == reconcile.PhaseEnable {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if ctx.Err() != nil {
			return
		}
		body := "slow-" + rev
		resp, err := http.Post(fmt.Sprintf("%s/slow?ms=%d", target, slowRequest.Milliseconds()), "text/plain", strings.NewReader(body))
		res = slowResult{answered: time.Now(), err: err}
		if err != nil {
			return
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		switch {
		case err != nil:
			res.err = err
		case resp.StatusCode != http.StatusOK || string(got) != body:
			res.err = fmt.Errorf("the slow request answered %s %q", resp.Status, got)
		}
	}()
	return out
}

// requireDrainWaitedFor asserts that the slow request succeeded, that it
// was still in flight when the shift completed, and that the drain of the
// old group ended only after it was answered.
func requireDrainWaitedFor(t *testing.T, s *stage.Stage, rev string, slow slowResult) {
	t.Helper()
	require.NoError(t, slow.err, "the slow request")
	var shifted, drained time.Time
	for _, e := range s.Events() {
		if e.Reason != reconcile.ReasonPhaseCompleted || e.Revision != rev {
			continue
		}
		switch e.Phase {
		case reconcile.PhaseShift:
			shifted = e.Time
		case reconcile.PhaseDrain:
			drained = e.Time
			t.Logf("drain of the release took %s (drain.propagation %s); the slow request was answered %s after the shift",
				e.Duration.Round(time.Millisecond), javaPropagation, slow.answered.Sub(shifted).Round(time.Millisecond))
		}
	}
	require.False(t, shifted.IsZero(), "the shift completed")
	require.True(t, shifted.Before(slow.answered), "the slow request was in flight at the shift")
	require.True(t, drained.After(slow.answered), "the drain ended after the slow request was answered (drained %s, answered %s)",
		drained.Format(time.StampMilli), slow.answered.Format(time.StampMilli))
}
