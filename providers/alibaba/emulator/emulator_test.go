package emulator_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	alb "github.com/alibabacloud-go/alb-20200616/v2/client"
	openapi "github.com/alibabacloud-go/darabonba-openapi/v2/client"
	slb "github.com/alibabacloud-go/slb-20140515/v4/client"
	"github.com/alibabacloud-go/tea/tea"
	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const (
	akID     = "LTAIemulatortest"
	akSecret = "emulator-test-secret"
)

// recorder keeps the raw requests the SDK sent, for replay.
type recorder struct {
	next http.Handler
	mu   sync.Mutex
	reqs []recorded
}

type recorded struct {
	header http.Header
	url    string
	body   []byte
}

func (rec *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rec.mu.Lock()
	h := r.Header.Clone()
	rec.reqs = append(rec.reqs, recorded{header: h, url: r.URL.String(), body: body})
	rec.mu.Unlock()
	r.Body = io.NopCloser(bytes.NewReader(body))
	rec.next.ServeHTTP(w, r)
}

func (rec *recorder) last() recorded {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.reqs[len(rec.reqs)-1]
}

type env struct {
	e   *emulator.Emulator
	rec *recorder
	url string
}

func start(t *testing.T, opts emulator.Options) *env {
	opts.Keys = append(opts.Keys, emulator.Key{ID: akID, Secret: akSecret}, emulator.Key{ID: "STS.tmp", Secret: "sts-secret", Token: "sts-token"})
	e := emulator.New(opts)
	rec := &recorder{next: e}
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return &env{e: e, rec: rec, url: srv.URL}
}

func (v *env) config(id, secret, algo string) *openapi.Config {
	cfg := &openapi.Config{
		AccessKeyId: tea.String(id), AccessKeySecret: tea.String(secret),
		Endpoint: tea.String(strings.TrimPrefix(v.url, "http://")), Protocol: tea.String("http"),
		RegionId: tea.String("cn-hangzhou"), ConnectTimeout: tea.Int(2000), ReadTimeout: tea.Int(5000),
	}
	if algo != "" {
		cfg.SignatureAlgorithm = tea.String(algo)
	}
	return cfg
}

func (v *env) alb(t *testing.T, algo string) *alb.Client {
	c, err := alb.NewClient(v.config(akID, akSecret, algo))
	require.NoError(t, err)
	return c
}

func (v *env) slb(t *testing.T, algo string) *slb.Client {
	c, err := slb.NewClient(v.config(akID, akSecret, algo))
	require.NoError(t, err)
	return c
}

func code(t *testing.T, err error) string {
	t.Helper()
	var sdk *tea.SDKError
	require.ErrorAs(t, err, &sdk)
	return tea.StringValue(sdk.Code)
}

func group(id string, n int) *emulator.ServerGroup {
	g := &emulator.ServerGroup{ID: id}
	for i := range n {
		g.Servers = append(g.Servers, &emulator.Server{ID: fmt.Sprintf("i-%s-%03d", id, i), IP: "10.0.0.1", Port: 8000 + i, Weight: 100})
	}
	return g
}

func TestSignaturesOfBothAlgorithmsAreVerified(t *testing.T) {
	for _, algo := range []string{"", "v2"} {
		t.Run("algorithm="+algo, func(t *testing.T) {
			v := start(t, emulator.Options{})
			require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 1)}}))
			req := &alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1")}
			_, err := v.alb(t, algo).ListServerGroupServers(req)
			require.NoError(t, err)

			wrong, err := alb.NewClient(v.config(akID, "not-the-secret", algo))
			require.NoError(t, err)
			_, err = wrong.ListServerGroupServers(req)
			require.Equal(t, "SignatureDoesNotMatch", code(t, err))

			unknown, err := alb.NewClient(v.config("LTAInobody", akSecret, algo))
			require.NoError(t, err)
			_, err = unknown.ListServerGroupServers(req)
			require.Equal(t, "InvalidAccessKeyId.NotFound", code(t, err))

			sts := v.config("STS.tmp", "sts-secret", algo)
			sts.SecurityToken = tea.String("sts-token")
			c, err := alb.NewClient(sts)
			require.NoError(t, err)
			_, err = c.ListServerGroupServers(req)
			require.NoError(t, err, "an STS key with its token")
			sts.SecurityToken = tea.String("other-token")
			c, err = alb.NewClient(sts)
			require.NoError(t, err)
			_, err = c.ListServerGroupServers(req)
			require.Equal(t, "InvalidSecurityToken.MismatchWithAccessKey", code(t, err))
		})
	}
}

func replay(t *testing.T, v *env, r recorded, body []byte) (int, string) {
	req, err := http.NewRequest(http.MethodPost, v.url+r.url, bytes.NewReader(body))
	require.NoError(t, err)
	req.Header = r.header.Clone()
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

func TestReplayedAndTamperedRequestsAreRefused(t *testing.T) {
	v := start(t, emulator.Options{JobDelay: time.Hour})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 1)}}))
	_, err := v.alb(t, "").UpdateServerGroupServersAttribute(&alb.UpdateServerGroupServersAttributeRequest{
		ServerGroupId: tea.String("sgp-1"),
		Servers:       []*alb.UpdateServerGroupServersAttributeRequestServers{{ServerId: tea.String("i-sgp-1-000"), ServerType: tea.String("Ecs"), Port: tea.Int32(8000), Weight: tea.Int32(5)}},
	})
	require.NoError(t, err)
	r := v.rec.last()
	original := r.header.Clone()
	require.Contains(t, string(r.body), "Servers.1.Weight=5", "Servers travel in the form body")

	status, body := replay(t, v, r, r.body)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, `"Code":"SignatureNonceUsed"`)

	r.header = original.Clone()
	r.header.Set("x-acs-signature-nonce", "fresh-nonce")
	status, body = replay(t, v, r, r.body)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, `"Code":"SignatureDoesNotMatch"`, "the nonce is signed")

	tampered := bytes.Replace(r.body, []byte("Weight=5"), []byte("Weight=0"), 1)
	r.header = original
	status, body = replay(t, v, r, tampered)
	require.Equal(t, http.StatusBadRequest, status)
	require.Contains(t, body, `"Code":"SignatureDoesNotMatch"`, "the body is hashed into the signature")

	res, err := http.Post(v.url+"/?ServerGroupId=sgp-1", "", nil)
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	require.Equal(t, http.StatusBadRequest, res.StatusCode)
	require.Contains(t, string(b), `"Code":"IncompleteSignature"`)
}

func TestUnknownActionIsNotFound(t *testing.T) {
	v := start(t, emulator.Options{})
	_, err := v.alb(t, "").DeleteServerGroup(&alb.DeleteServerGroupRequest{ServerGroupId: tea.String("sgp-1")})
	require.Equal(t, "InvalidAction.NotFound", code(t, err))
}

func TestListServerGroupServersPages(t *testing.T) {
	v := start(t, emulator.Options{})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 5)}}))
	c := v.alb(t, "")
	req := &alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1"), MaxResults: tea.Int32(2)}
	var ids []string
	for pages := 0; ; pages++ {
		require.Less(t, pages, 3)
		res, err := c.ListServerGroupServers(req)
		require.NoError(t, err)
		require.Equal(t, int32(5), tea.Int32Value(res.Body.TotalCount))
		for _, s := range res.Body.Servers {
			ids = append(ids, tea.StringValue(s.ServerId))
			require.Equal(t, "Available", tea.StringValue(s.Status))
			require.Equal(t, "Ecs", tea.StringValue(s.ServerType))
		}
		if tea.StringValue(res.Body.NextToken) == "" {
			break
		}
		req.NextToken = res.Body.NextToken
	}
	require.Equal(t, []string{"i-sgp-1-000", "i-sgp-1-001", "i-sgp-1-002", "i-sgp-1-003", "i-sgp-1-004"}, ids)

	_, err := c.ListServerGroupServers(&alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1"), NextToken: tea.String("forged")})
	require.Equal(t, "IllegalParam.NextToken", code(t, err))
	_, err = c.ListServerGroupServers(&alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1"), MaxResults: tea.Int32(101)})
	require.Equal(t, "IllegalParam.MaxResults", code(t, err))
	_, err = c.ListServerGroupServers(&alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-none")})
	require.Equal(t, "ResourceNotFound.serverGroup", code(t, err))
}

func update(id string, weights ...int) *alb.UpdateServerGroupServersAttributeRequest {
	req := &alb.UpdateServerGroupServersAttributeRequest{ServerGroupId: tea.String(id)}
	for i, w := range weights {
		req.Servers = append(req.Servers, &alb.UpdateServerGroupServersAttributeRequestServers{
			ServerId: tea.String(fmt.Sprintf("i-%s-%03d", id, i)), ServerType: tea.String("Ecs"), Port: tea.Int32(int32(8000 + i)), Weight: tea.Int32(int32(w)),
		})
	}
	return req
}

func TestALBWritesAreAsyncJobs(t *testing.T) {
	v := start(t, emulator.Options{JobDelay: 200 * time.Millisecond})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 2)}}))
	c := v.alb(t, "")
	req := update("sgp-1", 10, 20)
	req.ClientToken = tea.String("token-1")
	res, err := c.UpdateServerGroupServersAttribute(req)
	require.NoError(t, err)
	job := tea.StringValue(res.Body.JobId)
	require.NotEmpty(t, job)

	list, err := c.ListServerGroupServers(&alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1")})
	require.NoError(t, err)
	for _, s := range list.Body.Servers {
		require.Equal(t, "Configuring", tea.StringValue(s.Status))
		require.Equal(t, int32(100), tea.Int32Value(s.Weight), "the new weight shows when the job is done")
	}
	jobs, err := c.ListAsynJobs(&alb.ListAsynJobsRequest{JobIds: []*string{tea.String(job)}})
	require.NoError(t, err)
	require.Equal(t, int64(1), tea.Int64Value(jobs.Body.TotalCount))
	require.Equal(t, "Processing", tea.StringValue(jobs.Body.Jobs[0].Status))
	require.Equal(t, "sgp-1", tea.StringValue(jobs.Body.Jobs[0].ResourceId))

	again, err := c.UpdateServerGroupServersAttribute(req)
	require.NoError(t, err, "the same ClientToken returns the first job")
	require.Equal(t, job, tea.StringValue(again.Body.JobId))

	other := update("sgp-1", 30, 40)
	other.ClientToken = tea.String("token-1")
	_, err = c.UpdateServerGroupServersAttribute(other)
	require.Equal(t, "IdempotenceSignatureMismatch", code(t, err))
	other.ClientToken = tea.String("token-2")
	_, err = c.UpdateServerGroupServersAttribute(other)
	require.Equal(t, "IncorrectStatus.serverGroup", code(t, err), "a concurrent write is refused")

	require.Eventually(t, func() bool {
		jobs, err := c.ListAsynJobs(&alb.ListAsynJobsRequest{JobIds: []*string{tea.String(job)}})
		return err == nil && tea.StringValue(jobs.Body.Jobs[0].Status) == "Succeeded"
	}, 10*time.Second, 20*time.Millisecond)
	servers, err := v.e.Servers(emulator.Target{ServerGroup: "sgp-1"})
	require.NoError(t, err)
	require.Equal(t, 10, servers[0].Weight)
	require.Equal(t, 20, servers[1].Weight)
}

func TestSlowJobsFaultKeepsJobsProcessingLonger(t *testing.T) {
	v := start(t, emulator.Options{})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 1)}}))
	c := v.alb(t, "")
	v.e.SetFaults(emulator.Faults{JobDelay: time.Hour})
	res, err := c.UpdateServerGroupServersAttribute(update("sgp-1", 10))
	require.NoError(t, err)
	jobs, err := c.ListAsynJobs(&alb.ListAsynJobsRequest{JobIds: []*string{res.Body.JobId}})
	require.NoError(t, err)
	require.Equal(t, "Processing", tea.StringValue(jobs.Body.Jobs[0].Status))
	servers, err := v.e.Servers(emulator.Target{ServerGroup: "sgp-1"})
	require.NoError(t, err)
	require.Equal(t, 100, servers[0].Weight, "not applied while the job is slow")
}

func TestALBWriteLimitsAndDryRun(t *testing.T) {
	v := start(t, emulator.Options{})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 41)}}))
	c := v.alb(t, "")
	weights := make([]int, 41)
	_, err := c.UpdateServerGroupServersAttribute(update("sgp-1", weights...))
	require.Equal(t, "IllegalParam.Servers", code(t, err), "at most 40 servers in each call")

	req := update("sgp-1", 101)
	_, err = c.UpdateServerGroupServersAttribute(req)
	require.Equal(t, "IllegalParam.Weight", code(t, err))

	req = update("sgp-1", 0)
	req.Servers[0].ServerType = nil
	_, err = c.UpdateServerGroupServersAttribute(req)
	require.Equal(t, "IllegalParam.ServerType", code(t, err), "ServerType is required")

	req = update("sgp-1", 0)
	req.Servers[0].ServerId = tea.String("i-other")
	_, err = c.UpdateServerGroupServersAttribute(req)
	require.Equal(t, "ResourceNotFound.BackendServer", code(t, err))

	req = update("sgp-1", 0)
	req.DryRun = tea.Bool(true)
	_, err = c.UpdateServerGroupServersAttribute(req)
	require.Equal(t, "DryRunOperation", code(t, err))
	jobs, err := c.ListAsynJobs(&alb.ListAsynJobsRequest{})
	require.NoError(t, err)
	require.Zero(t, tea.Int64Value(jobs.Body.TotalCount), "a dry run starts no job")
}

func TestListenerHealthListsOnlyNonNormalServers(t *testing.T) {
	v := start(t, emulator.Options{})
	g := group("sgp-1", 3)
	g.Servers[1].Unhealthy = true
	g.Servers[2].Weight = 0
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{g}, Listeners: []*emulator.Listener{{ID: "lsn-1", Port: 80, ServerGroup: "sgp-1"}}}))
	res, err := v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1")})
	require.NoError(t, err)
	info := res.Body.ListenerHealthStatus[0].ServerGroupInfos[0]
	require.Equal(t, "on", tea.StringValue(info.HealthCheckEnabled))
	status := map[string]string{}
	for _, s := range info.NonNormalServers {
		status[tea.StringValue(s.ServerId)] = tea.StringValue(s.Status)
	}
	require.Equal(t, map[string]string{"i-sgp-1-001": "Unhealthy", "i-sgp-1-002": "Unused"}, status)
	_, err = v.alb(t, "").GetListenerHealthStatus(&alb.GetListenerHealthStatusRequest{ListenerId: tea.String("lsn-1"), MaxResults: tea.Int64(31)})
	require.Equal(t, "IllegalParam.MaxResults", code(t, err))
}

func seedSLB(t *testing.T, v *env, n int) {
	lb := &emulator.LoadBalancer{ID: "lb-1", VServerGroups: []*emulator.VServerGroup{{ID: "rsp-1"}}, Listeners: []*emulator.SLBListener{{Port: 80, VServerGroup: "rsp-1"}, {Port: 81}}}
	for i := range n {
		lb.Servers = append(lb.Servers, &emulator.Server{ID: fmt.Sprintf("i-d%03d", i), IP: "10.0.0.1", Weight: 100})
		lb.VServerGroups[0].Servers = append(lb.VServerGroups[0].Servers, &emulator.Server{ID: fmt.Sprintf("i-v%03d", i), IP: "10.0.0.2", Port: 8080, Weight: 100})
	}
	require.NoError(t, v.e.Seed(emulator.State{LoadBalancers: []*emulator.LoadBalancer{lb}}))
}

func TestSLBCalls(t *testing.T) {
	for _, algo := range []string{"", "v2"} {
		t.Run("algorithm="+algo, func(t *testing.T) {
			v := start(t, emulator.Options{SLBBusy: time.Hour})
			seedSLB(t, v, 21)
			c := v.slb(t, algo)
			region := tea.String("cn-hangzhou")

			// Numbers are accepted as well as the documented strings.
			res, err := c.SetVServerGroupAttribute(&slb.SetVServerGroupAttributeRequest{RegionId: region, VServerGroupId: tea.String("rsp-1"),
				BackendServers: tea.String(`[{"ServerId":"i-v000","Weight":7,"Port":8080},{"ServerId":"i-v001","Weight":"8","Port":"8080","Type":"ecs"}]`)})
			require.NoError(t, err)
			require.Len(t, res.Body.BackendServers.BackendServer, 21)
			attr, err := c.DescribeVServerGroupAttribute(&slb.DescribeVServerGroupAttributeRequest{RegionId: region, VServerGroupId: tea.String("rsp-1")})
			require.NoError(t, err)
			require.Equal(t, "lb-1", tea.StringValue(attr.Body.LoadBalancerId))
			require.Equal(t, int32(7), tea.Int32Value(attr.Body.BackendServers.BackendServer[0].Weight))
			require.Equal(t, int32(8), tea.Int32Value(attr.Body.BackendServers.BackendServer[1].Weight))

			_, err = c.SetBackendServers(&slb.SetBackendServersRequest{RegionId: region, LoadBalancerId: tea.String("lb-1"), BackendServers: tea.String(`[{"ServerId":"i-d000","Weight":"5"}]`)})
			require.Equal(t, "BackendServer.configuring", code(t, err), "the load balancer is locked after a change, whichever group")

			v2 := start(t, emulator.Options{})
			seedSLB(t, v2, 21)
			c = v2.slb(t, algo)
			set, err := c.SetBackendServers(&slb.SetBackendServersRequest{RegionId: region, LoadBalancerId: tea.String("lb-1"), BackendServers: tea.String(`[{"ServerId":"i-d000","Weight":"5"}]`)})
			require.NoError(t, err)
			require.Equal(t, "5", tea.StringValue(set.Body.BackendServers.BackendServer[0].Weight), "SetBackendServers answers weights as strings")
			lb, err := c.DescribeLoadBalancerAttribute(&slb.DescribeLoadBalancerAttributeRequest{RegionId: region, LoadBalancerId: tea.String("lb-1")})
			require.NoError(t, err)
			require.Equal(t, int32(5), tea.Int32Value(lb.Body.BackendServers.BackendServer[0].Weight))

			var many []string
			for i := range 21 {
				many = append(many, fmt.Sprintf(`{"ServerId":"i-d%03d","Weight":"1"}`, i))
			}
			_, err = c.SetBackendServers(&slb.SetBackendServersRequest{RegionId: region, LoadBalancerId: tea.String("lb-1"), BackendServers: tea.String("[" + strings.Join(many, ",") + "]")})
			require.Equal(t, "InvalidParameter", code(t, err), "at most 20 servers in each call")
			_, err = c.SetBackendServers(&slb.SetBackendServersRequest{RegionId: region, LoadBalancerId: tea.String("lb-1"), BackendServers: tea.String(`[{"ServerId":"i-d000","Weight":"101"}]`)})
			require.Equal(t, "InvalidParameter", code(t, err))
			_, err = c.DescribeLoadBalancerAttribute(&slb.DescribeLoadBalancerAttributeRequest{RegionId: region, LoadBalancerId: tea.String("lb-2")})
			require.Equal(t, "InvalidLoadBalancerId.NotFound", code(t, err))
			_, err = c.DescribeLoadBalancerAttribute(&slb.DescribeLoadBalancerAttributeRequest{LoadBalancerId: tea.String("lb-1")})
			require.Equal(t, "MissingParameter", code(t, err), "RegionId is required")

			require.NoError(t, v2.e.SetHealthy(emulator.Target{LoadBalancer: "lb-1", VServerGroup: "rsp-1"}, "i-v003", false))
			hs, err := c.DescribeHealthStatus(&slb.DescribeHealthStatusRequest{RegionId: region, LoadBalancerId: tea.String("lb-1"), ListenerPort: tea.Int32(80)})
			require.NoError(t, err)
			require.Len(t, hs.Body.BackendServers.BackendServer, 21)
			for _, s := range hs.Body.BackendServers.BackendServer {
				want := "normal"
				if tea.StringValue(s.ServerId) == "i-v003" {
					want = "abnormal"
				}
				require.Equal(t, want, tea.StringValue(s.ServerHealthStatus))
				require.Equal(t, int32(80), tea.Int32Value(s.ListenerPort))
			}
		})
	}
}

func TestFaultsAreInjected(t *testing.T) {
	v := start(t, emulator.Options{Seed: 1, Faults: emulator.Faults{ThrottleRate: 0.5, ErrorRate: 0.5}})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 1)}}))
	seen := map[string]bool{}
	for range 20 {
		_, err := v.alb(t, "").ListServerGroupServers(&alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1")})
		seen[code(t, err)] = true
	}
	require.Equal(t, map[string]bool{"Throttling.User": true, "ServiceUnavailable": true}, seen)
	require.Equal(t, 20, v.e.Calls()["ListServerGroupServers"])
}

func TestStateIsSavedAndLoaded(t *testing.T) {
	path := t.TempDir() + "/state.json"
	v := start(t, emulator.Options{StateFile: path})
	require.NoError(t, v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 2)}}))
	require.NoError(t, v.e.SetWeight(emulator.Target{ServerGroup: "sgp-1"}, "i-sgp-1-001", 0))
	s, err := emulator.LoadState(path)
	require.NoError(t, err)
	require.Equal(t, v.e.State(), s)
	require.Equal(t, 0, s.ServerGroups[0].Servers[1].Weight)

	err = v.e.Seed(emulator.State{ServerGroups: []*emulator.ServerGroup{group("sgp-1", 1)}, Listeners: []*emulator.Listener{{ID: "lsn-1", ServerGroup: "sgp-x"}}})
	require.ErrorContains(t, err, `alb server group id "sgp-1" is used twice`)
	require.ErrorContains(t, err, `server group "sgp-x" does not exist`)
	require.Len(t, v.e.State().ServerGroups, 1, "a refused seed adds nothing")
}

// lineWriter hands each line written to it to a channel.
type lineWriter struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines chan string
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadString('\n')
		if err != nil {
			w.buf.WriteString(line)
			return len(p), nil
		}
		w.lines <- strings.TrimSpace(line)
	}
}

func TestMainServesUntilTheContextEnds(t *testing.T) {
	t.Run("with --key", func(t *testing.T) { testMainServes(t, "--key", akID+":"+akSecret) })
	t.Run("with --key-env", func(t *testing.T) {
		t.Setenv("EMU_AK_ID", akID)
		t.Setenv("EMU_AK_SECRET", akSecret)
		testMainServes(t, "--key-env", "EMU_AK_ID:EMU_AK_SECRET")
	})
}

func testMainServes(t *testing.T, keyFlag, keyValue string) {
	path := t.TempDir() + "/state.json"
	require.NoError(t, os.WriteFile(path, []byte(`{"albServerGroups":[{"id":"sgp-1","servers":[{"id":"i-1","ip":"127.0.0.1","port":80,"weight":100}]}],`+
		`"albListeners":[{"id":"lsn-1","port":80,"serverGroup":"sgp-1"}]}`), 0o600))
	ctx, cancel := context.WithCancel(context.Background())
	out := &lineWriter{lines: make(chan string, 10)}
	var stderr bytes.Buffer
	done := make(chan int, 1)
	go func() {
		done <- emulator.Main(ctx, []string{"--listen", "127.0.0.1:0", "--state", path, keyFlag, keyValue, "--job-delay", "0s",
			"--frontend", "127.0.0.1:0=alb:sgp-1", "--frontend", "127.0.0.1:0=alb-listener:lsn-1", "--health-check-unit", "10ms",
			"--control", "127.0.0.1:0"}, out, &stderr)
	}()
	var line string
	select {
	case line = <-out.lines:
	case code := <-done:
		t.Fatalf("Main exited with %d: %s", code, stderr.String())
	}
	addr, ok := strings.CutPrefix(line, "openapi listening on http://")
	require.True(t, ok, line)
	require.Contains(t, <-out.lines, "control listening on http://127.0.0.1:")
	require.Contains(t, <-out.lines, "frontend alb server group sgp-1 listening on http://127.0.0.1:")
	require.Contains(t, <-out.lines, "frontend alb listener lsn-1 listening on http://127.0.0.1:")
	v := &env{url: "http://" + addr}
	c := v.alb(t, "")
	_, err := c.UpdateServerGroupServersAttribute(&alb.UpdateServerGroupServersAttributeRequest{ServerGroupId: tea.String("sgp-1"),
		Servers: []*alb.UpdateServerGroupServersAttributeRequestServers{{ServerId: tea.String("i-1"), ServerType: tea.String("Ecs"), Port: tea.Int32(80), Weight: tea.Int32(42)}}})
	require.NoError(t, err)
	_, err = c.ListServerGroupServers(&alb.ListServerGroupServersRequest{ServerGroupId: tea.String("sgp-1")}) // finishes the job
	require.NoError(t, err)
	cancel()
	require.Equal(t, 0, <-done, stderr.String())
	s, err := emulator.LoadState(path)
	require.NoError(t, err)
	require.Equal(t, 42, s.ServerGroups[0].Servers[0].Weight, "the state file follows every change")
}

func TestMainRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"without a key", []string{"--listen", "127.0.0.1:0"}, "--key ID:SECRET or --key-env ID_VAR:SECRET_VAR is required"},
		{"with a malformed key", []string{"--key", "nosecret"}, "must be ID:SECRET"},
		{"with key variables that are not set", []string{"--key-env", "TANDEM_TEST_UNSET_ID:TANDEM_TEST_UNSET_SECRET"}, "TANDEM_TEST_UNSET_ID and TANDEM_TEST_UNSET_SECRET must both be set"},
		{"with rates above 1", []string{"--key", "a:b", "--throttle-rate", "0.7", "--error-rate", "0.7"}, "add up to at most 1"},
		{"with a bad frontend", []string{"--key", "a:b", "--frontend", "127.0.0.1:0=nlb:x"}, "must be alb:SERVERGROUP"},
		{"with a zero health-check unit", []string{"--key", "a:b", "--health-check-unit", "0s"}, "--health-check-unit must be positive"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			require.Equal(t, 2, emulator.Main(context.Background(), tc.args, io.Discard, &stderr))
			require.Contains(t, stderr.String(), tc.want)
		})
	}
}

// A state file that cannot be loaded is a failure of the command (exit 1,
// the file named), not a usage error, and nothing is served.
func TestMainFailsOnAnUnreadableStateFile(t *testing.T) {
	path := t.TempDir() + "/state.json"
	require.NoError(t, os.WriteFile(path, []byte(`{"albServerGroups": [{"nope": 1}]}`), 0o600))
	var stdout, stderr bytes.Buffer
	require.Equal(t, 1, emulator.Main(context.Background(), []string{"--listen", "127.0.0.1:0", "--key", "a:b", "--state", path}, &stdout, &stderr))
	require.Empty(t, stdout.String())
	require.Equal(t, "tandem emulate alibaba: reading emulator state "+path+`: json: unknown field "nope"`+"\n", stderr.String())
}
