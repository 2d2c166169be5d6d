package spec

import (
	"fmt"
	"sort"
	"strings"
)

// Problem is one thing wrong with an input file, located precisely enough for
// an operator to fix it without reading Tandem's source:
//
//	services/user.yaml:14: groups.B.instances[1].port: must be 1..65535
type Problem struct {
	File string // path as given to the loader (relative to the repo root when loaded from Git)
	Line int    // 1-based; 0 when the problem concerns the file as a whole
	Path string // dotted field path, e.g. groups.B.instances[1].port; empty for file-level problems
	Msg  string
	more int // on the last line of a capped list: how many problems it stands for
}

func (p Problem) String() string {
	if p.File == "" && p.Line == 0 && p.Path == "" {
		return p.Msg // "... and N more problems"
	}
	var b strings.Builder
	b.WriteString(p.File)
	if p.Line > 0 {
		fmt.Fprintf(&b, ":%d", p.Line)
	}
	b.WriteString(": ")
	if p.Path != "" {
		b.WriteString(p.Path)
		b.WriteString(": ")
	}
	b.WriteString(p.Msg)
	return b.String()
}

// Problems is every problem found in one load. Validation never stops at the
// first problem: operators fix a whole commit at once.
type Problems []Problem

// Error renders one problem per line, sorted by file and line.
func (ps Problems) Error() string {
	lines := make([]string, len(ps))
	for i, p := range ps {
		lines[i] = p.String()
	}
	return strings.Join(lines, "\n")
}

// Count is how many problems ps stands for: with a list capped at
// MaxProblems, its last line counts the problems left out.
func (ps Problems) Count() int {
	n := 0
	for _, p := range ps {
		n += max(1, p.more)
	}
	return n
}

// Err returns nil when there are no problems, else the sorted Problems.
func (ps Problems) Err() error {
	if len(ps) == 0 {
		return nil
	}
	sorted := append(Problems(nil), ps...)
	sort.SliceStable(sorted, func(i, j int) bool {
		if (sorted[i].more > 0) != (sorted[j].more > 0) {
			return sorted[j].more > 0 // "... and N more problems" stays last
		}
		if sorted[i].File != sorted[j].File {
			return sorted[i].File < sorted[j].File
		}
		return sorted[i].Line < sorted[j].Line
	})
	return sorted
}
