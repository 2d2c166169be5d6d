package redact

import "github.com/tandemhq/tandem/spec"

// ForConfig returns a Redactor that knows the values of the variables the
// *Env fields of cfg name, user names aside (spec.Config.EnvNames), and of
// every variable of the process whose name says it holds a credential
// (SecretName).
func ForConfig(cfg *spec.Config) *Redactor {
	return New(Env(cfg.EnvNames(false)...)...)
}
