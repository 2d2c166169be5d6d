package stage_test

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/spec"
)

func TestSmoke(t *testing.T) {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, err := stage.Start(t.Context(), stage.Options{Dir: t.TempDir(), Log: log,
		Services: []stage.Service{{Name: "web", LB: spec.KindHAProxy, Nacos: true}}})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	defer func() {
		for _, e := range s.Events() {
			t.Log(e.Time.Format("15:04:05.000"), e.Reason, e.Phase, e.Duration, e.Message)
		}
	}()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	head, err := s.Head()
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, "web", head)
	require.NoError(t, err)
	g, err := s.StartTraffic(ctx, s.URL("web"), 100, 10)
	require.NoError(t, err)
	g2, err := s.StartTraffic(ctx, s.ConsumerURL("web"), 50, 5)
	require.NoError(t, err)
	start := time.Now()
	rev, err := s.Release(ctx, "web", "1.1.0")
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, "web", rev)
	require.NoError(t, err)
	t.Log("release took", time.Since(start))
	start = time.Now()
	rev, err = s.Revert(ctx, "web")
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, "web", rev)
	require.NoError(t, err)
	t.Log("revert took", time.Since(start))
	t.Log(g.Stop())
	t.Log(g2.Stop())
	t.Log(len(s.Deploys()))
}
