package reliability_test

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"gopkg.in/yaml.v3"

	"github.com/tandemhq/tandem/internal/stage"
	"github.com/tandemhq/tandem/providers/nacos/nacosapp"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

// The secrets of the test, one of every kind, each distinctive and with
// characters that URL and Base64 encodings change.
var secrets = map[string]string{
	"T_API_TOKEN":       "api-tok+Hn4/Yw1Ps=",
	"T_READ_TOKEN":      "read-tok+Vc7/Zp3Ke=",
	"T_WEBHOOK_SECRET":  "whsec+Kp3v/9Lm2Qr=",
	"T_GIT_PASSWORD":    "git-pw+Rt5/Vb8Nc=",
	"T_DEPLOY_TOKEN":    "deploy-tok+Wq2/Ej6Ha=",
	"T_ETCD_PASSWORD":   "etcd-pw+Jh8/Kl4Mn=",
	"T_NOTIFY_SECRET":   "notify-hmac+Bb6/Gf3Ds=",
	"T_NOTIFY_HOOK_URL": "", // the receivers' URLs carry tokens: set once they listen
	"T_DINGTALK_URL":    "",
	"T_FEISHU_URL":      "",
	"T_SLACK_URL":       "",
	"T_DEAD_SINK_URL":   "",
}

// The tokens the notifier URLs carry.
const (
	hookToken     = "hook-tok-Tr1Ye3Wu"
	dingtalkToken = "dtalk-tok-Mk9Xc4Vz"
	feishuToken   = "feishu-tok-Pl2Ow7Ui"
	slackToken    = "slack-tok-Qa5Sd8Fg"
	deadToken     = "dead-tok-Zx7Cv2Bn"
	nacosPassword = "nacos-pw+Zq8/xT2!="
	gitUser       = "deployer"
	etcdUser      = "tandem"
	// Wrong passwords are secrets too (often someone's right one).
	wrongETCD  = "wrong-etcd+Ab1/Cd2="
	wrongGit   = "wrong-git+Ef3/Gh4="
	wrongNacos = "wrong-nacos+Ij5/Kl6="
	// What no configuration names, that the daemon can only find by its
	// form: a password a deploy hook prints, an AccessKey id it prints, a
	// credential an application registers as Nacos metadata.
	hookPassword    = "hook-db-pw+Qe5/Ty7="
	hookAccessKeyID = "LTAI5tHookEchoed9Xq2Lm"
	metadataSecret  = "app-conn-S3cret+Mx4/Rt7="
)

// TestSecretsNeverShow configures every kind of secret Tandem holds
// (Alibaba AccessKey, Nacos password, Git password, webhook secret, API
// token and read token, deploy token, notifier URLs and signing secrets,
// etcd password), runs `tandem run` with each credential wrong once and then
// right, drives a release and a revert with a deploy hook that prints its
// token and other credentials in its output and apps that register a
// credential as Nacos metadata, and provokes errors (a bad webhook
// signature, unauthorised API calls, reads without the read token, a
// notifier that fails and one that is unreachable). Then it searches
// everything the daemon wrote or served: its log, the status and events
// API, the dashboard and its assets, the event stream, /metrics, `tandem
// status`, every file of its state directory, and every notification
// received, for each secret, raw, URL-encoded and in Base64. None may
// appear.
func TestSecretsNeverShow(t *testing.T) {
	recv := startReceiver(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	secrets["T_NOTIFY_HOOK_URL"] = recv.url + "/hook?token=" + hookToken
	secrets["T_DINGTALK_URL"] = recv.url + "/robot/send?access_token=" + dingtalkToken
	secrets["T_FEISHU_URL"] = recv.url + "/open-apis/bot/v2/hook/" + feishuToken
	secrets["T_SLACK_URL"] = recv.url + "/services/T0/B0/" + slackToken
	secrets["T_DEAD_SINK_URL"] = "http://" + dead + "/robot/send?access_token=" + deadToken
	for k, v := range secrets {
		t.Setenv(k, v)
	}
	t.Setenv("T_GIT_USER", gitUser)
	t.Setenv("T_ETCD_USER", etcdUser)
	etcd := startEtcd(t, etcdUser, secrets["T_ETCD_PASSWORD"], "/tandem/")

	var remote *gitServer
	e := newEnv(t, envOptions{services: []stage.Service{{Name: "web", LB: spec.KindALB, Nacos: true}}, timing: faultTiming,
		warmUp: 200 * time.Millisecond, nacosPassword: nacosPassword, deployTokenEnv: "T_DEPLOY_TOKEN",
		nacosMetadata: map[string]string{"conn": metadataSecret},
		config: func(s *stage.Stage, cfg *spec.Config) {
			remote = serveRepo(t, s.RepoDir(), gitUser, secrets["T_GIT_PASSWORD"])
			cfg.Git.URL = remote.url(s.RepoDir())
			cfg.Git.Interval = spec.Duration(time.Second)
			cfg.Git.Auth = spec.GitAuth{UsernameEnv: "T_GIT_USER", PasswordEnv: "T_GIT_PASSWORD"}
			cfg.Git.Webhook = &spec.GitWebhook{SecretEnv: "T_WEBHOOK_SECRET"}
			cfg.API.TokenEnv = "T_API_TOKEN"
			cfg.API.ReadTokenEnv = "T_READ_TOKEN"
			cfg.Notify = []spec.Notifier{
				{Name: "hook", Type: "webhook", URLEnv: "T_NOTIFY_HOOK_URL", SecretEnv: "T_NOTIFY_SECRET"},
				{Name: "dingtalk", Type: "dingtalk", URLEnv: "T_DINGTALK_URL", SecretEnv: "T_NOTIFY_SECRET"},
				{Name: "feishu", Type: "feishu", URLEnv: "T_FEISHU_URL", SecretEnv: "T_NOTIFY_SECRET"},
				{Name: "slack", Type: "slack", URLEnv: "T_SLACK_URL"},
				{Name: "dead", Type: "dingtalk", URLEnv: "T_DEAD_SINK_URL"},
			}
			cfg.HA = &spec.HAConfig{Etcd: []string{etcd}, Prefix: "/tandem/secrets", LeaseTTL: spec.Duration(2 * time.Second),
				UsernameEnv: "T_ETCD_USER", PasswordEnv: "T_ETCD_PASSWORD"}
		}})
	e.deploy.token = secrets["T_DEPLOY_TOKEN"]
	e.daemon.args = []string{"--log-level", "debug"}
	ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	alibabaID := os.Getenv(e.daemon.cfg.Providers.ALB[0].AccessKeyIDEnv)
	alibabaSecret := os.Getenv(e.daemon.cfg.Providers.ALB[0].AccessKeySecretEnv)
	require.NotEmpty(t, alibabaSecret)
	// The hook prints what it can read, as a careless script does.
	e.deploy.setEcho(fmt.Sprintf("+ curl -H 'Authorization: Bearer %s' https://deploy.internal/\nDEPLOY_TOKEN=%s\nDB_PASSWORD=%s\n"+
		"using access key %s with %s\n", secrets["T_DEPLOY_TOKEN"], secrets["T_DEPLOY_TOKEN"], hookPassword, hookAccessKeyID,
		alibabaSecret))

	// Each credential wrong once: etcd (the daemon cannot start), Git (no
	// desired state), Nacos (no live state).
	e.daemon.env = []string{"T_ETCD_PASSWORD=" + wrongETCD}
	require.NotZero(t, e.daemon.runToExit(), "a wrong etcd password stops the daemon")
	require.Contains(t, e.daemon.tail(5), "etcd")
	e.daemon.env = []string{"T_GIT_PASSWORD=" + wrongGit}
	e.daemon.start()
	require.NoError(t, poll(ctx, 20*time.Millisecond, func() bool {
		code, body, err := e.daemon.get("/api/v1/events")
		return err == nil && code == http.StatusOK && bytes.Contains(body, []byte(reconcile.ReasonGitFetchFailed))
	}), "the wrong git password is reported")
	e.daemon.stop()
	e.daemon.env = []string{"TANDEM_STAGE_NACOS_PASSWORD=" + wrongNacos}
	e.daemon.start()
	e.daemon.waitStatus(ctx, "web", "the wrong nacos password reported", func(st reconcile.Status) bool {
		c, ok := condition(st, reconcile.ConditionReady)
		return ok && !c.Status && strings.Contains(c.Message, "nacos")
	})
	e.daemon.stop()

	// Everything right: a release and a revert, with errors provoked.
	e.daemon.env = nil
	recv.failNext("/hook") // one failed delivery, retried
	e.daemon.start()
	e.requireInSyncAtHead(ctx, "web")
	for _, version := range []string{"1.1.0", ""} {
		rev, err := e.commit(ctx, "web", version)
		require.NoError(t, err)
		e.requireOutcome(ctx, "web", rev, succeeded)
	}
	corpus := map[string][]byte{}
	served := func(what string, code int, body []byte, err error) {
		t.Helper()
		require.NoError(t, err, what)
		corpus[fmt.Sprintf("%s (%d)", what, code)] = body
	}
	code, body, err := e.daemon.post("/api/v1/services/web/sync")
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)
	served("sync without a token", code, body, err)
	code, body, err = e.daemon.post("/api/v1/services/web/sync", "Authorization", "Bearer wrong-token")
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)
	served("sync with a wrong token", code, body, err)
	code, body, err = e.daemon.post("/api/v1/services/web/sync", "Authorization", "Bearer "+secrets["T_API_TOKEN"])
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	served("sync with the token", code, body, err)
	payload := `{"ref":"refs/heads/main"}`
	code, body, err = e.daemon.postBody("/hooks/git", payload, "X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	require.Equal(t, http.StatusUnauthorized, code, "%s", body)
	served("webhook with a bad signature", code, body, err)
	mac := hmac.New(sha256.New, []byte(secrets["T_WEBHOOK_SECRET"]))
	mac.Write([]byte(payload))
	code, body, err = e.daemon.postBody("/hooks/git", payload, "X-Hub-Signature-256", "sha256="+hex.EncodeToString(mac.Sum(nil)))
	require.Equal(t, http.StatusAccepted, code, "%s", body)
	served("webhook signed right", code, body, err)
	// Every sink was told (so each URL token and signing secret was used).
	require.NoError(t, poll(ctx, 20*time.Millisecond, func() bool {
		got := map[string]bool{}
		for _, n := range recv.all() {
			got[strings.Split(n.path, "/")[1]] = true
		}
		return got["hook"] && got["robot"] && got["open-apis"] && got["services"]
	}), "notifications arrive at every sink")

	reads := append([]string{"/api/v1/services", "/api/v1/services/web", "/api/v1/events?limit=100000", "/metrics",
		"/healthz", "/readyz", "/"}, dashboardAssets(t, e.daemon)...)
	for _, path := range reads {
		code, body, err := e.daemon.get(path)
		served("GET "+path, code, body, err)
		code, body, err = e.daemon.get(path, "Authorization", "")
		served("GET "+path+" without the read token", code, body, err)
		if strings.HasPrefix(path, "/api/") {
			require.Equal(t, http.StatusUnauthorized, code, "GET %s without the read token", path)
		}
	}
	corpus["GET /api/v1/stream"] = readStream(t, e.daemon)
	status, err := exec.Command(tandemBin, "status", "--server", e.daemon.url(""), "-o", "json", "--token-env", "T_READ_TOKEN").CombinedOutput()
	require.NoError(t, err, "%s", status)
	corpus["tandem status"] = status
	// The planted credentials did reach the daemon: the hook's output is in
	// the events, the app's metadata in the status, each redacted.
	require.Contains(t, string(corpus[fmt.Sprintf("GET /api/v1/events?limit=100000 (%d)", http.StatusOK)]), `DB_PASSWORD=<redacted>`)
	require.Contains(t, string(status), `"conn": "<redacted>"`)
	e.daemon.stop()

	log, err := os.ReadFile(e.daemon.logPath)
	require.NoError(t, err)
	corpus["daemon log"] = log
	require.NoError(t, filepath.WalkDir(e.daemon.cfg.StateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		corpus["state file "+p] = data
		return err
	}))
	for i, n := range recv.all() {
		corpus[fmt.Sprintf("notification %d to %s", i, n.path)] = n.content
	}
	// The errors were provoked and reported.
	require.Contains(t, string(log), "notification attempt failed, retrying")
	require.Contains(t, string(log), "notification failed")
	require.Contains(t, string(log), "git fetch failed")

	named := map[string]string{"alibaba accessKeyId": alibabaID, "alibaba accessKeySecret": alibabaSecret,
		"password a hook printed": hookPassword, "AccessKey id a hook printed": hookAccessKeyID, "credential in nacos metadata": metadataSecret,
		"nacos password": nacosPassword, "dingtalk token": dingtalkToken, "feishu token": feishuToken,
		"slack token": slackToken, "webhook token": hookToken, "unreachable sink token": deadToken,
		"git basic auth": gitUser + ":" + secrets["T_GIT_PASSWORD"], "etcd basic auth": etcdUser + ":" + secrets["T_ETCD_PASSWORD"],
		"wrong etcd password": wrongETCD, "wrong git password": wrongGit, "wrong nacos password": wrongNacos}
	for k, v := range secrets {
		if !strings.Contains(k, "_URL") {
			named[k] = v
		}
	}
	searched := 0
	for what, value := range named {
		for form, needle := range encodings(value) {
			for where, data := range corpus {
				require.False(t, bytes.Contains(data, []byte(needle)), "the %s (%s) shows in %s:\n%s", what, form, where, excerpt(data, needle))
				searched += len(data)
			}
		}
	}
	t.Logf("%d secrets in %d forms searched for in %d places (%d KiB in all)", len(named), len(encodings("x")), len(corpus), searched/1024)
	e.mon.requireNoViolation()
}

// encodings are the forms a secret could leak in.
func encodings(s string) map[string]string {
	return map[string]string{
		"raw":             s,
		"query-escaped":   url.QueryEscape(s),
		"path-escaped":    url.PathEscape(s),
		"base64":          base64.StdEncoding.EncodeToString([]byte(s)),
		"base64 url":      base64.URLEncoding.EncodeToString([]byte(s)),
		"base64 unpadded": base64.RawStdEncoding.EncodeToString([]byte(s)),
		"json":            strings.Trim(jsonString(s), `"`),
	}
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// excerpt shows where needle occurs in data.
func excerpt(data []byte, needle string) string {
	i := bytes.Index(data, []byte(needle))
	if i < 0 {
		return ""
	}
	return string(data[max(0, i-200):min(len(data), i+len(needle)+200)])
}

// dashboardAssets lists the /static/ assets the dashboard page references.
func dashboardAssets(t *testing.T, d *daemon) []string {
	t.Helper()
	code, body, err := d.get("/")
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, code)
	var out []string
	for _, m := range regexp.MustCompile(`(?:src|href)="/?(static/[^"]+)"`).FindAllSubmatch(body, -1) {
		out = append(out, "/"+string(m[1]))
	}
	require.NotEmpty(t, out, "the dashboard loads its assets from /static/")
	return out
}

// readStream reads the dashboard's event stream for a moment.
func readStream(t *testing.T, d *daemon) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, d.url("/api/v1/stream"), nil)
	require.NoError(t, err)
	if name := d.cfg.API.ReadTokenEnv; name != "" {
		req.Header.Set("Authorization", "Bearer "+os.Getenv(name))
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	var buf bytes.Buffer
	_, _ = io.Copy(&buf, resp.Body) // until the deadline
	require.NotZero(t, buf.Len(), "the stream sent its first messages")
	return buf.Bytes()
}

// receiver is every notification sink of the test: it records what it is
// sent (headers and body; the URL carries the sink's own token by design).
type receiver struct {
	url string

	mu   sync.Mutex
	got  []notification
	fail map[string]bool // path prefix -> answer the next request 500
}

type notification struct {
	path    string
	content []byte // headers and body
}

func startReceiver(t *testing.T) *receiver {
	r := &receiver{fail: map[string]bool{}}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	srv := &http.Server{Handler: r, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln)
	}()
	t.Cleanup(func() {
		_ = srv.Close()
		<-done
	})
	r.url = "http://" + ln.Addr().String()
	return r
}

func (r *receiver) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(req.Body, 1<<20))
	var content bytes.Buffer
	_ = req.Header.Write(&content)
	content.Write(body)
	r.mu.Lock()
	r.got = append(r.got, notification{path: req.URL.Path, content: content.Bytes()})
	fail := false
	for prefix := range r.fail {
		if strings.HasPrefix(req.URL.Path, prefix) {
			fail = true
			delete(r.fail, prefix)
		}
	}
	r.mu.Unlock()
	switch {
	case fail:
		http.Error(w, "temporarily unavailable", http.StatusInternalServerError)
	case strings.HasPrefix(req.URL.Path, "/robot/"):
		_, _ = io.WriteString(w, `{"errcode":0,"errmsg":"ok"}`)
	case strings.HasPrefix(req.URL.Path, "/open-apis/"):
		_, _ = io.WriteString(w, `{"code":0,"msg":"success"}`)
	default:
		_, _ = io.WriteString(w, "ok")
	}
}

func (r *receiver) failNext(prefix string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail[prefix] = true
}

func (r *receiver) all() []notification {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]notification(nil), r.got...)
}

// TestConfigurationRendersNoSecret loads a tandem.yaml whose every
// credential is set in the environment, and renders the configuration, a
// secret read from it and a type that holds one, in every way a program
// prints or serialises them: none shows the value.
func TestConfigurationRendersNoSecret(t *testing.T) {
	const value = "s3cret+Value/With=Chars"
	for _, env := range []string{"AK_ID", "AK_SECRET", "STS_TOKEN", "NACOS_USER", "NACOS_PASSWORD", "GIT_TOKEN",
		"WEBHOOK_SECRET", "API_TOKEN", "NOTIFY_URL", "NOTIFY_SECRET", "ETCD_USER", "ETCD_PASSWORD"} {
		t.Setenv(env, value)
	}
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(`
git:
  url: https://git.example.com/ops/desired.git
  auth: {tokenEnv: GIT_TOKEN}
  webhook: {secretEnv: WEBHOOK_SECRET}
api: {tokenEnv: API_TOKEN}
providers:
  alb: [{name: prod, region: cn-hangzhou, accessKeyIdEnv: AK_ID, accessKeySecretEnv: AK_SECRET, securityTokenEnv: STS_TOKEN}]
  nacos: [{name: prod, servers: ["10.0.0.1:8848"], usernameEnv: NACOS_USER, passwordEnv: NACOS_PASSWORD}]
notify: [{name: ops, type: dingtalk, urlEnv: NOTIFY_URL, secretEnv: NOTIFY_SECRET}]
ha: {etcd: ["10.0.0.2:2379"], usernameEnv: ETCD_USER, passwordEnv: ETCD_PASSWORD}
`))
	require.NoError(t, err)
	secret, err := spec.SecretFromEnv("providers.nacos[0].passwordEnv", cfg.Providers.Nacos[0].PasswordEnv)
	require.NoError(t, err)
	require.Equal(t, value, secret.Reveal())
	holder := nacosapp.Config{Servers: cfg.Providers.Nacos[0].Servers, Username: "nacos", Password: secret}

	var out bytes.Buffer
	for _, v := range []any{cfg, *cfg, secret, holder, &holder} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q"} {
			fmt.Fprintf(&out, verb+"\n", v)
		}
		b, err := json.Marshal(v)
		require.NoError(t, err)
		out.Write(b)
		b, err = yaml.Marshal(v)
		require.NoError(t, err)
		out.Write(b)
		slog.New(slog.NewTextHandler(&out, nil)).Info("config", "value", v)
		slog.New(slog.NewJSONHandler(&out, nil)).Info("config", "value", v)
	}
	out.WriteString(fmt.Errorf("logging in with %v: %w", secret, io.EOF).Error())
	for form, needle := range encodings(value) {
		require.NotContains(t, out.String(), needle, "the secret shows (%s)", form)
	}
	require.Contains(t, out.String(), "<redacted>")
	require.Contains(t, out.String(), "NACOS_PASSWORD", "the configuration names where the secret comes from")
}
