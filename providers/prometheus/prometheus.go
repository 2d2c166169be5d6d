// Package prometheus evaluates the PromQL queries of analysis gates against
// a Prometheus server through the official Go client
// (github.com/prometheus/client_golang/api/prometheus/v1, the HTTP API
// documented at https://prometheus.io/docs/prometheus/latest/querying/api/).
package prometheus

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/api"
	v1 "github.com/prometheus/client_golang/api/prometheus/v1"
	"github.com/prometheus/common/model"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/spec"
)

// Querier is one configured Prometheus server.
type Querier struct {
	name      string
	api       v1.API
	timeout   time.Duration
	transport *http.Transport
}

var _ providers.MetricsQuerier = (*Querier)(nil)

// New builds the client of cfg; the bearer token is read from the
// environment now (spec.SecretFromEnv), as every credential of tandem.yaml.
func New(cfg spec.PrometheusProvider) (*Querier, error) {
	base := fmt.Sprintf("providers.prometheus[%s]", cfg.Name)
	tlsCfg, err := spec.TLSFiles{CAFile: cfg.CAFile}.ClientConfig(base)
	if err != nil {
		return nil, err
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.TLSClientConfig = tlsCfg
	var rt http.RoundTripper = transport
	if cfg.TokenEnv != "" {
		token, err := spec.SecretFromEnv(base+".tokenEnv", cfg.TokenEnv)
		if err != nil {
			return nil, err
		}
		rt = bearer{token: token, next: transport}
	}
	client, err := api.NewClient(api.Config{Address: cfg.URL, RoundTripper: rt})
	if err != nil {
		return nil, fmt.Errorf("%s.url: %w", base, err)
	}
	return &Querier{name: cfg.Name, api: v1.NewAPI(client), timeout: cfg.Timeout.D(), transport: transport}, nil
}

// Close closes the idle connections to the server.
func (q *Querier) Close() error {
	q.transport.CloseIdleConnections()
	return nil
}

type bearer struct {
	token spec.Secret
	next  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.token.Reveal())
	return b.next.RoundTrip(r)
}

// Query evaluates query at the current time. A scalar is one series; a
// vector gives the number of its series and, when there is exactly one,
// its value; anything else (a range vector, a string) is an error.
func (q *Querier) Query(ctx context.Context, query string) (providers.MetricValue, error) {
	ctx, cancel := context.WithTimeout(ctx, q.timeout)
	defer cancel()
	val, _, _, err := q.api.Query(ctx, query, time.Now(), v1.WithTimeout(q.timeout))
	if err != nil {
		return providers.MetricValue{}, fmt.Errorf("prometheus %s: %s", q.name, describe(err))
	}
	switch v := val.(type) {
	case *model.Scalar:
		return providers.MetricValue{Value: float64(v.Value), Series: 1}, nil
	case model.Vector:
		out := providers.MetricValue{Series: len(v)}
		if len(v) == 1 {
			out.Value = float64(v[0].Value)
		}
		return out, nil
	case nil:
		return providers.MetricValue{}, fmt.Errorf("prometheus %s: empty answer", q.name)
	}
	return providers.MetricValue{}, fmt.Errorf("prometheus %s: the query gives a %s, not a number (write an instant query, e.g. rate(x[1m]) rather than x[1m])", q.name, val.Type())
}

// describe shortens the client's errors to what an operator acts on: the
// server's own message for a refused query, the cause for a failed request.
func describe(err error) string {
	var apiErr *v1.Error
	if errors.As(err, &apiErr) {
		msg := apiErr.Msg
		if apiErr.Detail != "" && !strings.Contains(msg, apiErr.Detail) {
			msg += ": " + apiErr.Detail
		}
		return fmt.Sprintf("%s: %s", apiErr.Type, msg)
	}
	return err.Error()
}
