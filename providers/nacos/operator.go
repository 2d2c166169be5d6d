package nacos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// operator is a small client of the Nacos operator HTTP API (the
// SDK has no maintainer API). It logs in when credentials are set, keeps
// the token until about 90% of its tokenTtl, and logs in again once when a
// request is refused with 401/403. The token travels as the accessToken
// query parameter, the one place both r-nacos and Nacos accept it
// (docs/nacos-servers.md); errors never quote the URL, so it never appears
// in one.
type operator struct {
	scheme      string   // http or https ("": http)
	servers     []string // host:port, tried in order on connection errors
	contextPath string
	api         string // "v1" or "v3"
	user        string
	pass        spec.Secret
	hc          *http.Client
	now         func() time.Time

	mu       sync.Mutex
	token    string
	tokenExp time.Time
}

// instanceJSON is an instance as the operator API returns it.
type instanceJSON struct {
	IP          string            `json:"ip"`
	Port        int               `json:"port"`
	ClusterName string            `json:"clusterName"`
	Weight      float64           `json:"weight"`
	Healthy     bool              `json:"healthy"`
	Enabled     bool              `json:"enabled"`
	Ephemeral   bool              `json:"ephemeral"`
	Metadata    map[string]string `json:"metadata"`
}

// list reads every instance of the service in ref's cluster, disabled ones
// included: v3 GET /v3/admin/ns/instance/list, v1 GET
// /v1/ns/catalog/instances (the only reads that show disabled instances,
// docs/nacos-servers.md). A service that does not exist has no instances, but
// only when the server says so (see unknownAnswer): any other 404, a 5xx or
// no answer fails the read, so that a registry that cannot be read is never
// taken for an empty one.
func (o *operator) list(ctx context.Context, ref spec.NacosRef) ([]providers.RegistryInstance, error) {
	q := url.Values{
		"namespaceId": {ref.Namespace},
		"groupName":   {ref.Group},
		"serviceName": {ref.Service},
		"clusterName": {ref.Cluster},
	}
	path := "/v3/admin/ns/instance/list"
	if o.api == "v1" {
		path = "/v1/ns/catalog/instances"
		q.Set("serviceName", ref.Group+"@@"+ref.Service)
		q.Set("pageNo", "1")
		q.Set("pageSize", "10000")
	}
	body, status, err := o.do(ctx, http.MethodGet, path, q)
	if status == http.StatusNotFound && unknownAnswer(body) {
		return []providers.RegistryInstance{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing instances of %s: %w", ref, err)
	}
	var raw []instanceJSON
	if o.api == "v1" {
		var page struct {
			List []instanceJSON `json:"list"`
		}
		err = json.Unmarshal(body, &page)
		raw = page.List
	} else {
		raw, err = v3Data[[]instanceJSON](body)
	}
	if err != nil {
		return nil, fmt.Errorf("listing instances of %s: decoding the answer: %w", ref, err)
	}
	out := make([]providers.RegistryInstance, 0, len(raw))
	for _, in := range raw {
		if in.ClusterName != ref.Cluster {
			continue
		}
		out = append(out, toInstance(in))
	}
	return out, nil
}

// detail reads one instance with GET /v1/ns/instance (v1 only). r-nacos
// leaves disabled instances out of its catalog list but shows them here
// (docs/nacos-servers.md); found is false when the server does not know it.
func (o *operator) detail(ctx context.Context, ref spec.NacosRef, a providers.Addr) (in providers.RegistryInstance, found bool, err error) {
	q := url.Values{
		"namespaceId": {ref.Namespace},
		"serviceName": {ref.Group + "@@" + ref.Service},
		"groupName":   {ref.Group},
		"clusterName": {ref.Cluster},
		"ip":          {a.IP},
		"port":        {strconv.Itoa(a.Port)},
	}
	body, status, err := o.do(ctx, http.MethodGet, "/v1/ns/instance", q)
	switch {
	case (status == http.StatusNotFound || status == http.StatusBadRequest) && unknownAnswer(body),
		status == http.StatusInternalServerError && strings.TrimSpace(string(body)) == rnacosUnknownInstance:
		// The server answered that it does not know the instance.
		return in, false, nil
	case err != nil:
		return in, false, fmt.Errorf("reading %s:%d of %s: %w", a.IP, a.Port, ref, err)
	}
	var raw instanceJSON
	if err := json.Unmarshal(body, &raw); err != nil {
		return in, false, fmt.Errorf("reading %s:%d of %s: decoding the answer: %w", a.IP, a.Port, ref, err)
	}
	if raw.ClusterName == "" {
		raw.ClusterName = ref.Cluster
	}
	return toInstance(raw), true, nil
}

// unknownRE matches the answers in which a Nacos server says that a
// service, cluster or instance does not exist:
//   - Nacos 3, admin list: 404 {"code":30000,"data":"service G@@S is not
//     found!"}, or "cluster C is not found!" (docs/nacos-servers.md,
//     internal/nacostest TestFactUnknownServiceAndInstanceAnswers);
//   - Nacos 2.x, GET /v1/ns/instance: 404 "no matched ip found!", "no ips
//     found for cluster C in service S" (InstanceOperatorClientImpl.
//     getInstance, https://github.com/alibaba/nacos), and "no service S
//     found!" for a service it does not know (UNVERIFIED on a real 2.x).
var unknownRE = regexp.MustCompile(`is not found!|no matched ip found!|no ips found for cluster |no service \S+ found!`)

// rnacosUnknownInstance is r-nacos's whole answer (500) to GET
// /v1/ns/instance for an instance it does not know (get_instance in
// src/openapi/naming/instance.rs, https://github.com/nacos-group/r-nacos;
// seen by TestFactUnknownServiceAndInstanceAnswers). Its catalog list
// answers an unknown service with an empty list.
const rnacosUnknownInstance = "error"

// unknownAnswer reports whether an error body is the server's own "does
// not exist" answer, as opposed to a proxy's or a wrong path's 404.
func unknownAnswer(body []byte) bool { return unknownRE.Match(body) }

func toInstance(in instanceJSON) providers.RegistryInstance {
	return providers.RegistryInstance{
		IP: in.IP, Port: in.Port, Cluster: in.ClusterName, Enabled: in.Enabled, Healthy: in.Healthy,
		Weight: in.Weight, Ephemeral: in.Ephemeral, Metadata: in.Metadata,
	}
}

// update sets enabled on one instance with the full PUT, which on Nacos
// replaces the instance's whole operator override (Nacos
// HttpRequestInstanceBuilder: omitted fields reset), so weight and enabled
// are always sent.
//
// Metadata is never sent. Nacos merges the override's metadata over the
// app's own (InstanceUtil.updateInstanceMetadata) and keeps the override
// across an app's restart within 60 s, so metadata sent here would pin the
// version an instance ran when it was disabled and hide the version it is
// redeployed with. Without the parameter the new override holds no
// metadata, which also clears what an earlier update pinned
// (InstanceOperatorClientImpl.buildMetadata copies the request's metadata:
// none on v1, HttpRequestInstanceBuilder.setMetadata; an empty map on v3,
// InstanceUtil.buildInstance parses the blank parameter). r-nacos keeps the
// stored metadata as it is (openapi/naming/instance.rs:
// InstanceUpdateTag.metadata is false). docs/nacos-servers.md records both.
func (o *operator) update(ctx context.Context, ref spec.NacosRef, in providers.RegistryInstance, enabled bool) error {
	q := url.Values{
		"namespaceId": {ref.Namespace},
		"groupName":   {ref.Group},
		"serviceName": {ref.Service},
		"clusterName": {in.Cluster},
		"ip":          {in.IP},
		"port":        {strconv.Itoa(in.Port)},
		"ephemeral":   {strconv.FormatBool(in.Ephemeral)},
		"weight":      {strconv.FormatFloat(in.Weight, 'f', -1, 64)},
		"enabled":     {strconv.FormatBool(enabled)},
	}
	path := "/v3/admin/ns/instance"
	if o.api == "v1" {
		path = "/v1/ns/instance"
		q.Set("serviceName", ref.Group+"@@"+ref.Service)
	}
	body, _, err := o.do(ctx, http.MethodPut, path, q)
	if err == nil && o.api == "v3" {
		_, err = v3Data[json.RawMessage](body)
	}
	if err != nil {
		return fmt.Errorf("setting enabled=%t on %s:%d of %s: %w", enabled, in.IP, in.Port, ref, err)
	}
	return nil
}

// v3Data unwraps {code, message, data}; a code other than 0 is permanent.
func v3Data[T any](body []byte) (T, error) {
	var r struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
		Data    T      `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return r.Data, err
	}
	if r.Code != 0 {
		return r.Data, providers.Permanentf("InvalidRequest", "nacos answered code %d: %s", r.Code, r.Message)
	}
	return r.Data, nil
}

// do sends one request with its parameters in the query, and returns the
// body of a 2xx answer. Other answers are errors (with their body, for the
// caller to recognise a "does not exist"): 401/403
// after one fresh login, 410 and other 4xx are permanent; connection
// problems and 5xx are transient. The status is returned too.
func (o *operator) do(ctx context.Context, method, path string, q url.Values) ([]byte, int, error) {
	for attempt := 0; ; attempt++ {
		token, err := o.login(ctx, attempt > 0)
		if err != nil {
			return nil, 0, err
		}
		body, status, err := o.send(ctx, method, path, q, token)
		if err != nil {
			return nil, 0, err
		}
		switch {
		case status >= 200 && status < 300:
			return body, status, nil
		case (status == http.StatusUnauthorized || status == http.StatusForbidden) && attempt == 0 && o.user != "":
			continue // the token may have expired or been revoked
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return body, status, providers.Permanentf("PermissionDenied", "%s %s: %d %s", method, path, status, excerpt(body))
		case status == http.StatusGone:
			return body, status, providers.Permanentf("APIVersionMismatch",
				"%s %s: %d %s (the server refuses the %s API; check the provider's api setting)", method, path, status, excerpt(body), o.api)
		case status >= 400 && status < 500:
			return body, status, providers.Permanentf("InvalidRequest", "%s %s: %d %s", method, path, status, excerpt(body))
		default:
			return body, status, fmt.Errorf("%s %s: %d %s", method, path, status, excerpt(body))
		}
	}
}

// send tries each server in turn until one answers.
func (o *operator) send(ctx context.Context, method, path string, q url.Values, token string) ([]byte, int, error) {
	var errs []error
	for _, server := range o.servers {
		query := q
		if token != "" {
			query = maps.Clone(q)
			query.Set("accessToken", token)
		}
		u := o.base(server) + path + "?" + query.Encode()
		req, err := http.NewRequestWithContext(ctx, method, u, nil)
		if err != nil {
			return nil, 0, fmt.Errorf("%s %s: %w", method, path, err)
		}
		resp, err := o.hc.Do(req)
		if err != nil {
			// A url.Error quotes the URL, which holds the token: keep only
			// the cause.
			var ue *url.Error
			if errors.As(err, &ue) {
				err = fmt.Errorf("%s: %w", server, ue.Err)
			}
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
		_ = resp.Body.Close()
		if err != nil {
			errs = append(errs, err)
			continue
		}
		return body, resp.StatusCode, nil
	}
	return nil, 0, fmt.Errorf("%s %s: %w", method, path, errors.Join(errs...))
}

// base is the URL of a server's API root.
func (o *operator) base(server string) string {
	scheme := o.scheme
	if scheme == "" {
		scheme = "http"
	}
	return scheme + "://" + server + o.contextPath
}

// login returns a token, logging in when there is none, it is past 90% of
// its lifetime, or fresh is set. It returns "" when auth is off.
func (o *operator) login(ctx context.Context, fresh bool) (string, error) {
	if o.user == "" {
		return "", nil
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if !fresh && o.token != "" && o.now().Before(o.tokenExp) {
		return o.token, nil
	}
	path := "/v3/auth/user/login"
	if o.api == "v1" {
		path = "/v1/auth/users/login"
	}
	form := url.Values{"username": {o.user}, "password": {o.pass.Reveal()}}
	var errs []error
	for _, server := range o.servers {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.base(server)+path, strings.NewReader(form.Encode()))
		if err != nil {
			return "", fmt.Errorf("logging in to nacos: %w", err)
		}
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		resp, err := o.hc.Do(req)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		_ = resp.Body.Close()
		switch {
		case err != nil:
			errs = append(errs, err)
			continue
		case resp.StatusCode >= 500:
			errs = append(errs, fmt.Errorf("%d %s", resp.StatusCode, excerpt(body)))
			continue
		case resp.StatusCode != http.StatusOK:
			return "", providers.Permanentf("AuthenticationFailed", "logging in to nacos as %s: %d %s", o.user, resp.StatusCode, excerpt(body))
		}
		var r struct {
			AccessToken string  `json:"accessToken"`
			TokenTTL    float64 `json:"tokenTtl"` // seconds
		}
		if err := json.Unmarshal(body, &r); err != nil || r.AccessToken == "" {
			return "", providers.Permanentf("AuthenticationFailed", "logging in to nacos as %s: the answer has no accessToken", o.user)
		}
		o.token = r.AccessToken
		o.tokenExp = o.now().Add(time.Duration(r.TokenTTL * 0.9 * float64(time.Second)))
		return o.token, nil
	}
	return "", fmt.Errorf("logging in to nacos: %w", errors.Join(errs...))
}

// excerpt is the start of an error body, for messages.
func excerpt(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}
