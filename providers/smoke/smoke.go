// Package smoke runs a service's gates.smoke against the instances of its
// target group before the group gets any traffic: each HTTP check on every
// instance, then the exec hook once.
//
// Requests go to the instance's IP (the check's port, else the instance
// port), only where policy.network.probe of tandem.yaml allows, like the
// health probes (spec.Allowlist); redirects are not followed, connections
// are not kept alive, each request is bounded by the check's timeout and at
// most maxBody bytes of an answer are read. The exec hook is built by
// deploy.Policy.Exec, so it obeys policy.hooks exactly as deploy.exec does.
package smoke

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/tandemhq/tandem/internal/egress"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/spec"
)

// maxBody bounds what is read of an answer to match it.
const maxBody = 1 << 20

// Runner implements providers.SmokeTester.
type Runner struct {
	client *http.Client
	hooks  deploy.Policy
	log    *slog.Logger
}

var _ providers.SmokeTester = (*Runner)(nil)

// New returns a Runner whose requests reach only what hosts allows
// (policy.network.probe; nil: every address but the refused ranges) and
// whose exec hook obeys hooks (policy.hooks).
func New(hosts *spec.Allowlist, hooks deploy.Policy, log *slog.Logger) *Runner {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner{client: egress.InstanceClient(hosts), hooks: hooks, log: log}
}

// Smoke runs svc's gates.smoke for req.
func (r *Runner) Smoke(ctx context.Context, svc *spec.Service, req providers.SmokeRequest) ([]providers.SmokeResult, error) {
	g := svc.Gates.Smoke
	if g == nil {
		return nil, nil
	}
	var hook *deploy.Exec
	if g.Exec != nil {
		var err error
		if hook, err = r.hooks.Exec("gates.smoke.exec", g.Exec.Command, g.Exec.Timeout.D(), r.log); err != nil {
			return nil, err
		}
	}
	res := make([]providers.SmokeResult, len(g.HTTP)*len(req.Instances))
	sem := make(chan struct{}, providers.SmokeParallel)
	var wg sync.WaitGroup
	for j, in := range req.Instances {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			for i, c := range g.HTTP {
				res[i*len(req.Instances)+j] = r.check(ctx, c, in)
			}
		})
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("smoke tests of %s group %s: %w", req.Service, req.Group, context.Cause(ctx))
	}
	if hook != nil {
		res = append(res, r.exec(ctx, hook, req))
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("smoke tests of %s group %s: %w", req.Service, req.Group, context.Cause(ctx))
		}
	}
	failed := 0
	for _, x := range res {
		if !x.Passed {
			failed++
		}
	}
	r.log.Info("smoke tests run", "target", req.Service, "revision", req.Revision, "group", req.Group,
		"version", req.Version, "checks", len(res), "failed", failed)
	return res, nil
}

// check sends one request to one instance and judges the answer.
func (r *Runner) check(ctx context.Context, c spec.SmokeHTTPCheck, in spec.Instance) providers.SmokeResult {
	res := providers.SmokeResult{Check: c.Name, Instance: in.Addr()}
	port := in.Port
	if c.Port != 0 {
		port = c.Port
	}
	target := c.Scheme + "://" + net.JoinHostPort(in.IP, strconv.Itoa(port)) + c.Path
	what := c.Method + " " + target
	ctx, cancel := context.WithTimeout(ctx, c.Timeout.D())
	defer cancel()
	var body io.Reader
	if c.Body != "" {
		body = strings.NewReader(c.Body)
	}
	req, err := http.NewRequestWithContext(ctx, c.Method, target, body)
	if err != nil {
		res.Error = fmt.Sprintf("%s: %v", what, err)
		return res
	}
	for k, v := range c.Headers {
		req.Header.Set(k, v)
	}
	resp, err := r.client.Do(req)
	if err != nil {
		var uerr *url.Error
		if errors.As(err, &uerr) {
			err = uerr.Err // the URL is named here already
		}
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("no answer within %s", c.Timeout)
		}
		res.Error = fmt.Sprintf("%s: %v", what, err)
		return res
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxBody))
	res.Status, res.Body = resp.StatusCode, Excerpt(data, false)
	if err != nil {
		res.Error = fmt.Sprintf("%s: reading the answer: %v", what, err)
		return res
	}
	res.Error = judge(c.Expect, resp.StatusCode, data)
	if res.Error != "" {
		res.Error = fmt.Sprintf("%s: %s", what, res.Error)
	}
	res.Passed = res.Error == ""
	return res
}

// judge says why an answer does not meet the expectation, "" when it does.
func judge(e spec.SmokeExpect, status int, body []byte) string {
	var why []string
	if !e.StatusOK(status) {
		why = append(why, fmt.Sprintf("status %d", status))
	}
	if e.BodyContains != "" && !bytes.Contains(body, []byte(e.BodyContains)) {
		why = append(why, fmt.Sprintf("the body does not contain %q", e.BodyContains))
	}
	if e.BodyMatches != "" {
		// Compiled once validated; an error cannot happen here.
		if re, err := regexp.Compile(e.BodyMatches); err != nil || !re.Match(body) {
			why = append(why, fmt.Sprintf("the body does not match /%s/", e.BodyMatches))
		}
	}
	if len(why) == 0 {
		return ""
	}
	return strings.Join(why, ", ") + " (want " + e.Describe() + ")"
}

// exec runs the hook with the group in its environment.
func (r *Runner) exec(ctx context.Context, hook *deploy.Exec, req providers.SmokeRequest) providers.SmokeResult {
	addrs := make([]string, len(req.Instances))
	for i, in := range req.Instances {
		addrs[i] = in.Addr()
	}
	out, err := hook.Run(ctx, fmt.Sprintf("smoke tests of %s group %s at %s", req.Service, req.Group, req.Version),
		"TANDEM_SERVICE="+req.Service,
		"TANDEM_GROUP="+string(req.Group),
		"TANDEM_VERSION="+req.Version,
		"TANDEM_INSTANCES="+strings.Join(addrs, ","),
	)
	res := providers.SmokeResult{Check: "exec", Passed: err == nil, Body: Excerpt([]byte(out), true)}
	if err != nil {
		res.Error = err.Error()
	}
	return res
}

// Excerpt returns at most providers.MaxSmokeExcerpt bytes of data as valid
// UTF-8: its start, or its end when tail is set (a command's last words).
func Excerpt(data []byte, tail bool) string {
	const marker = "…"
	if len(data) <= providers.MaxSmokeExcerpt {
		return strings.ToValidUTF8(string(data), "\uFFFD")
	}
	n := providers.MaxSmokeExcerpt - len(marker)
	if tail {
		cut := data[len(data)-n:]
		for len(cut) > 0 && !utf8.RuneStart(cut[0]) {
			cut = cut[1:]
		}
		return marker + strings.ToValidUTF8(string(cut), "\uFFFD")
	}
	for n > 0 && !utf8.RuneStart(data[n]) {
		n-- // cut before the rune that would be split
	}
	cut := data[:n]
	return strings.ToValidUTF8(string(cut), "\uFFFD") + marker
}
