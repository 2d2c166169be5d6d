// Package spectest builds hostile desired-state files for tests of the
// spec loader and of the Git source that runs it.
package spectest

import (
	"bytes"
	"fmt"
)

// AliasBomb is a service file of roughly 12*keys + 4*uses bytes in which one
// mapping of keys unknown fields is anchored once and its alias is used
// uses times as an instance, so a decoder that expands aliases visits
// keys*uses keys and, if it reports each unknown one, formats as many
// problems. keys=30000, uses=20000 stays under 1 MB and, before
// spec's per-revision budget, made `tandem validate` exceed 3 GB.
func AliasBomb(keys, uses int) []byte {
	var b bytes.Buffer
	b.WriteString("service: bomb\nactive: A\nversion: v1\nx: &a {")
	for i := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "k%d: 0", i)
	}
	b.WriteString("}\ngroups:\n  A:\n    instances: [")
	for i := range uses {
		if i > 0 {
			b.WriteString(",")
		}
		b.WriteString("*a")
	}
	b.WriteString("]\n")
	return b.Bytes()
}
