package emulator

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/internal/cmdflag"
)

// Main is `tandem emulate alibaba`: it serves the emulated ALB and SLB
// OpenAPI until ctx ends. It returns the process exit code: 0 after a
// clean stop or --help, 2 for bad flags or arguments, 1 when loading the
// state or serving failed.
//
// The resources come from the --state file (the State type as JSON), e.g.
//
//	{"albServerGroups": [{"id": "sgp-push", "servers": [
//	   {"id": "i-a1", "ip": "127.0.0.1", "port": 9001, "weight": 100},
//	   {"id": "i-b1", "ip": "127.0.0.1", "port": 9002, "weight": 0}],
//	   "healthCheck": {"healthCheckPath": "/healthz", "healthyThreshold": 2}}],
//	 "albListeners": [{"id": "lsn-push", "port": 80, "serverGroup": "sgp-push"}],
//	 "albRules": [{"id": "rule-preview", "listener": "lsn-push", "priority": 1,
//	   "conditions": [{"type": "Header", "key": "X-Preview", "values": ["on"]}],
//	   "serverGroups": [{"serverGroup": "sgp-push"}]}],
//	 "slbLoadBalancers": [{"id": "lb-gw", "servers": [],
//	   "vServerGroups": [{"id": "rsp-gw", "servers": [...]}],
//	   "listeners": [{"port": 80, "vServerGroup": "rsp-gw"}]}]}
//
// The LB health-checks every weighted server on its group's (ALB) or
// listener's (SLB) settings unless --health-checks=false; the data plane
// routes to the servers it reports healthy (see health.go). A tandem.yaml
// provider points at it with endpoint 127.0.0.1:PORT,
// protocol http and the --key (or the variables of --key-env) as its
// accessKeyIdEnv/accessKeySecretEnv.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "tandem emulate alibaba"
	fset := flag.NewFlagSet(name, flag.ContinueOnError)
	fset.Usage = func() {
		cmdflag.PrintUsage(fset, "", "Serve the emulated ALB and SLB OpenAPI (and, with --frontend, their data plane) until interrupted.")
	}
	listen := fset.String("listen", "127.0.0.1:8099", "`host:port` of the OpenAPI endpoint (point the SDK's endpoint here, protocol http)")
	statePath := fset.String("state", "", "state `file` (JSON): loaded at start when it exists, rewritten after every change")
	region := fset.String("region", "cn-hangzhou", "region of every emulated resource")
	jobDelay := fset.Duration("job-delay", time.Second, "how long an ALB asynchronous job stays Processing")
	slbBusy := fset.Duration("slb-busy", 0, "how long an SLB load balancer stays locked after a change (BackendServer.configuring)")
	throttle := fset.Float64("throttle-rate", 0, "share of API calls refused with Throttling.User (0..1)")
	errRate := fset.Float64("error-rate", 0, "share of API calls answered ServiceUnavailable, HTTP 503 (0..1)")
	latency := fset.Duration("latency", 0, "latency added to every API call")
	seed := fset.Uint64("seed", 0, "random seed for the faults (0: random)")
	drain := fset.Duration("drain", 10*time.Second, "connection drain timeout of the data-plane frontends")
	control := fset.String("control", "", "`host:port` of the test-control endpoint (off when empty): POST /block and /unblock ?server=IP:PORT cut the LB off from a server and back, GET /health?target=alb:SERVERGROUP|slb:LB[/VSERVERGROUP] shows the LB's health view")
	checks := fset.Bool("health-checks", true, "health-check the servers as the LB does (HTTP or TCP to each weighted server; the data plane routes to healthy servers)")
	unit := fset.Duration("health-check-unit", time.Second, "how long one second of HealthCheckInterval/HealthCheckTimeout lasts (scale down for tests)")
	var keys []Key
	fset.Func("key", "accepted test AccessKey as `ID:SECRET` (repeatable; at least one)", func(s string) error {
		id, secret, ok := strings.Cut(s, ":")
		if !ok || id == "" || secret == "" {
			return errors.New("must be ID:SECRET")
		}
		keys = append(keys, Key{ID: id, Secret: secret})
		return nil
	})
	fset.Func("key-env", "accepted test AccessKey read from the environment variables `ID_VAR:SECRET_VAR` (repeatable; keeps the secret out of the process list)", func(s string) error {
		idVar, secretVar, ok := strings.Cut(s, ":")
		if !ok || idVar == "" || secretVar == "" {
			return errors.New("must be ID_VAR:SECRET_VAR")
		}
		id, secret := os.Getenv(idVar), os.Getenv(secretVar)
		if id == "" || secret == "" {
			return fmt.Errorf("environment variables %s and %s must both be set", idVar, secretVar)
		}
		keys = append(keys, Key{ID: id, Secret: secret})
		return nil
	})
	type frontend struct {
		addr     string
		target   Target
		listener string // an ALB listener: its rules apply
	}
	var frontends []frontend
	fset.Func("frontend", "data-plane listener as `ADDR=alb:SERVERGROUP`, `ADDR=alb-listener:LISTENER` (forwarding rules apply) or `ADDR=slb:LB[/VSERVERGROUP]` (repeatable)", func(s string) error {
		addr, spec, ok := strings.Cut(s, "=")
		if !ok {
			return errors.New("must be ADDR=alb:SERVERGROUP, ADDR=alb-listener:LISTENER or ADDR=slb:LB[/VSERVERGROUP]")
		}
		if l, ok := strings.CutPrefix(spec, "alb-listener:"); ok && l != "" {
			frontends = append(frontends, frontend{addr: addr, listener: l})
			return nil
		}
		t, err := parseTarget(spec)
		if err != nil {
			return err
		}
		frontends = append(frontends, frontend{addr: addr, target: t})
		return nil
	})
	if code, done := cmdflag.Parse(fset, args, stdout, stderr); done {
		return code
	}
	bad := func(format string, a ...any) int { return cmdflag.Usagef(stderr, name, format, a...) }
	fail := func(err error) int {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return cmdflag.ExitFail
	}
	switch {
	case fset.NArg() > 0:
		return bad("unexpected arguments: %s", strings.Join(fset.Args(), " "))
	case len(keys) == 0:
		return bad("--key ID:SECRET or --key-env ID_VAR:SECRET_VAR is required: the emulator refuses unsigned and unknown callers")
	case *throttle < 0 || *throttle > 1 || *errRate < 0 || *errRate > 1 || *throttle+*errRate > 1:
		return bad("--throttle-rate and --error-rate must be in 0..1 and add up to at most 1")
	case *unit <= 0:
		return bad("--health-check-unit must be positive")
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	e := New(Options{
		Keys: keys, Region: *region, JobDelay: *jobDelay, SLBBusy: *slbBusy, Seed: *seed, HealthCheckUnit: *unit,
		Faults: Faults{ThrottleRate: *throttle, ErrorRate: *errRate, Latency: *latency},
		Log:    log,
	})
	if *statePath != "" {
		s, err := LoadState(*statePath)
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return fail(err)
		default:
			if err := e.Seed(s); err != nil {
				return fail(fmt.Errorf("%s: %w", *statePath, err))
			}
		}
		e.opts.StateFile = *statePath
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, len(frontends)+1)
	serve := func(name, addr string, run func(net.Listener) error) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s listening on http://%s\n", name, ln.Addr())
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(ln); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
		return nil
	}
	api := &http.Server{Handler: e, ReadHeaderTimeout: 10 * time.Second}
	ctl := &http.Server{Handler: e.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}
	err := serve("openapi", *listen, func(ln net.Listener) error {
		if err := api.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	if err == nil && *control != "" {
		err = serve("control", *control, func(ln net.Listener) error {
			if err := ctl.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		})
	}
	if *checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.RunHealthChecks(ctx)
		}()
	}
	for _, f := range frontends {
		if err != nil {
			break
		}
		fe, name := e.NewFrontend(f.target, *drain), "frontend "+f.target.String()
		if f.listener != "" {
			if fe, err = e.NewListenerFrontend(f.listener, *drain); err != nil {
				break
			}
			name = "frontend alb listener " + f.listener
		}
		err = serve(name, f.addr, func(ln net.Listener) error { return fe.Serve(ctx, ln) })
	}
	if err == nil {
		select {
		case <-ctx.Done():
		case err = <-errc:
		}
	}
	cancel()
	_ = api.Close()
	_ = ctl.Close()
	wg.Wait()
	if err != nil {
		return fail(err)
	}
	return cmdflag.ExitOK
}

// ControlHandler is the test-control endpoint of `tandem emulate alibaba
// --control` (no authentication: serve it on loopback only):
//
//	POST /block?server=IP:PORT    BlockServers (repeat server= for several)
//	POST /unblock?server=IP:PORT  UnblockServers
//	GET  /health?target=alb:SERVERGROUP|slb:LB[/VSERVERGROUP]
//	                              the LB's view: [{"id","ip","port","weight","status","reason"}]
func (e *Emulator) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	block := func(on bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			servers := r.URL.Query()["server"]
			for _, s := range servers {
				if _, _, err := net.SplitHostPort(s); err != nil {
					http.Error(w, fmt.Sprintf("server %q: must be IP:PORT", s), http.StatusBadRequest)
					return
				}
			}
			if len(servers) == 0 {
				http.Error(w, "server=IP:PORT is required", http.StatusBadRequest)
				return
			}
			if on {
				e.BlockServers(servers...)
			} else {
				e.UnblockServers(servers...)
			}
			w.WriteHeader(http.StatusNoContent)
		}
	}
	mux.HandleFunc("POST /block", block(true))
	mux.HandleFunc("POST /unblock", block(false))
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {
		t, err := parseTarget(r.URL.Query().Get("target"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		hs, err := e.Health(t)
		if err != nil {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		type entry struct {
			ID     string  `json:"id"`
			IP     string  `json:"ip"`
			Port   int     `json:"port"`
			Weight int     `json:"weight"`
			Status string  `json:"status"`
			Reason *Reason `json:"reason,omitempty"`
		}
		out := make([]entry, len(hs))
		for i, h := range hs {
			out[i] = entry{h.Server.ID, h.Server.IP, h.Server.Port, h.Server.Weight, h.Status, h.Reason}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(out)
	})
	return mux
}

func parseTarget(s string) (Target, error) {
	kind, rest, _ := strings.Cut(s, ":")
	switch {
	case kind == "alb" && rest != "":
		return Target{ServerGroup: rest}, nil
	case kind == "slb" && rest != "":
		lb, vg, _ := strings.Cut(rest, "/")
		return Target{LoadBalancer: lb, VServerGroup: vg}, nil
	}
	return Target{}, fmt.Errorf("target %q must be alb:SERVERGROUP or slb:LB[/VSERVERGROUP]", s)
}
