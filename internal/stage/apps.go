package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/internal/javaapps"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// drainJitter spreads the WebSocket closes of a drain signal, so that the
// clients do not all reconnect at once.
const drainJitter = 200 * time.Millisecond

// instances are the apps of every service by group, as spec instances
// (the instance id is the app's name: the HAProxy server name and the
// Alibaba server id).
type instances map[string]map[spec.Group][]spec.Instance

// startApps starts the apps of every service on free loopback ports: demo
// apps, or Java providers (all at once, then waiting until each answers).
func (s *Stage) startApps(ctx context.Context) (instances, error) {
	out := instances{}
	var javaApps []*javaapps.App
	for _, svc := range s.opts.Services {
		out[svc.Name] = map[spec.Group][]spec.Instance{}
		for _, g := range []spec.Group{spec.GroupA, spec.GroupB} {
			for i := range svc.PerGroup {
				name := fmt.Sprintf("%s-%s%d", svc.Name, strings.ToLower(string(g)), i+1)
				if svc.Java {
					a, err := s.startJava(svc, g, name)
					if err != nil {
						return nil, err
					}
					javaApps = append(javaApps, a)
					host, port, _ := net.SplitHostPort(a.Addr)
					p, _ := strconv.Atoi(port)
					out[svc.Name][g] = append(out[svc.Name][g], spec.Instance{IP: host, Port: p, ID: name})
					continue
				}
				o := demoapp.Options{
					Name: name, Version: svc.Version,
					Group: string(g), Listen: "127.0.0.1:0", DrainJitter: drainJitter,
					Faults: s.opts.Faults,
				}
				if svc.Nacos {
					o.Register = s.nacos.register(svc.Name, g)
				}
				a, err := s.fleet.Start(o)
				if err != nil {
					return nil, err
				}
				out[svc.Name][g] = append(out[svc.Name][g], a.Instance())
			}
		}
	}
	errs := make([]error, len(javaApps))
	var wg sync.WaitGroup
	for i, a := range javaApps {
		wg.Go(func() { errs[i] = a.Ready(ctx) })
	}
	wg.Wait()
	return out, errors.Join(errs...)
}

// startJava starts one Java provider of svc, registered in Nacos under the
// service's name with metadata version and group.
func (s *Stage) startJava(svc Service, g spec.Group, name string) (*javaapps.App, error) {
	o := javaapps.Options{Dir: s.opts.JavaDir, Jar: "provider.jar", Name: name, Group: string(g), Version: svc.Version,
		LogDir: s.opts.Dir, Args: []string{"--spring.application.name=" + svc.Name}}
	if svc.Nacos {
		o.Nacos = s.opts.Nacos.Addr
	}
	return s.java.Start(o)
}

// RestartGroup restarts the apps of a service's group in place at version,
// whether or not the group serves: what a deploy does, and what the naive
// baseline does to the serving group.
func (s *Stage) RestartGroup(service string, g spec.Group, version string) error {
	svc, ok := s.set.Get(service)
	if !ok {
		return fmt.Errorf("restarting %s group %s: no such service", service, g)
	}
	addrs := make([]string, 0, len(svc.Instances(g)))
	for _, in := range svc.Instances(g) {
		addrs = append(addrs, in.Addr())
	}
	return s.restart(addrs, version)
}

// restart redeploys the apps at addrs, demo or Java, at version.
func (s *Stage) restart(addrs []string, version string) error {
	if len(addrs) > 0 && s.java.Has(addrs[0]) {
		return s.java.Restart(s.ctx, addrs, version)
	}
	return s.fleet.Restart(addrs, version)
}

// deploySystem is the http deployer's counterpart: the demo fleet's deploy
// endpoint, recording every request it receives.
type deploySystem struct {
	url string

	mu   sync.Mutex
	reqs []providers.DeployRequest
}

func (s *Stage) startDeploySystem() (*deploySystem, error) {
	d := &deploySystem{}
	jobs := demoapp.NewDeployJobs(func(addr string) bool { return s.fleet.Has(addr) || s.java.Has(addr) }, s.restart, s.log)
	s.closers = append(s.closers, func() error { jobs.Wait(); return nil })
	fleet := jobs.Handler()
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/deploy" {
			body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
			if err != nil {
				http.Error(w, "reading the deploy request: "+err.Error(), http.StatusBadRequest)
				return
			}
			var req providers.DeployRequest
			if json.Unmarshal(body, &req) == nil {
				d.mu.Lock()
				d.reqs = append(d.reqs, req)
				d.mu.Unlock()
			}
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		fleet.ServeHTTP(w, r)
	})
	addr, err := s.serve(h)
	if err != nil {
		return nil, fmt.Errorf("serving the deploy system: %w", err)
	}
	d.url = "http://" + addr + "/deploy"
	return d, nil
}

// deployURL is the deploy system the specs name.
func (s *Stage) deployURL() string {
	if s.opts.DeployURL != "" {
		return s.opts.DeployURL
	}
	return s.deploy.url
}

func (d *deploySystem) requests() []providers.DeployRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]providers.DeployRequest(nil), d.reqs...)
}
