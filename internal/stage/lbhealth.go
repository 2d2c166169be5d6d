package stage

import (
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"sync"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
)

// LBCall is one weight change the emulated ALB received, with the health
// its own checks reported for every server of the group when the call
// arrived: the order of weight changes against the LB's health view.
type LBCall struct {
	Group   string            // server group id
	Weights map[string]int    // server id -> requested weight
	Health  map[string]string // server id -> Initial | Healthy | Unhealthy | Unused | Unavailable
}

// lbCalls records the ALB weight changes the emulator serves.
type lbCalls struct {
	mu    sync.Mutex
	calls []LBCall
}

// wrap returns a handler that records every UpdateServerGroupServersAttribute
// (that is not a dry run) before emu serves it.
func (c *lbCalls) wrap(emu *emulator.Emulator) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		params := url.Values{}
		for k, v := range r.URL.Query() {
			params[k] = v
		}
		if r.Body != nil {
			body, err := io.ReadAll(r.Body)
			if err == nil {
				r.Body = io.NopCloser(bytes.NewReader(body))
				if form, err := url.ParseQuery(string(body)); err == nil {
					for k, v := range form {
						params[k] = v
					}
				}
			}
		}
		action := r.Header.Get("x-acs-action")
		if action == "" {
			action = params.Get("Action")
		}
		if action == "UpdateServerGroupServersAttribute" && params.Get("DryRun") != "true" {
			c.record(emu, params)
		}
		emu.ServeHTTP(w, r)
	})
}

func (c *lbCalls) record(emu *emulator.Emulator, params url.Values) {
	call := LBCall{Group: params.Get("ServerGroupId"), Weights: map[string]int{}, Health: map[string]string{}}
	for i := 1; ; i++ {
		id := params.Get("Servers." + strconv.Itoa(i) + ".ServerId")
		if id == "" {
			break
		}
		call.Weights[id], _ = strconv.Atoi(params.Get("Servers." + strconv.Itoa(i) + ".Weight"))
	}
	hs, err := emu.Health(emulator.Target{ServerGroup: call.Group})
	if err != nil {
		return // an unknown group: the emulator answers the call with its error
	}
	for _, h := range hs {
		call.Health[h.Server.ID] = h.Status
	}
	c.mu.Lock()
	c.calls = append(c.calls, call)
	c.mu.Unlock()
}

// LBCalls returns the weight changes the emulated ALB received, in order.
func (s *Stage) LBCalls() []LBCall {
	if s.lbs == nil || s.lbs.alibaba == nil {
		return nil
	}
	c := s.lbs.alibaba.calls
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]LBCall(nil), c.calls...)
}
