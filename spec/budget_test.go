package spec_test

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/spectest"
)

const tooManyNodes = "the desired state is too large or uses too many aliases"

// loadProblems loads fsys and returns its problems, which there must be.
func loadProblems(t testing.TB, fsys fstest.MapFS) spec.Problems {
	t.Helper()
	set, err := spec.Load(fsys, "services", nil)
	require.Nil(t, set)
	ps, ok := spec.AsProblems(err)
	require.True(t, ok, "not located problems: %v", err)
	return ps
}

// The alias bomb that made `tandem validate` exceed 3 GB (a 380 KB file: a
// mapping of 30,000 unknown keys anchored once, its alias used 20,000
// times) is rejected at the use of the alias where the budget ran out,
// with at most MaxProblems listed, and allocating a bounded amount: the
// bound is on bytes allocated, which does not depend on the machine.
func TestAliasBombIsRejectedWithinBoundedMemory(t *testing.T) {
	bomb := spectest.AliasBomb(30_000, 20_000)
	require.Less(t, len(bomb), spec.MaxFileBytes)
	fsys := fstest.MapFS{"services/bomb.yaml": {Data: bomb}}

	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ps := loadProblems(t, fsys)
	runtime.ReadMemStats(&after)

	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("allocated %d MiB for %d problems", allocated>>20, ps.Count())
	require.Less(t, allocated, uint64(512<<20), "bytes allocated to reject the bomb")
	require.Regexp(t, `^services/bomb\.yaml:7: groups\.A\.instances\[\d+\]: `+tooManyNodes, ps[0].String())
	require.Len(t, ps, spec.MaxProblems+2) // the stop, MaxProblems, "... and N more"
	require.Regexp(t, `^\.\.\. and \d+ more problems$`, ps[len(ps)-1].String())
	require.Greater(t, ps.Count(), 900_000) // every unknown key visited before the stop is counted
}

// One budget covers every document and file of a load: a file that is
// within it alone does not get a fresh one per document or per file.
func TestNodeBudgetIsSharedByDocumentsAndFiles(t *testing.T) {
	part := spectest.AliasBomb(1000, 150) // 150,000 keys: well within one budget
	one := loadProblems(t, fstest.MapFS{"services/a.yaml": {Data: part}})
	require.NotContains(t, one.Error(), tooManyNodes)

	docs := bytes.Repeat(append([]byte("---\n"), part...), 8)
	require.Contains(t, loadProblems(t, fstest.MapFS{"services/a.yaml": {Data: docs}}).Error(), tooManyNodes)

	files := fstest.MapFS{}
	for i := range 8 {
		files[fmt.Sprintf("services/s%d.yaml", i)] = &fstest.MapFile{Data: part}
	}
	ps := loadProblems(t, files)
	require.Contains(t, ps[0].String(), tooManyNodes)
}

func TestProblemsAreCappedWithACount(t *testing.T) {
	var b strings.Builder
	b.WriteString("service: many\n")
	for i := range 1000 {
		fmt.Fprintf(&b, "unknown%d: x\n", i)
	}
	ps := loadProblems(t, fstest.MapFS{"services/many.yaml": {Data: []byte(b.String())}})
	require.Len(t, ps, spec.MaxProblems+1)
	require.Contains(t, ps.Error(), "\nservices/many.yaml:2: unknown0: unknown field; expected one of: active, after,")
	require.Equal(t, fmt.Sprintf("... and %d more problems", ps.Count()-spec.MaxProblems), ps[len(ps)-1].String())
	require.GreaterOrEqual(t, ps.Count(), 1000)
}

func TestRevisionSizeIsBounded(t *testing.T) {
	files := fstest.MapFS{}
	chunk := bytes.Repeat([]byte("# padding\n"), (spec.MaxFileBytes-100)/10)
	for i := range spec.MaxRevisionBytes/len(chunk) + 1 {
		files[fmt.Sprintf("services/f%02d.yaml", i)] = &fstest.MapFile{Data: chunk}
	}
	ps := loadProblems(t, files)
	require.Contains(t, ps.Error(), fmt.Sprintf("hold more than %d bytes, the limit for one revision", spec.MaxRevisionBytes))

	many := fstest.MapFS{}
	for i := range 20_001 {
		many[fmt.Sprintf("services/x%d.txt", i)] = &fstest.MapFile{Data: []byte("x")}
	}
	require.Contains(t, loadProblems(t, many).Error(), "services: holds more than 20000 files and directories")
}

// BenchmarkAliasBomb prints how long the bomb takes to reject and what it
// allocates (go test ./spec -run '^$' -bench AliasBomb -benchmem).
func BenchmarkAliasBomb(b *testing.B) {
	fsys := fstest.MapFS{"services/bomb.yaml": {Data: spectest.AliasBomb(30_000, 20_000)}}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := spec.Load(fsys, "services", nil); err == nil {
			b.Fatal("the bomb was accepted")
		}
	}
}
