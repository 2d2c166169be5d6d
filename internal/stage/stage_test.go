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

func TestReleaseAllCommitsOneReleaseAndRevertCommitUndoesIt(t *testing.T) {
	s, err := stage.Start(t.Context(), stage.Options{Dir: t.TempDir(), Manual: true,
		Services: []stage.Service{{Name: "web", LB: spec.KindALB}, {Name: "api", LB: spec.KindSLB, Active: spec.GroupB}}})
	require.NoError(t, err)
	defer func() { require.NoError(t, s.Close()) }()
	seed, err := s.Head()
	require.NoError(t, err)
	load := func() *spec.Set {
		set, err := spec.Load(os.DirFS(s.RepoDir()), "services", s.Config())
		require.NoError(t, err)
		return set
	}
	before := load()

	_, err = s.ReleaseAll(map[string]string{"web": "2.0.0", "nope": "1.0.0"})
	require.ErrorContains(t, err, "releasing nope: no such service")
	head, err := s.Head()
	require.NoError(t, err)
	require.Equal(t, seed, head, "a refused release commits nothing")
	require.Equal(t, before, load(), "a refused release changes no file")

	rel, err := s.ReleaseAll(map[string]string{"web": "2.0.0", "api": "3.0.0"})
	require.NoError(t, err)
	subject, err := s.Subject(rel)
	require.NoError(t, err)
	require.Equal(t, "release web 2.0.0 to group B, api 3.0.0 to group A", subject)
	after := load()
	web, _ := after.Get("web")
	api, _ := after.Get("api")
	require.Equal(t, []any{spec.GroupB, "2.0.0", spec.GroupA, "3.0.0"}, []any{web.Active, web.Version, api.Active, api.Version})

	rev, err := s.RevertCommit(rel)
	require.NoError(t, err)
	subject, err = s.Subject(rev)
	require.NoError(t, err)
	require.Equal(t, `Revert "release web 2.0.0 to group B, api 3.0.0 to group A"`, subject)
	require.Equal(t, before, load())
}
