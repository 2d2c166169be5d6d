package redact_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"log/slog"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

func TestKnownValuesInEveryForm(t *testing.T) {
	const secret = `s3cret+Val/ue="<&>`
	r := redact.New(secret, "short") // too short to be redacted as a value
	jsonForm, _ := json.Marshal(secret)
	for _, form := range []string{secret, url.QueryEscape(secret), url.QueryEscape(url.QueryEscape(secret)), url.PathEscape(secret),
		base64.StdEncoding.EncodeToString([]byte(secret)), base64.RawURLEncoding.EncodeToString([]byte(secret)),
		strings.Trim(string(jsonForm), `"`)} {
		got := r.String("before " + form + " after")
		require.Equal(t, "before <redacted> after", got, "form %q", form)
	}
	require.Equal(t, "a short word", r.String("a short word"))
	var nilR *redact.Redactor
	require.Equal(t, "x password=<redacted>", nilR.String("x password=hunter22"))
}

func TestPatterns(t *testing.T) {
	r := redact.New()
	for in, want := range map[string]string{
		"Authorization: Bearer abc.def-ghi":                                        "Authorization: Bearer <redacted>",
		"curl -H 'Authorization: token ghp_0123456789'":                            "curl -H 'Authorization: token <redacted>'",
		`{"authorization":"Basic dXNlcjpwYXNz"}`:                                   `{"authorization":"Basic <redacted>"}`,
		"using bearer eyJhbGciOiJIUzI1NiJ9.e30.x":                                  "using bearer <redacted>",
		"DB_PASSWORD=hunter22 next":                                                "DB_PASSWORD=<redacted> next",
		"password: hunter22":                                                       "password: <redacted>",
		`{"api_key": "k-123456"}`:                                                  `{"api_key": "<redacted>"}`,
		"accessKeySecret=abcDEF123&x=1":                                            "accessKeySecret=<redacted>&x=1",
		"key LTAI5tQ8abcdefGHIJKLmn used":                                          "key <redacted> used",
		"aws AKIAIOSFODNN7EXAMPLE":                                                 "aws <redacted>",
		"GET https://slb.aliyuncs.com/?Action=X&Signature=abc%2Bdef=":              "GET https://slb.aliyuncs.com/?Action=X&Signature=<redacted>",
		"clone https://deployer:pa55word@git.example.com/r.git":                    "clone https://<redacted>@git.example.com/r.git",
		`Get "https://ghp_abc123@github.com/x.git/info/refs": EOF`:                 `Get "https://<redacted>@github.com/x.git/info/refs": EOF`,
		"ssh://git:pw@h/r and redis://:pw@h":                                       "ssh://git:<redacted>@h/r and redis://:<redacted>@h",
		"ssh://git@h/r and git@h:r are logins":                                     "ssh://git@h/r and git@h:r are logins",
		"https://h/path@v1 has no user part (the @ is after the first /)":          "https://h/path@v1 has no user part (the @ is after the first /)",
		"-----BEGIN RSA PRIVATE KEY-----\nMIIE\n-----END RSA PRIVATE KEY-----\nok": "<redacted>\nok",
		"SecurityToken=CAIS1234&Version=2014":                                      "SecurityToken=<redacted>&Version=2014",
		// Ordinary text is left alone.
		"git.auth.passwordEnv: needs usernameEnv":                        "git.auth.passwordEnv: needs usernameEnv",
		"restarted 2 apps of group A at 1.1.0":                           "restarted 2 apps of group A at 1.1.0",
		"a bearer token is required (Authorization: Bearer <the token>)": "a bearer token is required (Authorization: Bearer <the token>)",
	} {
		require.Equal(t, want, r.String(in), "in %q", in)
	}
}

func TestJSONStaysValid(t *testing.T) {
	r := redact.New("tok-123456")
	b, err := json.Marshal(map[string]string{"m": `Authorization: Bearer abcdefghijk "password=x1x2x3" tok-123456`})
	require.NoError(t, err)
	var v map[string]string
	require.NoError(t, json.Unmarshal(r.Bytes(b), &v), "%s", r.Bytes(b))
	require.Equal(t, `Authorization: Bearer <redacted> "password=<redacted>" <redacted>`, v["m"])
}

func TestEvent(t *testing.T) {
	r := redact.New("tok-123456")
	e := r.Event(reconcile.Event{Service: "web", Message: "deploy output:\ntok-123456", Subject: "release tok-123456"})
	require.Equal(t, "deploy output:\n<redacted>", e.Message)
	require.Equal(t, "release <redacted>", e.Subject)
	require.Equal(t, "web", e.Service)
}

func TestAddLater(t *testing.T) {
	r := redact.New("first-secret")
	r.Add("second-secret")
	require.Equal(t, "<redacted> <redacted>", r.String("first-secret second-secret"))
}

func TestFromEnviron(t *testing.T) {
	got := redact.FromEnviron([]string{"HOME=/root", "GITHUB_TOKEN=ghp1", "DB_PASSWORD=pw", "MY_VAR=v", "EMPTY_SECRET="}, "MY_VAR")
	require.ElementsMatch(t, []string{"ghp1", "pw", "v"}, got)
}

type stringer struct{ s string }

func (s stringer) String() string { return s.s }

func TestHandler(t *testing.T) {
	var buf bytes.Buffer
	r := redact.New("tok-123456")
	log := slog.New(redact.Handler(r, slog.NewJSONHandler(&buf, nil)))
	log = log.With("fixed", "tok-123456").WithGroup("g")
	log.Info("message tok-123456", "s", "a tok-123456", "err", errors.New("failed: tok-123456"),
		"any", stringer{"x tok-123456"}, "n", 42, slog.Group("sub", "k", "password=abcdef"))
	out := buf.String()
	require.NotContains(t, out, "tok-123456")
	require.NotContains(t, out, "abcdef")
	require.Contains(t, out, `"n":42`)
	require.Equal(t, 6, strings.Count(out, "<redacted>"), "%s", out)
}

func TestConfigEnvNamesFindsEveryCredentialField(t *testing.T) {
	cfg, err := spec.ParseConfig("tandem.yaml", []byte(`
git:
  url: https://git.example.com/ops/desired.git
  auth: {usernameEnv: GIT_USER, tokenEnv: GIT_TOKEN}
  webhook: {secretEnv: WEBHOOK_SECRET}
api: {tokenEnv: API_TOKEN, readTokenEnv: READ_TOKEN}
providers:
  alb: [{name: prod, region: cn-hangzhou, accessKeyIdEnv: AK_ID, accessKeySecretEnv: AK_SECRET, securityTokenEnv: STS_TOKEN}]
  nacos: [{name: prod, servers: ["10.0.0.1:8848"], usernameEnv: NACOS_USER, passwordEnv: NACOS_PASSWORD}]
notify: [{name: ops, type: dingtalk, urlEnv: NOTIFY_URL, secretEnv: NOTIFY_SECRET}]
ha: {etcd: ["10.0.0.2:2379"], usernameEnv: ETCD_USER, passwordEnv: ETCD_PASSWORD}
`))
	require.NoError(t, err)
	require.ElementsMatch(t, []string{"GIT_TOKEN", "WEBHOOK_SECRET", "API_TOKEN", "READ_TOKEN", "AK_ID", "AK_SECRET", "STS_TOKEN",
		"NACOS_PASSWORD", "NOTIFY_URL", "NOTIFY_SECRET", "ETCD_PASSWORD"}, cfg.EnvNames(false))

	t.Setenv("AK_ID", "LTAIplain-id-value")
	t.Setenv("UNRELATED_VAR", "plain-value-123")
	r := redact.ForConfig(cfg)
	require.Equal(t, "<redacted> plain-value-123", r.String("LTAIplain-id-value plain-value-123"))
}
