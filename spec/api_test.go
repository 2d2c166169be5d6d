package spec_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

func TestAPIConfigProblemsAreLocated(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(`
git: {url: /srv/desired}
api:
  readTokenEnv: "READ-TOKEN"
  metricsRequireToken: true
  allowedHosts: ["tandem.internal", "http://x:80", "*"]
  maxStreams: -1
  metadataKeys: [""]
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:4: api.readTokenEnv: must name an environment variable (letters, digits, _), got "READ-TOKEN"`,
		`tandem.yaml:6: api.allowedHosts[1]: must be a host name without scheme or port (e.g. tandem.internal), or "*", got "http://x:80"`,
		`tandem.yaml:6: api.allowedHosts[2]: "*" (any host) must be the only entry`,
		`tandem.yaml:7: api.maxStreams: must be from 1 to 10000, got -1`,
		`tandem.yaml:8: api.metadataKeys[0]: must not be empty`,
	}, "\n"))

	_, err = spec.ParseConfig("tandem.yaml", []byte("git: {url: /srv/desired}\napi: {metricsRequireToken: true}\n"))
	require.EqualError(t, err, `tandem.yaml:2: api.metricsRequireToken: needs api.readTokenEnv or api.tokenEnv: there is no token to require`)

	cfg, err := spec.ParseConfig("tandem.yaml", []byte("git: {url: /srv/desired}\napi: {allowedHosts: [tandem.internal, \"10.0.0.5\", \"[::1]\"]}\n"))
	require.NoError(t, err)
	require.Equal(t, 32, cfg.API.MaxStreams, "the default")
}
