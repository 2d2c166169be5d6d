package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// Decide asks a running daemon to promote or abort the release of service
// paused for approval (POST /api/v1/services/{name}/promote|abort), for
// `tandem promote` and `tandem abort`. The token is the write token.
func Decide(ctx context.Context, serverURL string, token spec.Secret, service string, action spec.ApprovalDecision, req DecisionRequest) (ActionResult, error) {
	u, err := url.Parse(serverURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return ActionResult{}, fmt.Errorf("server URL %q: want http://host:port or https://host:port", redactURL(serverURL))
	}
	u = u.JoinPath("api/v1/services", service, string(action))
	body, err := json.Marshal(req)
	if err != nil {
		return ActionResult{}, err
	}
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return ActionResult{}, fmt.Errorf("%s %s: %w", action, service, err)
	}
	hr.Header.Set("Content-Type", "application/json")
	if !token.Empty() {
		hr.Header.Set("Authorization", "Bearer "+token.Reveal())
	}
	resp, err := http.DefaultClient.Do(hr)
	if err != nil {
		return ActionResult{}, fmt.Errorf("%s %s: %w", action, service, err)
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer))
	if resp.StatusCode != http.StatusAccepted {
		var e ErrorBody
		if dec.Decode(&e) != nil || e.Error == "" {
			e.Error = "no error message"
		}
		return ActionResult{}, fmt.Errorf("%s %s at %s: %s: %s", action, service, u.Redacted(), resp.Status, e.Error)
	}
	var res ActionResult
	if err := dec.Decode(&res); err != nil {
		return ActionResult{}, fmt.Errorf("%s %s at %s: decoding the answer: %w", action, service, u.Redacted(), err)
	}
	return res, nil
}

// approvalNote is what `tandem status` says about a release at the
// approval gate: paused since when, until when, and how to end it; or
// who decided.
func approvalNote(s reconcile.Status, now time.Time) string {
	t := s.Transition
	if n := stepPauseNote(s, now); n != "" {
		return n
	}
	if t == nil || t.Approval == nil {
		return ""
	}
	a := t.Approval
	if d := a.Decision; d != nil {
		return fmt.Sprintf("%s: %s %s at the approval gate by %s at %s", s.Service, t.Version, pastTense(d.Action), d.By, d.At.UTC().Format(time.RFC3339))
	}
	since := a.Since.UTC().Format(time.RFC3339)
	if !now.IsZero() {
		since += fmt.Sprintf(" (%s ago)", now.Sub(a.Since).Round(time.Second))
	}
	until := "until someone decides"
	if !a.Deadline.IsZero() {
		until = fmt.Sprintf("until %s, then %s", a.Deadline.UTC().Format(time.RFC3339), a.OnTimeout)
	}
	return fmt.Sprintf("%s: PAUSED for approval since %s, %s: %s %s to group %s (transition %s). Promote or abort: tandem promote|abort %s, the dashboard, the API, or the chat message's links",
		s.Service, since, until, t.Kind, t.Version, t.To, t.ID, s.Service)
}

// stepPauseNote is what `tandem status` says about a release paused at a
// manual rollout step (pause: manual).
func stepPauseNote(s reconcile.Status, now time.Time) string {
	t := s.Transition
	a, step := t.OpenPause()
	if a == nil || step == 0 {
		return ""
	}
	since := a.Since.UTC().Format(time.RFC3339)
	if !now.IsZero() {
		since += fmt.Sprintf(" (%s ago)", now.Sub(a.Since).Round(time.Second))
	}
	return fmt.Sprintf("%s: PAUSED at step %d (share %d%%) for approval since %s, until someone decides: %s %s to group %s (transition %s). "+
		"Promote (next step) or abort (all traffic back to group %s): tandem promote|abort %s, the dashboard, the API, or the chat message's links",
		s.Service, step, t.Rollout.Current().Share, since, t.Kind, t.Version, t.To, t.ID, t.From, s.Service)
}

func pastTense(a spec.ApprovalDecision) string {
	if a == spec.ApprovalPromote {
		return "promoted"
	}
	return "aborted"
}
