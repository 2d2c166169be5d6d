package alibaba

import (
	"errors"
	"net/url"
	"os"
	"regexp"

	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

// Redactor strips credentials from the errors that leave a provider. With
// signatureVersion v2 the SDK signs in the query string, so a network
// error (*url.Error) names AccessKeyId, SecurityToken, SignatureNonce and
// Signature (darabonba-openapi DoRPCRequest; "Signature" section of
// https://www.alibabacloud.com/help/en/sdk/product-overview/rpc-mechanism);
// the service echoes its string-to-sign, which holds the same parameters,
// in signature errors; and v3 carries them in the Authorization and
// x-acs-security-token headers
// (https://www.alibabacloud.com/help/en/sdk/product-overview/v3-request-structure-and-signature).
// The zero Redactor strips those parameters and headers, and what the
// daemon-wide rules of package redact find; one built by NewRedactor also
// replaces the credential values the provider reads from the environment
// wherever they appear (raw, and URL-escaped once or twice as in a query
// and a string-to-sign). The replacement is redact.Mask, as everywhere.
type Redactor struct {
	// known is a pointer, so printing a provider (%#v) shows an address,
	// never the values.
	known *redact.Redactor
}

// NewRedactor knows the credential values of provider p: the variables its
// *Env fields name, and those of the default credential chain
// (spec.DefaultChainEnv).
// Credentials the chain fetches elsewhere (an ECS RAM role) are not known
// by value; the parameter and header rules still strip them.
func NewRedactor(p spec.AlibabaProvider) Redactor {
	var values []string
	for _, name := range append([]string{p.AccessKeyIDEnv, p.AccessKeySecretEnv, p.SecurityTokenEnv}, spec.DefaultChainEnv...) {
		if name != "" {
			values = append(values, os.Getenv(name))
		}
	}
	return Redactor{known: redact.New(values...)}
}

// credentialParams are query parameters (also inside a string-to-sign,
// where "=" and "&" are escaped as %3D and %26) and header fields that
// carry credentials. They are Alibaba's names: the daemon-wide rules would
// take "signature: ..." in any text for a credential.
var credentialParams = regexp.MustCompile(`(?i)\b(AccessKeyId|Signature|SecurityToken|SignatureNonce|Credential|x-acs-security-token|Authorization)("?\s*:\s*"?|=|%3D|%253D)(?:[^&\s"',;%]|%[^2]|%2[^6])+`)

// Text strips credentials from s.
func (r Redactor) Text(s string) string {
	return r.known.String(credentialParams.ReplaceAllString(s, "${1}${2}"+redact.Mask))
}

// Error strips credentials from err. The signed URL of a *url.Error and the
// message of an *APIError in err's chain are rewritten in place (they
// belong to this one failed call); when the text still names a credential,
// err is wrapped in an error whose message has it replaced. Either way
// errors.As and errors.Is see what they saw before, so classification
// (providers.Permanent, APIError codes, context errors) is unchanged.
func (r Redactor) Error(err error) error {
	if err == nil {
		return nil
	}
	var uerr *url.Error
	if errors.As(err, &uerr) {
		uerr.URL = r.Text(uerr.URL)
	}
	var a *APIError
	if errors.As(err, &a) {
		a.Message = r.Text(a.Message)
	}
	msg := err.Error()
	if clean := r.Text(msg); clean != msg {
		return &redactedError{msg: clean, err: err}
	}
	return err
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }
