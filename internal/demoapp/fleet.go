package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
)

// Fleet runs demo app instances in-process, keyed by address, and restarts
// them at a new version. DeployHandler exposes that as a deploy system
// speaking providers/deploy's HTTP protocol: the demo's deploy hook.
type Fleet struct {
	ctx  context.Context
	log  *slog.Logger
	mu   sync.Mutex
	apps map[string]*App
	jobs *DeployJobs
	// faults are added to the Options.Faults of every app the fleet starts
	// (SetFault).
	faults map[string]Fault
}

// NewFleet returns an empty fleet whose apps and deploy jobs live at most
// as long as ctx.
func NewFleet(ctx context.Context, log *slog.Logger) *Fleet {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	f := &Fleet{ctx: ctx, log: log, apps: map[string]*App{}}
	f.jobs = NewDeployJobs(f.Has, f.Restart, log)
	return f
}

// Has reports whether an app of the fleet runs at addr.
func (f *Fleet) Has(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apps[addr] != nil
}

// Start starts an app (o.Log defaults to the fleet's logger; the fleet's
// faults, SetFault, are added to o.Faults).
func (f *Fleet) Start(o Options) (*App, error) {
	if o.Log == nil {
		o.Log = f.log
	}
	f.mu.Lock()
	if len(f.faults) > 0 {
		o.Faults = maps.Clone(o.Faults)
		if o.Faults == nil {
			o.Faults = map[string]Fault{}
		}
		maps.Copy(o.Faults, f.faults)
	}
	f.mu.Unlock()
	a, err := Start(f.ctx, o)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.apps[a.Addr()] = a
	return a, nil
}

// Stop stops the app at addr gracefully and returns the options it ran
// with, ready to start it again on the same address (also when its
// shutdown was cut short; zero Options when no app runs there).
func (f *Fleet) Stop(addr string) (Options, error) {
	f.mu.Lock()
	a, ok := f.apps[addr]
	delete(f.apps, addr)
	f.mu.Unlock()
	if !ok {
		return Options{}, fmt.Errorf("no demo app runs at %s", addr)
	}
	err := a.Stop()
	o := a.opts
	o.Listener, o.Listen = nil, addr
	return o, err
}

// Restart stops the apps at addrs (together, gracefully) and starts each
// again on its address at version: an in-place deploy.
func (f *Fleet) Restart(addrs []string, version string) error {
	opts := make([]Options, len(addrs))
	errs := make([]error, len(addrs))
	var wg sync.WaitGroup
	for i, addr := range addrs {
		wg.Go(func() { opts[i], errs[i] = f.Stop(addr) })
	}
	wg.Wait()
	for _, o := range opts {
		if o.Listen == "" {
			continue // it was not running
		}
		o.Version = version
		if _, err := f.Start(o); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("restarting demo apps: %w", err)
	}
	return nil
}

// SetFault makes the apps the fleet starts or deploys at version from now
// on misbehave as fault says (Options.Faults), over the faults of their
// options.
func (f *Fleet) SetFault(version string, fault Fault) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.faults == nil {
		f.faults = map[string]Fault{}
	}
	f.faults[version] = fault
}

// BreakEcho makes the apps the fleet deploys at version from now on answer
// /echo with 500 while their health checks pass: a bad build that only
// smoke tests or metrics can tell.
func (f *Fleet) BreakEcho(version string) {
	f.SetFault(version, Fault{Path: "/echo", Status: http.StatusInternalServerError})
}

// App returns the app running at addr.
func (f *Fleet) App(addr string) (*App, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.apps[addr]
	return a, ok
}

// Close waits for running deploy jobs, then stops every app.
func (f *Fleet) Close() error {
	f.jobs.Wait()
	f.mu.Lock()
	var addrs []string
	for addr := range f.apps {
		addrs = append(addrs, addr)
	}
	f.mu.Unlock()
	var errs []error
	for _, addr := range addrs {
		_, err := f.Stop(addr)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// DeployHandler serves the deploy protocol of providers/deploy for the
// fleet's apps (see DeployJobs).
func (f *Fleet) DeployHandler() http.Handler { return f.jobs.Handler() }

// DeployJobs is a deploy system speaking providers/deploy's HTTP protocol
// for apps that a restart function redeploys (the demo fleet's, the Java
// apps of the tests):
//
//	POST /deploy           a providers.DeployRequest; restarts its instances at its
//	                       version; 202 with Location /deploy/jobs/N
//	GET  /deploy/jobs/N    {"status": "running"|"succeeded"|"failed", "message", "output"}
//
// Instances that has does not know are refused with 422.
type DeployJobs struct {
	has     func(addr string) bool
	restart func(addrs []string, version string) error
	log     *slog.Logger

	mu   sync.Mutex
	jobs []deploy.Status // job i+1 is jobs[i]
	busy sync.WaitGroup
}

// NewDeployJobs returns a deploy system over has and restart.
func NewDeployJobs(has func(addr string) bool, restart func(addrs []string, version string) error, log *slog.Logger) *DeployJobs {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &DeployJobs{has: has, restart: restart, log: log}
}

// Handler serves the protocol.
func (j *DeployJobs) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /deploy", j.deploy)
	mux.HandleFunc("GET /deploy/jobs/{id}", j.job)
	return mux
}

// Wait waits for the running jobs.
func (j *DeployJobs) Wait() { j.busy.Wait() }

func (j *DeployJobs) deploy(w http.ResponseWriter, r *http.Request) {
	var req providers.DeployRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "decoding the deploy request: "+err.Error(), http.StatusBadRequest)
		return
	}
	addrs := make([]string, len(req.Instances))
	var unknown []string
	for i, in := range req.Instances {
		addrs[i] = in.Addr()
		if !j.has(addrs[i]) {
			unknown = append(unknown, addrs[i])
		}
	}
	switch {
	case req.Version == "" || len(addrs) == 0:
		http.Error(w, "the deploy request needs a version and instances", http.StatusUnprocessableEntity)
		return
	case len(unknown) > 0:
		http.Error(w, "no app runs at "+strings.Join(unknown, ", "), http.StatusUnprocessableEntity)
		return
	}
	j.mu.Lock()
	j.jobs = append(j.jobs, deploy.Status{Status: deploy.StatusRunning})
	id := len(j.jobs)
	j.busy.Add(1)
	j.mu.Unlock()
	go func() {
		defer j.busy.Done()
		st := deploy.Status{Status: deploy.StatusSucceeded,
			Output: fmt.Sprintf("restarted %s at %s\n", strings.Join(addrs, ", "), req.Version)}
		if err := j.restart(addrs, req.Version); err != nil {
			st = deploy.Status{Status: deploy.StatusFailed, Message: err.Error()}
		}
		j.log.Info("deploy finished", "target", req.Service, "group", req.Group, "version", req.Version, "status", st.Status)
		j.mu.Lock()
		j.jobs[id-1] = st
		j.mu.Unlock()
	}()
	loc := "/deploy/jobs/" + strconv.Itoa(id)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusAccepted, deploy.Status{Status: deploy.StatusRunning, StatusURL: loc})
}

func (j *DeployJobs) job(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	j.mu.Lock()
	defer j.mu.Unlock()
	if err != nil || id < 1 || id > len(j.jobs) {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, j.jobs[id-1])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
