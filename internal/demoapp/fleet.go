package demoapp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
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
	jobs []deploy.Status // job i+1 is jobs[i]
	busy sync.WaitGroup  // deploy jobs
}

// NewFleet returns an empty fleet whose apps and deploy jobs live at most
// as long as ctx.
func NewFleet(ctx context.Context, log *slog.Logger) *Fleet {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fleet{ctx: ctx, log: log, apps: map[string]*App{}}
}

// Start starts an app (o.Log defaults to the fleet's logger).
func (f *Fleet) Start(o Options) (*App, error) {
	if o.Log == nil {
		o.Log = f.log
	}
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

// App returns the app running at addr.
func (f *Fleet) App(addr string) (*App, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.apps[addr]
	return a, ok
}

// Close waits for running deploy jobs, then stops every app.
func (f *Fleet) Close() error {
	f.busy.Wait()
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

// DeployHandler serves the deploy protocol of providers/deploy:
//
//	POST /deploy           a providers.DeployRequest; restarts its instances at its
//	                       version; 202 with Location /deploy/jobs/N
//	GET  /deploy/jobs/N    {"status": "running"|"succeeded"|"failed", "message", "output"}
//
// Instances that do not run in the fleet are refused with 422.
func (f *Fleet) DeployHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /deploy", f.deploy)
	mux.HandleFunc("GET /deploy/jobs/{id}", f.job)
	return mux
}

func (f *Fleet) deploy(w http.ResponseWriter, r *http.Request) {
	var req providers.DeployRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "decoding the deploy request: "+err.Error(), http.StatusBadRequest)
		return
	}
	addrs := make([]string, len(req.Instances))
	var unknown []string
	f.mu.Lock()
	for i, in := range req.Instances {
		addrs[i] = in.Addr()
		if f.apps[addrs[i]] == nil {
			unknown = append(unknown, addrs[i])
		}
	}
	f.mu.Unlock()
	switch {
	case req.Version == "" || len(addrs) == 0:
		http.Error(w, "the deploy request needs a version and instances", http.StatusUnprocessableEntity)
		return
	case len(unknown) > 0:
		http.Error(w, "no demo app runs at "+strings.Join(unknown, ", "), http.StatusUnprocessableEntity)
		return
	}
	f.mu.Lock()
	f.jobs = append(f.jobs, deploy.Status{Status: deploy.StatusRunning})
	id := len(f.jobs)
	f.busy.Add(1)
	f.mu.Unlock()
	go func() {
		defer f.busy.Done()
		st := deploy.Status{Status: deploy.StatusSucceeded,
			Output: fmt.Sprintf("restarted %s at %s\n", strings.Join(addrs, ", "), req.Version)}
		if err := f.Restart(addrs, req.Version); err != nil {
			st = deploy.Status{Status: deploy.StatusFailed, Message: err.Error()}
		}
		f.log.Info("demo deploy finished", "target", req.Service, "group", req.Group, "version", req.Version, "status", st.Status)
		f.mu.Lock()
		f.jobs[id-1] = st
		f.mu.Unlock()
	}()
	loc := "/deploy/jobs/" + strconv.Itoa(id)
	w.Header().Set("Location", loc)
	writeJSON(w, http.StatusAccepted, deploy.Status{Status: deploy.StatusRunning, StatusURL: loc})
}

func (f *Fleet) job(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	f.mu.Lock()
	defer f.mu.Unlock()
	if err != nil || id < 1 || id > len(f.jobs) {
		http.NotFound(w, r)
		return
	}
	writeJSON(w, http.StatusOK, f.jobs[id-1])
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
