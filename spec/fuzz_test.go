package spec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhq/tandem/spec"
)

// hostile are seeds no operator writes on purpose but a broken editor, a bad
// merge or an attacker with write access to the repository might.
var hostile = []string{
	"",
	"---\n---\n---\n",
	"\xef\xbb\xbfservice: bom\n", // byte-order mark
	"service: \xff\xfe\xfd\n",    // invalid UTF-8
	"service: a\x00b\n",          // NUL
	"service: x\nservice: y\n",   // duplicate key
	"service: &a x\nactive: *a\nversion: *a\n",       // aliases to scalars
	"a: &a [x, x]\nb: &b [*a, *a]\nc: &c [*b, *b]\n", // alias fan-out
	strings.Repeat("[", 10000) + strings.Repeat("]", 10000),
	strings.Repeat("- ", 5000) + "x\n",
	"groups:\n  A:\n    instances:\n" + strings.Repeat("      - {ip: 10.0.0.1, port: 80}\n", 2000),
	"version: !!binary aGVsbG8=\n",
	"port: 0x1F\n",
	"drain: {timeout: 9999999999999h}\n",
	"traffic: {alb: x}\n",
	"\t- tab\n",
	"? [complex, key]\n: value\n",
	"service: \"unterminated\n",
}

func seeds(f *testing.F, glob string) {
	files, err := filepath.Glob(glob)
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range hostile {
		f.Add([]byte(s))
	}
}

// FuzzParseServices: whatever the bytes, decoding never panics, every
// problem is located in the file it came from, and a file without problems
// yields services that validate.
func FuzzParseServices(f *testing.F) {
	seeds(f, "../examples/services/*.yaml")
	seeds(f, "testdata/bad/*.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		svcs, ps := spec.ParseServices("services/fuzz.yaml", data)
		for _, p := range ps {
			if p.File != "services/fuzz.yaml" || p.Line < 0 || p.Msg == "" {
				t.Fatalf("badly located problem: %+v", p)
			}
		}
		if len(ps) == 0 {
			for _, s := range svcs {
				if extra := s.Validate(); len(extra) > 0 {
					t.Fatalf("accepted a service that does not validate: %v", extra)
				}
			}
		}
	})
}

// FuzzParseConfig: a configuration is either accepted whole and valid, or
// refused with located problems; never a panic, never both.
func FuzzParseConfig(f *testing.F) {
	seeds(f, "../examples/tandem.yaml")
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := spec.ParseConfig("tandem.yaml", data)
		switch {
		case err != nil && cfg != nil:
			t.Fatalf("both a config and an error: %v", err)
		case err == nil && cfg == nil:
			t.Fatal("neither a config nor an error")
		case err == nil:
			if ps := cfg.Validate(); len(ps) > 0 {
				t.Fatalf("accepted an invalid config: %v", ps)
			}
		default:
			if ps, ok := spec.AsProblems(err); ok {
				for _, p := range ps {
					if p.File != "tandem.yaml" || p.Msg == "" {
						t.Fatalf("badly located problem: %+v", p)
					}
				}
			}
		}
	})
}
