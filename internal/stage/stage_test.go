package stage_test

import (
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/daemon"
	"github.com/tandemhq/tandem/internal/nacostest"
	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m, append(nacostest.IgnoreSDKGoroutines(),
		goleak.IgnoreTopFunction("github.com/fsnotify/fsnotify.(*inotify).readEvents"))...)
}

func TestStartRefusesBadOptionsNamingWhat(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		o    stage.Options
		want string
	}{
		{"a missing directory is refused", stage.Options{Dir: dir + "/nope", Services: []stage.Service{{Name: "web", LB: "haproxy"}}}, "must be an existing directory"},
		{"no services are refused", stage.Options{Dir: dir}, "no services"},
		{"a bad name is refused", stage.Options{Dir: dir, Services: []stage.Service{{Name: "Web", LB: "haproxy"}}}, `service "Web": the name`},
		{"a duplicate is refused", stage.Options{Dir: dir, Services: []stage.Service{{Name: "web", LB: "alb"}, {Name: "web", LB: "alb"}}}, "web is listed twice"},
		{"an unknown LB is refused", stage.Options{Dir: dir, Services: []stage.Service{{Name: "web", LB: "nginx"}}}, `LB must be haproxy, alb, slb or empty, got "nginx"`},
		{"an unreachable service is refused", stage.Options{Dir: dir, Services: []stage.Service{{Name: "web"}}}, "neither a load balancer nor Nacos"},
		{"nacos versions without nacos are refused", stage.Options{Dir: dir, Services: []stage.Service{{Name: "web", LB: "alb", VersionFromNacos: true}}}, "VersionFromNacos needs Nacos"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := stage.Start(t.Context(), tc.o)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

// The demo's shape: a gateway behind the SLB emulator and a service that
// users reach only through Nacos; a release and its revert change which
// group answers on both.
func TestAStageOfSLBAndNacosOnlyServicesReleasesAndReverts(t *testing.T) {
	ctx := t.Context()
	s, err := stage.Start(ctx, stage.Options{Dir: t.TempDir(), Services: []stage.Service{
		{Name: "gateway", LB: spec.KindSLB},
		{Name: "users", Nacos: true, Active: spec.GroupB, PerGroup: 1, After: []string{"gateway"}},
	}})
	require.NoError(t, err)
	t.Cleanup(func() { require.NoError(t, s.Close()) })
	require.Equal(t, s.ConsumerURL("users"), s.URL("users"), "users reach a registry-only service through its consumer")
	require.Empty(t, s.ConsumerURL("gateway"))

	head, err := s.Head()
	require.NoError(t, err)
	for _, name := range []string{"gateway", "users"} {
		_, err := s.WaitInSync(ctx, name, head)
		require.NoError(t, err)
	}
	// The daemon is tandem run's assembly: its API, on the address it
	// wrote to the state directory, lists both services, and its metrics
	// count the providers' requests.
	addrFile, err := os.ReadFile(filepath.Join(s.Config().StateDir, daemon.AddrFile))
	require.NoError(t, err)
	require.Equal(t, s.APIAddr(), strings.TrimSpace(string(addrFile)))
	sts, err := server.FetchStatus(ctx, "http://"+s.APIAddr())
	require.NoError(t, err)
	require.Len(t, sts, 2)
	resp, err := http.Get("http://" + s.APIAddr() + "/metrics")
	require.NoError(t, err)
	metrics, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	require.Contains(t, string(metrics), `tandem_provider_requests_total{`)
	// answers sends traffic until some request is answered and returns
	// the group and version that answered first, and whether users
	// noticed nothing.
	answers := func(name string) (string, bool) {
		g, err := s.StartTraffic(ctx, s.URL(name), 50, 1)
		if err != nil {
			return err.Error(), false
		}
		for i := 0; i < 250 && g.Snapshot().Requests-g.Snapshot().Failed < 5; i++ {
			time.Sleep(20 * time.Millisecond)
		}
		r := g.Stop()
		for _, p := range r.Timeline {
			if p.Requests > 0 {
				return string(stage.GroupOf(p.Backend)) + "@" + p.Version, r.Clean()
			}
		}
		return "nothing answered: " + r.String(), false
	}
	answer := func(name string) string {
		got, clean := answers(name)
		require.True(t, clean, got)
		return got
	}
	require.Equal(t, "A@1.0.0", answer("gateway"))
	require.Equal(t, "B@1.0.0", answer("users"))

	// Cut off from the serving group, the LB fails what it forwards there.
	status := func() int {
		res, err := http.Get(s.URL("gateway") + "/healthz")
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.NoError(t, s.BlockLB("gateway", spec.GroupA, true))
	require.Equal(t, http.StatusGatewayTimeout, status())
	require.NoError(t, s.BlockLB("gateway", spec.GroupA, false))
	require.Equal(t, http.StatusOK, status())
	require.Error(t, s.BlockLB("users", spec.GroupA, true), "users is not behind an LB")

	rev, err := s.Release(ctx, "users", "2.0.0")
	require.NoError(t, err)
	_, err = s.WaitInSync(ctx, "users", rev)
	require.NoError(t, err)
	require.Eventually(t, func() bool {
		got, clean := answers("users")
		return clean && got == "A@2.0.0"
	}, 10*time.Second, 100*time.Millisecond, "the consumer's cache follows Nacos")

	rev, err = s.Revert(ctx, "users")
	require.NoError(t, err)
	st, err := s.WaitInSync(ctx, "users", rev)
	require.NoError(t, err)
	require.Equal(t, spec.GroupB, st.DesiredActive)
	require.Len(t, s.Deploys(), 1)
	journal, err := s.Journal(context.Background(), "users")
	require.NoError(t, err)
	require.Equal(t, rev, journal.Applied.Revision)
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
