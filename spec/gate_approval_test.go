package spec_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
)

func TestApprovalLinkConfigProblemsAreLocated(t *testing.T) {
	_, err := spec.ParseConfig("tandem.yaml", []byte(`
git: {url: /srv/desired}
api:
  externalURL: "ftp://tandem.example.com/x?y=1"
  linkKeyEnv: "LINK-KEY"
  linkTTL: 10s
`))
	require.EqualError(t, err, strings.Join([]string{
		`tandem.yaml:4: api.externalURL: must be an http or https URL where people reach this API (e.g. https://tandem.example.com), got "ftp://tandem.example.com/x?y=1"`,
		`tandem.yaml:5: api.linkKeyEnv: must name an environment variable (letters, digits, _), got "LINK-KEY"`,
		`tandem.yaml:6: api.linkTTL: must be from 1m to 168h, got 10s`,
	}, "\n"))

	_, err = spec.ParseConfig("tandem.yaml", []byte("git: {url: /srv/desired}\napi: {externalURL: \"https://u:p@tandem.example.com\", linkKeyEnv: K}\n"))
	require.ErrorContains(t, err, "tandem.yaml:2: api.externalURL: must not contain")
	require.NotContains(t, err.Error(), "u:p", "the credential is not echoed")

	_, err = spec.ParseConfig("tandem.yaml", []byte("git: {url: /srv/desired}\napi: {externalURL: \"https://tandem.example.com\"}\n"))
	require.EqualError(t, err, `tandem.yaml:2: api.externalURL: needs api.linkKeyEnv: the key that signs the approval links`)

	cfg, err := spec.ParseConfig("tandem.yaml", []byte("git: {url: /srv/desired}\napi: {externalURL: \"https://tandem.example.com/ops\", linkKeyEnv: TANDEM_LINK_KEY}\n"))
	require.NoError(t, err)
	require.Equal(t, time.Hour, cfg.API.LinkTTL.D(), "the default")
}
