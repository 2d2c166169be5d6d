package prometheus_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/promtest"
	"github.com/tandemhq/tandem/providers/prometheus"
	"github.com/tandemhq/tandem/spec"
)

// TestQueriesAgainstARealPrometheus: the answers analysis judges, as
// Prometheus 2.42 gives them.
func TestQueriesAgainstARealPrometheus(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# TYPE q_answer gauge\nq_answer{k=\"a\"} 1\nq_answer{k=\"b\"} 2\n"))
	}))
	t.Cleanup(app.Close)
	srv := promtest.Start(t, promtest.Options{Targets: []string{strings.TrimPrefix(app.URL, "http://")}})
	ctx := context.Background()
	require.NoError(t, srv.WaitScraped(ctx, 1, 30*time.Second))
	q, err := prometheus.New(spec.PrometheusProvider{Name: "test", URL: srv.URL(), Timeout: spec.Duration(5 * time.Second)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })

	v, err := q.Query(ctx, "sum(q_answer)")
	require.NoError(t, err)
	require.Equal(t, 1, v.Series)
	require.Equal(t, 3.0, v.Value)
	v, err = q.Query(ctx, "scalar(sum(q_answer)) / 4")
	require.NoError(t, err)
	require.Equal(t, 0.75, v.Value)
	v, err = q.Query(ctx, "q_answer")
	require.NoError(t, err)
	require.Equal(t, 2, v.Series, "two series: the planner calls it inconclusive")
	v, err = q.Query(ctx, `q_answer{k="none"}`)
	require.NoError(t, err)
	require.Equal(t, 0, v.Series, "no data")
	_, err = q.Query(ctx, "q_answer[1m]")
	require.ErrorContains(t, err, "prometheus test: the query gives a matrix, not a number")
	_, err = q.Query(ctx, "sum(q_answer")
	require.ErrorContains(t, err, "prometheus test: bad_data: ")
}

func TestTheTokenIsSentAndAnUnreachableServerIsAnError(t *testing.T) {
	got := make(chan string, 1)
	fake := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case got <- r.Header.Get("Authorization"):
		default:
		}
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"success","data":{"resultType":"scalar","result":[1700000000,"0.5"]}}`))
	}))
	t.Cleanup(fake.Close)
	t.Setenv("TANDEM_TEST_PROM_TOKEN", "s3cret")
	q, err := prometheus.New(spec.PrometheusProvider{Name: "auth", URL: fake.URL, TokenEnv: "TANDEM_TEST_PROM_TOKEN", Timeout: spec.Duration(time.Second)})
	require.NoError(t, err)
	t.Cleanup(func() { _ = q.Close() })
	v, err := q.Query(context.Background(), "x")
	require.NoError(t, err)
	require.Equal(t, 0.5, v.Value)
	require.Equal(t, "Bearer s3cret", <-got)

	_, err = prometheus.New(spec.PrometheusProvider{Name: "auth", URL: fake.URL, TokenEnv: "TANDEM_TEST_PROM_UNSET"})
	require.ErrorContains(t, err, "TANDEM_TEST_PROM_UNSET")

	fake.Close()
	_, err = q.Query(context.Background(), "x")
	require.ErrorContains(t, err, "prometheus auth: ")
	require.NotContains(t, err.Error(), "s3cret")
}
