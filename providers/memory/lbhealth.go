package memory

import (
	"context"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

func addrOf(be *providers.Backend) string { return spec.Instance{IP: be.IP, Port: be.Port}.Addr() }

// lbCheck is the modelled LB's health-check state of one backend of one
// binding.
type lbCheck struct {
	passes, fails int  // consecutive
	healthy, down bool // reached the healthy / unhealthy threshold
}

// ModelLBHealth makes the world's load balancers check their backends as
// ALB does (https://www.alibabacloud.com/help/en/slb/application-load-balancer/user-guide/alb-health-check):
// weight-0 backends are not checked (health unknown, status "Unused"); a
// backend that gets weight starts "initial" and becomes healthy after
// threshold consecutive passing checks, unhealthy after threshold
// consecutive failing ones. One read of a binding (Backends) is one check
// of each of its backends, so tests step the model by reconciling. A check
// passes when the app is healthy and the LB is not cut off from it
// (CutOffLB). Backends that carry weight now are taken to have passed
// their checks long ago. threshold 0 turns the model off: LB health then
// mirrors app health.
func (w *World) ModelLBHealth(threshold int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lbThreshold = threshold
	w.lbState = map[string]*lbCheck{}
	if threshold == 0 {
		w.syncHealthLocked()
		return
	}
	for key, m := range w.backends {
		for _, be := range m {
			if be.Weight > 0 {
				w.lbState[key+"|"+be.ID] = &lbCheck{healthy: true}
			}
			w.lbReportLocked(key, be)
		}
	}
}

// CutOffLB makes the LB's health checks of the instance at addr fail
// (CONNECT_TIMEOUT), as a security group that blocks the LB's health-check
// addresses would, while the app itself stays healthy to Tandem's probes.
func (w *World) CutOffLB(addr string, cut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.lbCut == nil {
		w.lbCut = map[string]bool{}
	}
	w.lbCut[addr] = cut
}

// ReportUncheckedAsUnknown makes the modelled LB report a backend it has
// not yet found healthy or unhealthy without health, as CLB does when a
// read of DescribeHealthStatus answers "unavailable" for a server that has
// just been given weight, instead of "initial".
func (w *World) ReportUncheckedAsUnknown(quiet bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.lbQuiet = quiet
}

// lbWeightLocked updates the model after a backend's weight changed from
// old: a backend taken to 0 is no longer checked, one raised from 0 starts
// its checks afresh.
func (w *World) lbWeightLocked(key string, be *providers.Backend, old int) {
	if w.lbThreshold == 0 || (old > 0) == (be.Weight > 0) {
		return
	}
	delete(w.lbState, key+"|"+be.ID)
	if be.Weight > 0 {
		w.lbState[key+"|"+be.ID] = &lbCheck{}
	}
	w.lbReportLocked(key, be)
}

// lbCheckLocked runs one health check of every weighted backend of a binding.
func (w *World) lbCheckLocked(key string, m map[string]*providers.Backend) {
	if w.lbThreshold == 0 {
		return
	}
	for _, be := range m {
		st := w.lbState[key+"|"+be.ID]
		if be.Weight > 0 && st != nil {
			addr := addrOf(be)
			app := w.apps[addr]
			if app != nil && app.Healthy && !w.lbCut[addr] {
				st.passes, st.fails = st.passes+1, 0
			} else {
				st.passes, st.fails = 0, st.fails+1
			}
			switch {
			case st.passes >= w.lbThreshold:
				st.healthy, st.down = true, false
			case st.fails >= w.lbThreshold:
				st.healthy, st.down = false, true
			}
		}
		w.lbReportLocked(key, be)
	}
}

// lbReportLocked sets the health the LB reports for a backend from the model.
func (w *World) lbReportLocked(key string, be *providers.Backend) {
	st := w.lbState[key+"|"+be.ID]
	be.Reason = ""
	switch {
	case be.Weight == 0 || st == nil:
		be.Health, be.Status = providers.HealthUnknown, "Unused"
	case st.healthy:
		be.Health, be.Status = providers.HealthHealthy, "Available"
	case st.down:
		be.Health, be.Status, be.Reason = providers.HealthUnhealthy, "Unhealthy", "RESPONSE_MISMATCH"
		if w.lbCut[addrOf(be)] {
			be.Reason = "CONNECT_TIMEOUT"
		}
	case w.lbQuiet:
		be.Health, be.Status = providers.HealthUnknown, "unavailable"
	default:
		be.Health, be.Status = providers.HealthInitial, "Initial"
	}
}

// SetSlowStart gives binding b's server group a slow start of d (ALB
// SlowStartConfig); 0 turns it off.
func (w *World) SetSlowStart(b spec.Binding, d time.Duration) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.slowStart == nil {
		w.slowStart = map[string]time.Duration{}
	}
	w.slowStart[b.Key()] = d
}

var _ providers.SlowStarter = lb{}

// SlowStart implements providers.SlowStarter.
func (l lb) SlowStart(_ context.Context, b spec.Binding) (time.Duration, error) {
	l.w.mu.Lock()
	defer l.w.mu.Unlock()
	if err := l.w.enter("slow-start"); err != nil {
		return 0, err
	}
	return l.w.slowStart[b.Key()], nil
}
