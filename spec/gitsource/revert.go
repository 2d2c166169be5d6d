package gitsource

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/go-git/go-git/v5/utils/diff"
	"github.com/sergi/go-diff/diffmatchpatch"
)

// revertContext is how many unchanged lines on each side of a change must
// still be as they were for the change to be undone, as in `git apply`.
const revertContext = 3

// reverseApply undoes, in cur, the change that turned old into new: where
// cur still holds new's lines with their unchanged context, old's lines are
// put back. Hunks are looked for nearest to where they were, so unrelated
// edits elsewhere in the file are kept, like `git revert` does for
// non-conflicting changes. It fails, naming the line, when cur no longer
// has the changed lines or their context as new had them.
func reverseApply(old, new, cur []byte) ([]byte, error) {
	if bytes.Equal(cur, new) {
		return old, nil
	}
	oldL, newL, curL := splitLines(string(old)), splitLines(string(new)), splitLines(string(cur))
	shift, from := 0, 0
	for _, h := range hunks(diff.Do(string(old), string(new))) {
		before := min(revertContext, h.n0)
		after := min(revertContext, len(newL)-h.n1)
		start := h.n0 - before
		match := newL[start : h.n1+after]
		repl := slices.Concat(newL[start:h.n0], oldL[h.o0:h.o1], newL[h.n1:h.n1+after])
		at, ok := find(curL, match, start+shift, from)
		if !ok {
			return nil, fmt.Errorf("line %d: the lines the commit changed, or the %d lines around them, have changed since", h.n0+1, revertContext)
		}
		curL = slices.Replace(curL, at, at+len(match), repl...)
		shift = at - start + len(repl) - len(match)
		from = at + len(repl)
	}
	return []byte(strings.Join(curL, "")), nil
}

// hunk is a changed range: old lines [o0,o1) became new lines [n0,n1).
type hunk struct{ o0, o1, n0, n1 int }

// hunks lists the changed ranges of a line diff, merging ranges whose
// context would overlap.
func hunks(diffs []diffmatchpatch.Diff) []hunk {
	var hs []hunk
	oi, ni := 0, 0
	for _, d := range diffs {
		n := len(splitLines(d.Text))
		if d.Type == diffmatchpatch.DiffEqual {
			oi, ni = oi+n, ni+n
			continue
		}
		if len(hs) == 0 || hs[len(hs)-1].o1 != oi || hs[len(hs)-1].n1 != ni {
			hs = append(hs, hunk{oi, oi, ni, ni})
		}
		h := &hs[len(hs)-1]
		if d.Type == diffmatchpatch.DiffDelete {
			oi += n
			h.o1 = oi
		} else {
			ni += n
			h.n1 = ni
		}
	}
	var merged []hunk
	for _, h := range hs {
		if last := len(merged) - 1; last >= 0 && h.n0-merged[last].n1 <= 2*revertContext {
			merged[last].o1, merged[last].n1 = h.o1, h.n1
			continue
		}
		merged = append(merged, h)
	}
	return merged
}

// find returns the index of pat in lines at or after from, nearest to want.
func find(lines, pat []string, want, from int) (int, bool) {
	last := len(lines) - len(pat)
	for d := 0; want-d >= from || want+d <= last; d++ {
		for _, at := range []int{want - d, want + d} {
			if at >= from && at <= last && slices.Equal(lines[at:at+len(pat)], pat) {
				return at, true
			}
		}
	}
	return 0, false
}

// splitLines splits s after each newline; the last line may lack one.
func splitLines(s string) []string {
	lines := strings.SplitAfter(s, "\n")
	if lines[len(lines)-1] == "" {
		lines = lines[:len(lines)-1]
	}
	return lines
}
