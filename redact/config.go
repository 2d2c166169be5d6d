package redact

import (
	"reflect"
	"strings"

	"github.com/tandemhq/tandem/spec"
)

// ConfigEnvNames returns the variables the *Env fields of cfg name, except
// user names (usernameEnv), which are not secrets and would blank out
// ordinary words. The fields are found by their YAML names, so that a
// credential field added to tandem.yaml later is covered without a change
// here.
func ConfigEnvNames(cfg *spec.Config) []string {
	var out []string
	var walk func(v reflect.Value)
	walk = func(v reflect.Value) {
		switch v.Kind() {
		case reflect.Pointer, reflect.Interface:
			if !v.IsNil() {
				walk(v.Elem())
			}
		case reflect.Slice, reflect.Array:
			for i := range v.Len() {
				walk(v.Index(i))
			}
		case reflect.Map: // Providers.Ext: instances of registered kinds
			for _, k := range v.MapKeys() {
				walk(v.MapIndex(k))
			}
		case reflect.Struct:
			t := v.Type()
			for i := range t.NumField() {
				f := t.Field(i)
				if !f.IsExported() {
					continue
				}
				name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
				if f.Type.Kind() == reflect.String && strings.HasSuffix(name, "Env") && !strings.EqualFold(name, "usernameEnv") {
					if s := v.Field(i).String(); s != "" {
						out = append(out, s)
					}
					continue
				}
				walk(v.Field(i))
			}
		}
	}
	walk(reflect.ValueOf(cfg))
	return out
}

// ForConfig returns a Redactor that knows the values of the variables
// cfg names (ConfigEnvNames) and of every variable of the process whose
// name says it holds a credential (SecretName).
func ForConfig(cfg *spec.Config) *Redactor {
	return New(Env(ConfigEnvNames(cfg)...)...)
}
