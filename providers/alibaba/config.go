// Package alibaba holds what the ALB and SLB providers share: building the
// official SDK's configuration from a provider instance of tandem.yaml,
// classifying OpenAPI errors, and the retry loop around every call.
package alibaba

import (
	"fmt"
	"net"
	"time"

	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/aliyun/credentials-go/credentials"

	"github.com/tandemhq/tandem/spec"
)

// Config builds the SDK configuration of one provider instance; kind (alb or
// slb) only names the instance in error messages.
//
// Credentials come from the environment variables the instance names
// (accessKeyIdEnv, accessKeySecretEnv, securityTokenEnv), or, when it names
// none, from the Alibaba default credential chain of credentials-go
// (environment, OIDC/RRSA, CLI profile, credentials file, ECS RAM role,
// credentials URI). The secret is held only by the credential object: the
// returned Config's AccessKeyId/AccessKeySecret fields stay empty, because
// Config.String prints them.
//
// The SDK has no default timeouts (0 means unlimited) and no retries
// (RetryOptions nil); the timeouts are set here and retries are Retry's job.
func Config(kind string, p spec.AlibabaProvider) (*openapi.Config, error) {
	field := fmt.Sprintf("providers.%s[%s]", kind, p.Name)
	cred, err := credential(field, p)
	if err != nil {
		return nil, err
	}
	cfg := &openapi.Config{
		Credential:     cred,
		RegionId:       tea.String(p.Region),
		ConnectTimeout: tea.Int(millis(p.ConnectTimeout.D(), 5*time.Second)),
		ReadTimeout:    tea.Int(millis(p.ReadTimeout.D(), 10*time.Second)),
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
	if p.Endpoint != "" {
		cfg.Endpoint = tea.String(p.Endpoint)
		// tea honours HTTP_PROXY even for loopback addresses and only skips the
		// proxy for hosts listed verbatim in NO_PROXY (tea/dara/core.go
		// getHttpProxy). A loopback endpoint (the emulator) is never proxied.
		if loopback(p.Endpoint) {
			cfg.NoProxy = tea.String(p.Endpoint)
		}
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

func millis(d, def time.Duration) int {
	if d <= 0 {
		d = def
	}
	return int(d / time.Millisecond)
}

func loopback(endpoint string) bool {
	host, _, err := net.SplitHostPort(endpoint)
	if err != nil {
		host = endpoint
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
