package redact_test

import (
	"os"
	"strings"
	"testing"

	"github.com/tandemhq/tandem/redact"
)

// BenchmarkStatusJSON redacts a status answer of 1,000 services (3.3 MB,
// no credential in it): go test -run - -bench StatusJSON ./redact
func BenchmarkStatusJSON(b *testing.B) {
	one, err := os.ReadFile("../server/testdata/services.json")
	if err != nil {
		b.Fatal(err)
	}
	doc := []byte(strings.Repeat(string(one), 3300000/len(one)))
	r := redact.New("a-known-secret-value", "another+secret/value=")
	b.SetBytes(int64(len(doc)))
	for b.Loop() {
		r.Bytes(doc)
	}
}
