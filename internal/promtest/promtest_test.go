package promtest_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/promtest"
)

func TestAStartedServerScrapesItsTargets(t *testing.T) {
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = w.Write([]byte("# TYPE promtest_answer gauge\npromtest_answer 42\n"))
	}))
	t.Cleanup(app.Close)
	srv := promtest.Start(t, promtest.Options{Targets: []string{strings.TrimPrefix(app.URL, "http://")}})
	ctx := context.Background()
	v, err := srv.Version(ctx)
	require.NoError(t, err)
	t.Logf("prometheus %s at %s", v, srv.URL())
	require.NoError(t, srv.WaitScraped(ctx, 1, 30*time.Second))
	val, _, _, err := srv.API().Query(ctx, "promtest_answer", time.Now())
	require.NoError(t, err)
	vec, ok := val.(model.Vector)
	require.True(t, ok, "%T", val)
	require.Len(t, vec, 1)
	require.Equal(t, model.SampleValue(42), vec[0].Value)
}
