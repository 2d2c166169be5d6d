package spec_test

import (
	"os"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

// smokeService is validService with gates.smoke from line 13 on.
const smokeService = validService + `gates:
  smoke:
    http:
      - path: /api/users/1
      - name: create
        method: post
        path: /api/users
        port: 8081
        headers: {Content-Type: application/json}
        body: '{"name": "smoke"}'
        timeout: 3s
        expect: {status: [201, 409], bodyContains: '"id"', bodyMatches: '"name":\s*"smoke"'}
    exec:
      command: ["./smoke.sh", "--quick"]
`

func loadSmoke(t *testing.T, config, service string) (*spec.Service, error) {
	t.Helper()
	var cfg *spec.Config
	if config != "" {
		var err error
		cfg, err = spec.ParseConfig("tandem.yaml", []byte(config))
		require.NoError(t, err)
	}
	set, err := spec.Load(fstest.MapFS{"services/user.yaml": {Data: []byte(service)}}, "services", cfg)
	if err != nil {
		return nil, err
	}
	return set.Services[0], nil
}

func TestSmokeGateIsDecodedWithItsDefaults(t *testing.T) {
	svc, err := loadSmoke(t, `
git: {url: "file:///srv/fleet.git"}
providers:
  alb: [{name: prod-hz, region: cn-hangzhou}]
  nacos: [{name: prod, servers: ["127.0.0.1:8848"]}]
policy: {hooks: {commands: ["./deploy.sh", "./smoke.sh"]}}
`, smokeService)
	require.NoError(t, err)
	g := svc.Gates.Smoke
	require.NotNil(t, g)
	require.Len(t, g.HTTP, 2)
	first := g.HTTP[0]
	require.Equal(t, "GET /api/users/1", first.Name, "the name defaults to the request")
	require.Equal(t, "GET", first.Method)
	require.Equal(t, "http", first.Scheme)
	require.Equal(t, spec.Duration(spec.DefaultSmokeTimeout), first.Timeout)
	require.True(t, first.Expect.StatusOK(204))
	require.False(t, first.Expect.StatusOK(302), "without expect.status only 2xx passes")

	second := g.HTTP[1]
	require.Equal(t, "POST", second.Method, "the method is upper-cased")
	require.Equal(t, 8081, second.Port)
	require.Equal(t, map[string]string{"Content-Type": "application/json"}, second.Headers)
	require.True(t, second.Expect.StatusOK(409))
	require.False(t, second.Expect.StatusOK(200))
	require.Equal(t, `status 201 or 409, body containing "\"id\"", body matching /"name":\s*"smoke"/`, second.Expect.Describe())

	require.Equal(t, []string{"./smoke.sh", "--quick"}, g.Exec.Command)
	require.Equal(t, spec.Duration(spec.DefaultSmokeExecTimeout), g.Exec.Timeout)
}

func TestBadSmokeGatesAreRefusedWithFileLineAndField(t *testing.T) {
	for _, tc := range []struct {
		name, yaml, want string
	}{
		{"empty", "gates:\n  smoke: {}\n",
			"services/user.yaml:15: gates.smoke: must set http checks or exec (or leave gates.smoke out)"},
		{"relative path", "gates:\n  smoke:\n    http:\n      - path: api\n",
			`services/user.yaml:17: gates.smoke.http[0].path: must start with /, got "api"`},
		{"duplicate names", "gates:\n  smoke:\n    http:\n      - {name: a, path: /a}\n      - {name: a, path: /b}\n",
			`services/user.yaml:18: gates.smoke.http[1].name: "a" is already the name of gates.smoke.http[0]; names tell the results apart`},
		{"bad method", "gates:\n  smoke:\n    http:\n      - {path: /a, method: 'GE T'}\n",
			`services/user.yaml:17: gates.smoke.http[0].method: must be an HTTP method such as GET or POST, got "GE T"`},
		{"bad scheme", "gates:\n  smoke:\n    http:\n      - {path: /a, scheme: ftp}\n",
			`services/user.yaml:17: gates.smoke.http[0].scheme: must be http or https, got "ftp"`},
		{"bad port", "gates:\n  smoke:\n    http:\n      - path: /a\n        port: 70000\n",
			"services/user.yaml:18: gates.smoke.http[0].port: must be 1..65535 (or left out: the instance's port), got 70000"},
		{"bad header", "gates:\n  smoke:\n    http:\n      - path: /a\n        headers:\n          'Bad Header': x\n",
			"services/user.yaml:19: gates.smoke.http[0].headers.Bad Header: must be an HTTP header name (letters, digits and !#$%&'*+-.^_`|~)"},
		{"host header", "gates:\n  smoke:\n    http:\n      - path: /a\n        headers: {Host: evil.example}\n",
			"services/user.yaml:18: gates.smoke.http[0].headers.Host: is set by Tandem and may not be given"},
		{"status out of range", "gates:\n  smoke:\n    http:\n      - path: /a\n        expect:\n          status: [200, 999]\n",
			"services/user.yaml:19: gates.smoke.http[0].expect.status[1]: must be an HTTP status code (100..599), got 999"},
		{"status not a list", "gates:\n  smoke:\n    http:\n      - path: /a\n        expect: {status: 200}\n",
			`services/user.yaml:18: gates.smoke.http[0].expect.status: must be a list, got`},
		{"bad regexp", "gates:\n  smoke:\n    http:\n      - path: /a\n        expect: {bodyMatches: 'a(b'}\n",
			"services/user.yaml:18: gates.smoke.http[0].expect.bodyMatches: is not a valid regular expression: error parsing regexp: missing closing ): `a(b`"},
		{"timeout too long", "gates:\n  smoke:\n    http:\n      - {path: /a, timeout: 1h}\n",
			"services/user.yaml:17: gates.smoke.http[0].timeout: must be between 10ms and 5m, got 1h0m0s"},
		{"unknown field", "gates:\n  smoke:\n    http:\n      - {path: /a, expected: {status: [200]}}\n",
			"services/user.yaml:17: gates.smoke.http[0].expected: unknown field; expected one of: body, expect, headers, method, name, path, port, scheme, timeout"},
		{"exec without command", "gates:\n  smoke:\n    exec: {timeout: 1m}\n",
			"services/user.yaml:16: gates.smoke.exec.command: is required: the command and its arguments"},
		{"exec timeout too short", "gates:\n  smoke:\n    exec: {command: [./deploy.sh], timeout: 10ms}\n",
			"services/user.yaml:16: gates.smoke.exec.timeout: must be at least 1s, got 10ms"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := loadSmoke(t, "", validService+tc.yaml)
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestSmokeExecMustBeAllowedByTheHookPolicy(t *testing.T) {
	// policyConfig allows /opt/deploy/*.sh only.
	ok := validService + "gates:\n  smoke:\n    exec: {command: [/opt/deploy/smoke.sh]}\n"
	_, err := loadSmoke(t, policyConfig, ok)
	require.ErrorContains(t, err, `deploy.exec[0]: "./deploy.sh" is not one of the commands`, "the deploy hook of validService is checked too")
	ok = replaceDeploy(ok)
	_, err = loadSmoke(t, policyConfig, ok)
	require.NoError(t, err)

	refused := replaceDeploy(validService + "gates:\n  smoke:\n    exec: {command: [/bin/sh, -c, env]}\n")
	_, err = loadSmoke(t, policyConfig, refused)
	require.EqualError(t, err, `services/user.yaml:16: gates.smoke.exec.command[0]: "/bin/sh" is not one of the commands policy.hooks.commands in tandem.yaml:8 allows`)

	_, err = loadSmoke(t, "git: {url: \"file:///srv/fleet.git\"}\nproviders:\n  alb: [{name: prod-hz, region: cn-hangzhou}]\n  nacos: [{name: prod, servers: [\"127.0.0.1:8848\"]}]\n", refused)
	require.ErrorContains(t, err, `services/user.yaml:16: gates.smoke.exec.command[0]: "/bin/sh" may not run: exec hooks are refused until policy.hooks.commands in tandem.yaml (not set) lists the commands the daemon may run for Git`)
}

func replaceDeploy(s string) string {
	return strings.Replace(s, `deploy: {exec: ["./deploy.sh"]}`, `deploy: {exec: ["/opt/deploy/user.sh"]}`, 1)
}

// The example of the README's "Smoke tests" section is a valid gates block.
func TestTheReadmeSmokeExampleIsValid(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	_, section, ok := strings.Cut(string(readme), "### Smoke tests\n")
	require.True(t, ok)
	_, block, ok := strings.Cut(section, "```yaml\n")
	require.True(t, ok)
	block, _, ok = strings.Cut(block, "```")
	require.True(t, ok)
	svc, err := loadSmoke(t, strings.Replace(policyConfig, `commands: ["/opt/deploy/*.sh"]`, `commands: ["/opt/deploy/*.sh", "./deploy.sh"]`, 1), validService+block)
	require.NoError(t, err)
	require.Len(t, svc.Gates.Smoke.HTTP, 2)
	require.NotNil(t, svc.Gates.Smoke.Exec)
}
