package alibaba

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

func TestRedactorStripsSignedParametersHeadersAndKnownValues(t *testing.T) {
	t.Setenv("T_AK_ID", "LTAIknown42")
	t.Setenv("T_AK_SECRET", "known-secret+/=")
	r := NewRedactor(spec.AlibabaProvider{AccessKeyIDEnv: "T_AK_ID", AccessKeySecretEnv: "T_AK_SECRET"})
	for in, want := range map[string]string{
		`Post "http://alb/?AccessKeyId=LTAIx&Action=List&SecurityToken=CAIS%2Bx&Signature=ab%3D&SignatureMethod=HMAC-SHA1&SignatureNonce=f00": EOF`: `Post "http://alb/?AccessKeyId=<redacted>&Action=List&SecurityToken=<redacted>&Signature=<redacted>&SignatureMethod=HMAC-SHA1&SignatureNonce=<redacted>": EOF`,
		`string to sign is:POST&%2F&AccessKeyId%3DLTAIx%26Action%3DList`:                                                                            `string to sign is:POST&%2F&AccessKeyId%3D<redacted>%26Action%3DList`,
		`Authorization: ACS3-HMAC-SHA256 Credential=LTAIx,SignedHeaders=host,Signature=9f; x-acs-security-token: CAIS`:                              `Authorization: <redacted> Credential=<redacted>,SignedHeaders=host,Signature=<redacted>; x-acs-security-token: <redacted>`,
		`key LTAIknown42 with known-secret%2B%2F%3D`:                                                                                                `key <redacted> with <redacted>`,
		`InvalidCredentials: SignatureVersion 1.0 is fine`:                                                                                          `InvalidCredentials: SignatureVersion 1.0 is fine`,
	} {
		require.Equal(t, want, r.Text(in))
		// The daemon-wide redactor, which sees these errors again in
		// status, events and logs, agrees: it leaves them as they are.
		require.Equal(t, want, redact.New().String(want))
	}
}
