package reliability_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/spec"
)

// deployMode is how the deploy system answers the next deploys.
type deployMode int

const (
	deployOK   deployMode = iota
	deployFail            // the job ends failed (a migration that does not apply)
	deployHang            // the job never ends
)

// deploySystem is the services' deploy hook (deploy.http): it speaks the
// protocol of providers/deploy and restarts the demo apps of the group at
// the version, in the test process, so that it counts every deploy that
// was started, whatever happens to the daemon. The apps come up
// unhealthy and turn healthy after warmUp (the verify phase takes that
// long), as an application that warms its caches does.
type deploySystem struct {
	ctx    context.Context
	url    string
	warmUp time.Duration
	stage  *stage.Stage    // set once the stage runs
	mon    *monitor        // told when a group is being deployed
	token  string          // "": no Authorization expected
	wg     *sync.WaitGroup // jobs
	close  func()          // stops the server and waits for the jobs

	mu     sync.Mutex
	mode   deployMode
	echo   string // appended to the output of every successful deploy
	jobs   []deploy.Status
	counts map[deployKey]int
	log    []providers.DeployRequest
}

// deployKey is one deploy: a group of a service at a version.
type deployKey struct {
	service string
	group   spec.Group
	version string
}

func (k deployKey) String() string {
	return fmt.Sprintf("%s group %s at %s", k.service, k.group, k.version)
}

func startDeploySystem(t testing.TB, warmUp time.Duration) *deploySystem {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	d := &deploySystem{ctx: ctx, warmUp: warmUp, wg: &wg, counts: map[deployKey]int{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /deploy", d.deploy)
	mux.HandleFunc("GET /deploy/jobs/{id}", d.job)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	d.close = func() {
		cancel()
		_ = srv.Close()
		<-done
		wg.Wait()
	}
	d.url = "http://" + ln.Addr().String() + "/deploy"
	return d
}

// setMode changes how the next deploys end.
func (d *deploySystem) setMode(m deployMode) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.mode = m
}

// setEcho makes every successful deploy print text in its output, as a
// hook script that echoes what it can read (its token, its environment).
func (d *deploySystem) setEcho(text string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.echo = text
}

// requests returns the deploys received, in order.
func (d *deploySystem) requests() []providers.DeployRequest {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]providers.DeployRequest(nil), d.log...)
}

// count returns how many deploys of a group at a version were started.
func (d *deploySystem) count(service string, g spec.Group, version string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.counts[deployKey{service, g, version}]
}

// repeated lists the deploys that were started more than once.
func (d *deploySystem) repeated() map[string]int {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := map[string]int{}
	for k, n := range d.counts {
		if n > 1 {
			out[k.String()] = n
		}
	}
	return out
}

func (d *deploySystem) deploy(w http.ResponseWriter, r *http.Request) {
	if d.token != "" && r.Header.Get("Authorization") != "Bearer "+d.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	var req providers.DeployRequest
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		http.Error(w, "decoding the deploy request: "+err.Error(), http.StatusBadRequest)
		return
	}
	// Invariant 3 is checked the moment the deploy arrives, and for as
	// long as it runs.
	d.mon.deployStarted(req.Service, req.Group)
	d.mu.Lock()
	d.counts[deployKey{req.Service, req.Group, req.Version}]++
	d.log = append(d.log, req)
	d.jobs = append(d.jobs, deploy.Status{Status: deploy.StatusRunning})
	id, mode := len(d.jobs), d.mode
	d.wg.Add(1)
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		st := d.run(req, mode)
		d.mu.Lock()
		d.jobs[id-1] = st
		d.mu.Unlock()
	}()
	loc := "/deploy/jobs/" + strconv.Itoa(id)
	w.Header().Set("Location", loc)
	w.WriteHeader(http.StatusAccepted)
	_ = json.NewEncoder(w).Encode(deploy.Status{Status: deploy.StatusRunning, StatusURL: loc})
}

// run performs one deploy job.
func (d *deploySystem) run(req providers.DeployRequest, mode deployMode) deploy.Status {
	switch mode {
	case deployFail:
		d.mon.deployEnded(req.Service, req.Group)
		return deploy.Status{Status: deploy.StatusFailed, Message: "database migration 0042 failed: relation already exists",
			Output: "applying migrations...\nERROR: relation \"orders_v2\" already exists\n"}
	case deployHang:
		<-d.ctx.Done() // the group stays "being deployed"
		return deploy.Status{Status: deploy.StatusRunning}
	}
	err := d.stage.RestartGroup(req.Service, req.Group, req.Version)
	var apps []string
	for _, in := range req.Instances {
		if a, ok := d.stage.Fleet().App(in.Addr()); ok {
			a.SetHealthy(false)
			apps = append(apps, in.Addr())
		}
	}
	d.mon.deployEnded(req.Service, req.Group)
	if err != nil {
		return deploy.Status{Status: deploy.StatusFailed, Message: err.Error()}
	}
	// Warm-up: the apps serve, their health check passes a little later.
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		select {
		case <-d.ctx.Done():
		case <-time.After(d.warmUp):
		}
		for _, addr := range apps {
			if a, ok := d.stage.Fleet().App(addr); ok {
				a.SetHealthy(true)
			}
		}
	}()
	d.mu.Lock()
	echo := d.echo
	d.mu.Unlock()
	return deploy.Status{Status: deploy.StatusSucceeded, Output: fmt.Sprintf("restarted %d apps of group %s at %s\n%s", len(apps), req.Group, req.Version, echo)}
}

func (d *deploySystem) job(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	d.mu.Lock()
	defer d.mu.Unlock()
	if err != nil || id < 1 || id > len(d.jobs) {
		http.NotFound(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(d.jobs[id-1])
}
