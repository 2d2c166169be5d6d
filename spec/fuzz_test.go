package spec_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/spectest"
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
	// Alias-heavy: a mapping of unknown keys, anchored once and used many
	// times (each use costs its keys again), nested fan-out of mappings,
	// aliases as keys, as a list of lists, across documents.
	string(spectest.AliasBomb(300, 400)),
	"x: &a {k0: 0, k1: 0, k2: 0, k3: 0}\ny: &b {a: *a, b: *a, c: *a, d: *a}\nz: &c {a: *b, b: *b, c: *b, d: *b}\ngroups: {A: {instances: [*c, *c, *c, *c, *c, *c, *c, *c]}}\n",
	"k: &k service\n*k : x\n? *k\n: y\n",
	"a: &a [x, x, x, x]\nafter: [*a, *a, *a, *a]\ntraffic: [*a, *a]\n",
	"git: {url: /srv/desired}\nx: &a {k0: 0, k1: 0, k2: 0, k3: 0, k4: 0}\nnotify: [" + strings.TrimSuffix(strings.Repeat("*a, ", 500), ", ") + "]\n",
	strings.Repeat("---\nx: &a {k: 0}\ngroups: {A: {instances: [*a, *a, *a]}, B: *a}\n", 50),
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
		checkProblems(t, ps, "services/fuzz.yaml")
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
				checkProblems(t, ps, "tandem.yaml")
			}
		}
	})
}

// checkProblems: every problem is located in file, and the list is capped
// (the one that stopped decoding, MaxProblems, "... and N more problems").
func checkProblems(t *testing.T, ps spec.Problems, file string) {
	t.Helper()
	if len(ps) > spec.MaxProblems+2 {
		t.Fatalf("%d problems listed; the cap is %d", len(ps), spec.MaxProblems)
	}
	for i, p := range ps {
		if i == len(ps)-1 && p.File == "" && strings.HasPrefix(p.Msg, "... and ") && ps.Count() > len(ps) {
			continue
		}
		if p.File != file || p.Line < 0 || p.Msg == "" {
			t.Fatalf("badly located problem: %+v", p)
		}
	}
}
