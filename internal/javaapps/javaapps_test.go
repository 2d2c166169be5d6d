package javaapps_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/javaapps"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/probe"
	"github.com/tandemhq/tandem/spec"
)

// The spring-boot presets against the running Spring Boot 3.5 provider:
// health UP, the version from /actuator/info's build.version, a slow
// request counted in flight by Micrometer and no longer once it answered,
// and the tomcat preset, whose gauges this app does not export, named as
// missing with the candidates the app does export.
func TestSpringBootPresetsReadTheRunningProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	addr, in := startProvider(ctx, t, "p1")
	svc := &spec.Service{Name: "java", Health: spec.Health{Preset: spec.PresetSpringBoot},
		Drain: spec.Drain{Evidence: &spec.DrainEvidence{Preset: spec.PresetSpringBoot}}}
	svc.Default()
	prober := probe.New(nil, nil)

	require.Equal(t, providers.ProbeResult{Healthy: true, Version: "2.7.1"}, prober.Probe(ctx, svc, in))

	ev, err := prober.Evidence(ctx, svc, in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{}, ev, "the scrape does not count itself")

	answered := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/slow?ms=3000", "text/plain", strings.NewReader("x"))
		if err == nil {
			err = resp.Body.Close()
		}
		answered <- err
	}()
	require.Eventually(t, func() bool {
		ev, err := prober.Evidence(ctx, svc, in)
		return err == nil && ev.InFlight == 1
	}, 10*time.Second, 50*time.Millisecond, "the slow request is in flight")
	require.NoError(t, <-answered)
	ev, err = prober.Evidence(ctx, svc, in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{}, ev, "nothing in flight once it answered")

	tomcat := &spec.Service{Name: "java", Drain: spec.Drain{Evidence: &spec.DrainEvidence{Preset: spec.PresetTomcat}}}
	tomcat.Default()
	_, err = prober.Evidence(ctx, tomcat, in)
	require.True(t, providers.IsPermanent(err), "%v", err)
	require.ErrorContains(t, err, "/actuator/prometheus answers but has none of the in-flight series tomcat_threads_busy_threads; "+
		"candidates it exports: ")
	require.ErrorContains(t, err, "http_server_requests_active_seconds_count")
}

// The tomcat preset against the running provider started with Tomcat's
// MBean registry on (server.tomcat.mbeanregistry.enabled=true, without
// which Spring Boot exports no tomcat_threads_* gauges): the busy threads
// less the scrape's own, 1 while a slow request is served, 0 after.
func TestTomcatPresetReadsTheRunningProvider(t *testing.T) {
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	addr, in := startProvider(ctx, t, "t1", "--server.tomcat.mbeanregistry.enabled=true")
	svc := &spec.Service{Name: "java", Drain: spec.Drain{Evidence: &spec.DrainEvidence{Preset: spec.PresetTomcat}}}
	svc.Default()
	prober := probe.New(nil, nil)

	ev, err := prober.Evidence(ctx, svc, in)
	require.NoError(t, err)
	require.Equal(t, providers.Evidence{}, ev, "the scrape does not count itself")

	answered := make(chan error, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/slow?ms=3000", "text/plain", strings.NewReader("x"))
		if err == nil {
			err = resp.Body.Close()
		}
		answered <- err
	}()
	require.Eventually(t, func() bool {
		ev, err := prober.Evidence(ctx, svc, in)
		return err == nil && ev.InFlight == 1
	}, 10*time.Second, 50*time.Millisecond, "the slow request holds a busy thread")
	require.NoError(t, <-answered)
	require.Eventually(t, func() bool {
		ev, err := prober.Evidence(ctx, svc, in)
		return err == nil && ev.InFlight == 0
	}, 10*time.Second, 50*time.Millisecond, "no busy thread once it answered")
}

// startProvider starts e2e/java's provider as instance name of group A at
// version 2.7.1, with more Spring properties args, and waits until it is
// ready; it returns its address and the instance that names it.
func startProvider(ctx context.Context, t *testing.T, name string, args ...string) (string, spec.Instance) {
	t.Helper()
	dir := javaapps.Require(t)
	fleet := javaapps.NewFleet()
	t.Cleanup(func() { require.NoError(t, fleet.Close()) })
	app, err := fleet.Start(javaapps.Options{Dir: dir, Jar: "provider.jar", Name: name, Group: "A", Version: "2.7.1", LogDir: t.TempDir(), Args: args})
	require.NoError(t, err)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("provider log:\n%s", app.Tail())
		}
	})
	require.NoError(t, app.Ready(ctx))
	host, port, err := net.SplitHostPort(app.Addr)
	require.NoError(t, err)
	p, err := strconv.Atoi(port)
	require.NoError(t, err)
	return app.Addr, spec.Instance{IP: host, Port: p, ID: name}
}
