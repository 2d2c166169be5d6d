package spec_test

import (
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// citeOutside matches a citation of a document a reader of the repository
// does not have: a numbered section of "design" or "ref", the design or
// reference notes the project was planned from, or a path outside the
// repository. Comments and docs cite the README, docs/, the code, or a
// vendor's public documentation instead.
var citeOutside = regexp.MustCompile(`\b(design|ref) ?§|/work/|(^|[^\w-])reference/[\w-]+\.md|\breference [\w-]+\.md`)

// outsideDocs are file names of those notes; citing one is an error unless
// the repository holds a file of that name.
var outsideDocs = []string{"design.md", "alibaba-lb.md", "nacos.md", "haproxy-and-harness.md", "anchors.md", "style.md"}

// Every Go, Markdown, YAML and shell file and the Makefile cite only what
// the repository holds.
func TestCommentsCiteOnlyWhatTheRepositoryHolds(t *testing.T) {
	root := moduleRoot(t)
	var files []string
	held := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		name := d.Name()
		if d.IsDir() {
			if path != root && (strings.HasPrefix(name, ".") || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		held[name] = true
		switch filepath.Ext(name) {
		case ".go", ".md", ".yaml", ".yml", ".sh":
		default:
			if name != "Makefile" {
				return nil
			}
		}
		if name != "citations_test.go" {
			files = append(files, path)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	patterns := []*regexp.Regexp{citeOutside}
	for _, doc := range outsideDocs {
		if !held[doc] {
			patterns = append(patterns, regexp.MustCompile(`(^|[^\w-])`+regexp.QuoteMeta(doc)))
		}
	}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		rel, _ := filepath.Rel(root, path)
		for i, line := range strings.Split(string(data), "\n") {
			for _, p := range patterns {
				if m := p.FindString(line); m != "" {
					t.Errorf("%s:%d: cites %q, a document outside the repository: cite the README, docs/, the code or the vendor's documentation", rel, i+1, strings.TrimSpace(m))
					break
				}
			}
		}
	}
}

// moduleRoot is the directory of go.mod above the test's directory.
func moduleRoot(t *testing.T) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the test's directory")
		}
		dir = parent
	}
}
