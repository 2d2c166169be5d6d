package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/tandemhq/tandem/internal/egress"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// The HTTP deploy protocol. Tandem POSTs a JSON providers.DeployRequest
//
//	{"service": "push", "group": "B", "version": "3.3.0",
//	 "instances": [{"ip": "10.0.2.31", "port": 9000, "id": "i-bp1psb01"}], "revision": "9f3c..."}
//
// to deploy.http.url, with deploy.http.headers and, when deploy.http.tokenEnv
// is set, "Authorization: Bearer <token>". The deploy system answers 2xx
// (typically 202) and names a status URL in the Location header or in the
// body's "statusUrl" (relative URLs are resolved against deploy.http.url).
// Tandem GETs the status URL every pollInterval until the body's "status"
// is terminal; the whole deploy is bounded by deploy.timeout. A body that
// is already terminal and names no status URL finishes the deploy at once.
//
// A 4xx answer other than 408 and 429 is permanent; other answers and
// connection errors of the POST are retried by the reconciler (nothing was
// started), those of a poll are retried until the timeout; a connection
// that policy.network.deploy of tandem.yaml refuses (the deploy URL's host,
// a status URL elsewhere, or a name resolving to a refused address) is
// permanent. Proxy variables are not used. The token is sent
// to the status URL only when it is on the same scheme and host as the
// deploy URL.

// Status is the body of a deploy system's answers.
type Status struct {
	Status    string `json:"status"`              // running, succeeded or failed
	StatusURL string `json:"statusUrl,omitempty"` // where to poll (or the Location header)
	Message   string `json:"message,omitempty"`   // why it failed
	Output    string `json:"output,omitempty"`    // deploy log, kept in the events (truncated)
}

// Status values.
const (
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusFailed    = "failed"
)

// maxBody bounds what is read of an answer.
const maxBody = 1 << 20

// HTTP drives a deploy system over HTTP.
type HTTP struct {
	url          *url.URL
	headers      map[string]string
	token        spec.Secret
	pollInterval time.Duration
	timeout      time.Duration
	client       *http.Client
	log          *slog.Logger
}

var _ providers.Deployer = (*HTTP)(nil)

func newHTTP(h spec.HTTPDeploy, timeout time.Duration, pol Policy, log *slog.Logger) (*HTTP, error) {
	u, err := url.Parse(h.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("deploy.http.url: must be an http or https URL")
	}
	hosts := pol.Hosts
	if hosts == nil {
		hosts = spec.NewAllowlist("policy.network.deploy")
	}
	if err := hosts.CheckHost(u.Hostname()); err != nil {
		return nil, providers.Permanent("PolicyRefused", fmt.Errorf("deploy.http.url: %w", err))
	}
	token, err := spec.SecretFromEnv("deploy.http.tokenEnv", h.TokenEnv)
	if err != nil {
		return nil, err
	}
	poll := h.PollInterval.D()
	if poll <= 0 {
		poll = spec.DefaultPollInterval
	}
	return &HTTP{
		url: u, headers: h.Headers, token: token, pollInterval: poll, timeout: timeout,
		client: &http.Client{Transport: (&egress.Dialer{Allow: hosts, Resolver: pol.Resolver}).Transport()}, log: log,
	}, nil
}

// Deploy asks the deploy system for req and polls until it finished.
func (h *HTTP) Deploy(ctx context.Context, req providers.DeployRequest) (providers.DeployResult, error) {
	if h.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, h.timeout, errTimeout)
		defer cancel()
	}
	// The transport is this deployer's own: keep no connection past the deploy.
	defer h.client.CloseIdleConnections()
	log := h.log.With("target", req.Service, "revision", req.Revision, "action", "deploy")
	log.Info("deploy requested", "group", req.Group, "version", req.Version, "url", h.url.Redacted())
	start := time.Now()
	st, statusURL, err := h.start(ctx, req)
	if err == nil {
		st, err = h.poll(ctx, req, st, statusURL)
	}
	res := providers.DeployResult{Output: st.Output}
	if len(res.Output) > maxOutput {
		res.Output = "[output truncated]\n" + res.Output[len(res.Output)-maxOutput:]
	}
	if err != nil {
		log.Warn("deploy failed", "group", req.Group, "version", req.Version, "duration", time.Since(start), "err", err)
		return res, err
	}
	log.Info("deploy finished", "group", req.Group, "version", req.Version, "duration", time.Since(start))
	return res, nil
}

// start POSTs the request and returns the first status and the URL to poll
// ("" when the answer is already terminal).
func (h *HTTP) start(ctx context.Context, req providers.DeployRequest) (Status, *url.URL, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return Status{}, nil, fmt.Errorf("%s: %w", describe(req), err)
	}
	resp, st, err := h.do(ctx, http.MethodPost, h.url, body)
	if err != nil {
		return st, nil, h.failure(ctx, req, "POST", h.url, err)
	}
	loc := resp.Header.Get("Location")
	if loc == "" {
		loc = st.StatusURL
	}
	if loc == "" {
		if terminal(st.Status) {
			return st, nil, nil
		}
		return st, nil, providers.Permanentf("DeployProtocol", "%s: POST %s: the answer names no status URL (Location header or statusUrl)", describe(req), h.url.Redacted())
	}
	statusURL, err := h.url.Parse(loc)
	if err != nil || (statusURL.Scheme != "http" && statusURL.Scheme != "https") {
		return st, nil, providers.Permanentf("DeployProtocol", "%s: POST %s: bad status URL %q", describe(req), h.url.Redacted(), loc)
	}
	return st, statusURL, nil
}

// poll GETs statusURL until the status is terminal.
func (h *HTTP) poll(ctx context.Context, req providers.DeployRequest, st Status, statusURL *url.URL) (Status, error) {
	var lastErr error
	for {
		switch st.Status {
		case StatusSucceeded:
			return st, nil
		case StatusFailed:
			return st, providers.Permanent("DeployFailed", fmt.Errorf("%s: the deploy system reported failure: %s%s", describe(req), st.Message, lastLines(st.Output)))
		case StatusRunning, "": // "": the POST answer need not carry a status
		default:
			return st, providers.Permanentf("DeployProtocol", "%s: unknown deploy status %q (want running, succeeded or failed)", describe(req), st.Status)
		}
		if statusURL == nil {
			return st, nil
		}
		t := time.NewTimer(h.pollInterval)
		select {
		case <-ctx.Done():
			t.Stop()
			err := context.Cause(ctx)
			if lastErr != nil {
				err = fmt.Errorf("%w (last poll: %w)", err, lastErr)
			}
			return st, h.failure(ctx, req, "GET", statusURL, err)
		case <-t.C:
		}
		_, next, err := h.do(ctx, http.MethodGet, statusURL, nil)
		var perm *providers.PermanentError
		switch {
		case errors.As(err, &perm):
			return st, h.failure(ctx, req, "GET", statusURL, err)
		case err != nil:
			if ctx.Err() == nil {
				lastErr = err // transient: poll again
			}
		case next.Status == "":
			return st, providers.Permanentf("DeployProtocol", "%s: GET %s: the answer has no status", describe(req), statusURL.Redacted())
		default:
			st, lastErr = next, nil
		}
	}
}

// do sends one request and decodes a Status from a 2xx answer. 4xx other
// than 408/429 are permanent.
func (h *HTTP) do(ctx context.Context, method string, u *url.URL, body []byte) (*http.Response, Status, error) {
	var st Status
	req, err := http.NewRequestWithContext(ctx, method, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, st, err
	}
	for k, v := range h.headers {
		req.Header.Set(k, v)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Accept", "application/json")
	if !h.token.Empty() && u.Scheme == h.url.Scheme && u.Host == h.url.Host {
		req.Header.Set("Authorization", "Bearer "+h.token.Reveal())
	}
	resp, err := h.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is named by the caller, redacted
		}
		if egress.IsRefused(err) {
			// policy.network.deploy: asking again will not change it.
			err = providers.Permanent("PolicyRefused", err)
		}
		return nil, st, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	if err != nil {
		return nil, st, fmt.Errorf("reading the answer: %w", err)
	}
	switch code := resp.StatusCode; {
	case code >= 200 && code < 300:
	case code >= 400 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests:
		return nil, st, providers.Permanentf("DeployRejected", "%s%s", resp.Status, snippet(data))
	default:
		return nil, st, fmt.Errorf("%s%s", resp.Status, snippet(data))
	}
	if len(bytes.TrimSpace(data)) > 0 {
		if err := json.Unmarshal(data, &st); err != nil {
			return nil, st, providers.Permanentf("DeployProtocol", "the answer is not a JSON status: %v", err)
		}
	}
	return resp, st, nil
}

// failure names the request in err, keeping its classification, and turns
// the deploy timeout into a permanent error.
func (h *HTTP) failure(ctx context.Context, req providers.DeployRequest, method string, u *url.URL, err error) error {
	err = fmt.Errorf("%s: %s %s: %w", describe(req), method, u.Redacted(), err)
	if timedOut(ctx) {
		return providers.Permanent("DeployTimeout", fmt.Errorf("%w (deploy.timeout %s)", err, h.timeout))
	}
	return err
}

func terminal(status string) bool { return status == StatusSucceeded || status == StatusFailed }

// snippet is the start of an error answer's body, for messages.
func snippet(data []byte) string {
	s := string(bytes.TrimSpace(data))
	if s == "" {
		return ""
	}
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return ": " + s
}
