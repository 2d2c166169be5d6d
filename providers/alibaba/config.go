// Package alibaba holds what the ALB and SLB providers share: building the
// official SDK's configuration from a provider instance of tandem.yaml,
// classifying OpenAPI errors, and the retry loop around every call.
package alibaba

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/aliyun/credentials-go/credentials"
	"golang.org/x/time/rate"

	"github.com/tandemhq/tandem/spec"
)

// Config builds the SDK configuration of one provider instance of kind alb
// or slb (the product of its endpoint).
//
// Credentials come from the environment variables the instance names
// (accessKeyIdEnv, accessKeySecretEnv, securityTokenEnv), or, when it names
// none, from the Alibaba default credential chain of credentials-go
// (environment, OIDC/RRSA, CLI profile, credentials file, ECS RAM role,
// credentials URI). The secret is held only by the credential object: the
// returned Config's AccessKeyId/AccessKeySecret fields stay empty, because
// Config.String prints them.
//
// HTTP goes through an HTTP client of the Config's own (Config.HttpClient)
// rather than the SDK's process-wide pool, whose shared http.Client the SDK
// mutates on every request (tea/dara core.go DoRequestWithCtx sets
// Timeout, a data race under concurrent calls). That client has the
// connect and read timeouts the SDK lacks by default (0 means unlimited),
// and takes proxies from the environment the Go way, which never proxies
// loopback addresses (tea would proxy them unless NO_PROXY names the exact
// host:port). The SDK does not retry (RetryOptions nil); Retry does.
//
// That HTTP client is also where the instance's API budget is kept (every
// request, retries included, waits for a token of rateLimit: a busy fleet
// makes the daemon slower, not failing), and where health reads are
// shared (see shareable): every SDK call of the instance goes through it.
//
// An SDK client must not be shared between goroutines: every call writes
// its Headers field (darabonba-openapi GetRpcHeaders). Build one per call
// from the returned Config, which is only read.
func Config(kind string, p spec.AlibabaProvider) (*openapi.Config, error) {
	field := fmt.Sprintf("providers.%s[%s]", kind, p.Name)
	cred, err := credential(field, p)
	if err != nil {
		return nil, err
	}
	cfg := &openapi.Config{
		Credential: cred,
		RegionId:   tea.String(p.Region),
		HttpClient: newHTTPClient(field, orDefault(p.ConnectTimeout.D(), spec.DefaultProviderTimeout), orDefault(p.ReadTimeout.D(), spec.DefaultReadTimeout), p.RateLimit),
	}
	if p.Protocol != "" {
		cfg.Protocol = tea.String(p.Protocol)
	}
	switch p.SignatureVersion {
	case "", "v3":
		// The SDK's default: ACS3-HMAC-SHA256 (darabonba-openapi DoRequest).
	case "v2":
		// Legacy RPC signature (HMAC-SHA1 in the query), darabonba-openapi DoRPCRequest.
		cfg.SignatureAlgorithm = tea.String("v2")
	default:
		return nil, fmt.Errorf("%s.signatureVersion: must be v3 or v2, got %q", field, p.SignatureVersion)
	}
	switch {
	case p.Endpoint != "":
		cfg.Endpoint = tea.String(p.Endpoint)
	case p.Network == spec.NetworkVPC:
		// The SDKs resolve <product>-vpc.<region>.aliyuncs.com for Network
		// "vpc" (darabonba-openapi utils GetEndpointRules), as the endpoint
		// pages list them: ALB https://help.aliyun.com/document_detail/2254821.html,
		// CLB https://www.alibabacloud.com/help/en/slb/classic-load-balancer/developer-reference/api-slb-2014-05-15-endpoint.
		// But the SLB SDK looks up its region map first (slb-20140515
		// client.go Init: EndpointMap), which sends about 44 regions to the
		// public slb.aliyuncs.com whatever the network; so the VPC endpoint
		// is named here, where the SDK would not find it.
		cfg.Network = tea.String(spec.NetworkVPC)
		cfg.Endpoint = tea.String(kind + "-vpc." + p.Region + ".aliyuncs.com")
	}
	return cfg, nil
}

func credential(field string, p spec.AlibabaProvider) (credentials.Credential, error) {
	if p.AccessKeyIDEnv == "" && p.AccessKeySecretEnv == "" {
		cred, err := credentials.NewCredential(nil)
		if err != nil {
			return nil, fmt.Errorf("%s: default credential chain: %w", field, err)
		}
		return cred, nil
	}
	if p.AccessKeyIDEnv == "" || p.AccessKeySecretEnv == "" {
		return nil, fmt.Errorf("%s: set both accessKeyIdEnv and accessKeySecretEnv, or neither to use the default credential chain", field)
	}
	id, err := spec.SecretFromEnv(field+".accessKeyIdEnv", p.AccessKeyIDEnv)
	if err != nil {
		return nil, err
	}
	secret, err := spec.SecretFromEnv(field+".accessKeySecretEnv", p.AccessKeySecretEnv)
	if err != nil {
		return nil, err
	}
	token, err := spec.SecretFromEnv(field+".securityTokenEnv", p.SecurityTokenEnv)
	if err != nil {
		return nil, err
	}
	c := &credentials.Config{
		Type:            tea.String("access_key"),
		AccessKeyId:     tea.String(id.Reveal()),
		AccessKeySecret: tea.String(secret.Reveal()),
	}
	if !token.Empty() {
		c.Type = tea.String("sts")
		c.SecurityToken = tea.String(token.Reveal())
	}
	cred, err := credentials.NewCredential(c)
	if err != nil {
		// credentials-go only rejects empty fields here; its message names
		// the field, never the value.
		return nil, fmt.Errorf("%s: credentials: %w", field, err)
	}
	return cred, nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// httpClient is the SDK's HTTP client hook (tea/dara HttpClient). The
// per-request transport the SDK builds is ignored: ours has the timeouts.
type httpClient struct {
	c      *http.Client
	field  string        // the provider instance, for errors
	limit  *rate.Limiter // nil: no budget
	shared *shared
}

func newHTTPClient(field string, connect, read time.Duration, limit spec.RateLimit) *httpClient {
	h := &httpClient{
		field:  field,
		shared: newShared(healthShareTTL),
		c: &http.Client{
			Timeout: connect + read,
			Transport: &http.Transport{
				Proxy:                 http.ProxyFromEnvironment,
				DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
				TLSHandshakeTimeout:   connect,
				ResponseHeaderTimeout: read,
				MaxIdleConnsPerHost:   16,
				IdleConnTimeout:       90 * time.Second,
				ForceAttemptHTTP2:     true,
			},
		},
	}
	if limit.CallsPerSecond > 0 {
		h.limit = rate.NewLimiter(rate.Limit(limit.CallsPerSecond), max(limit.Burst, 1))
	}
	return h
}

// Call sends one OpenAPI request: a health read that another goroutine of
// this instance is making, or made less than healthShareTTL ago and not
// before one of its writes finished, gets that answer; anything else waits
// for a token of the budget and goes out.
func (h *httpClient) Call(req *http.Request, _ *http.Transport) (*http.Response, error) {
	if key, ok := shareable(req); ok {
		return h.shared.do(req.Context(), key, func(ctx context.Context) (*http.Response, error) {
			return h.send(req.WithContext(ctx))
		})
	}
	if isWrite(req) {
		defer h.shared.wrote()
	}
	return h.send(req)
}

func (h *httpClient) send(req *http.Request) (*http.Response, error) {
	if h.limit != nil {
		if err := h.limit.Wait(req.Context()); err != nil {
			// The context ends before a token would come: the call is not
			// made; Retry sees a transient error.
			return nil, fmt.Errorf("%s: waiting for the API rate limit (rateLimit): %w", h.field, err)
		}
	}
	return h.c.Do(req)
}
