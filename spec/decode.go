package spec

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Limits that keep a hostile or broken revision from exhausting the daemon.
// They bound one load as a whole (every file and document of a revision,
// see budget), so that any revision is accepted or rejected in bounded time
// and memory: a 1 MB file in which an alias of a mapping with 30,000 keys
// is used 20,000 times is rejected after maxNodes keys, at the line where
// the budget ran out, instead of formatting 600 million problems.
const (
	MaxFileBytes     = 1 << 20   // one spec or config file
	MaxRevisionBytes = 8 << 20   // every .yaml/.yml file of one load together
	maxFiles         = 2000      // .yaml/.yml files in one load
	maxTreeEntries   = 20_000    // files and directories walked under git.path
	maxDocuments     = 1000      // documents in one file
	maxLoadDocuments = 5000      // documents in one load
	maxNodes         = 1_000_000 // YAML nodes visited per load, mapping keys included and aliases expanded
	MaxProblems      = 200       // problems listed per load; the rest are counted in a last "... and N more problems"
	maxDepth         = 64        // nesting depth
	maxScalarLength  = 64 << 10
)

// budget is what one load (a revision, or one file given on its own) may
// still spend. One budget is shared by every file and document of a load:
// a fresh budget per document would let many documents multiply it.
type budget struct {
	nodes, docs, entries int
	bytes                int64
	listed, dropped      int      // problems kept, and counted beyond MaxProblems
	exhausted            bool     // maxNodes was passed: decoding stops everywhere
	stop                 *Problem // where and why it stopped: listed first
}

// finish sorts ps, keeps the first MaxProblems and counts the rest (with
// those dropped while decoding) in a last line without a file. The problem
// that stopped decoding, if any, comes first: it explains the rest.
func (b *budget) finish(ps Problems) error {
	if b.stop != nil {
		ps = slices.DeleteFunc(slices.Clone(ps), func(p Problem) bool { return p == *b.stop })
	}
	err := ps.Err()
	if err == nil && b.stop == nil {
		return nil
	}
	sorted, _ := err.(Problems)
	more := b.dropped
	if len(sorted) > MaxProblems {
		more += len(sorted) - MaxProblems
		sorted = sorted[:MaxProblems]
	}
	if b.stop != nil {
		sorted = append(Problems{*b.stop}, sorted...)
	}
	if more > 0 {
		sorted = append(sorted, Problem{Msg: fmt.Sprintf("... and %d more problems", more), more: more})
	}
	return sorted
}

// scalarDecoder is implemented by types that parse themselves from one YAML
// scalar (Duration, Group). The error text becomes the problem message.
type scalarDecoder interface {
	decodeScalar(s string) error
}

// positions maps a field path (groups.B.instances[1].port) to the line that
// defined it, so that validation, which runs on typed values, can still point
// at the line an operator must edit.
type positions map[string]int

// line returns the line of path, or of its nearest ancestor that has one.
func (p positions) line(path string) int {
	for {
		if l, ok := p[path]; ok {
			return l
		}
		i := strings.LastIndexAny(path, ".[")
		if i < 0 {
			return p[""]
		}
		path = path[:i]
	}
}

// decoder walks a yaml.Node tree into a Go value. Unlike yaml.v3's own
// decoding it never stops at the first problem, it rejects unknown fields
// and duplicate keys, and every problem carries the file, line and field path.
type decoder struct {
	file     string
	problems Problems // those kept within the budget
	failed   bool     // any problem, kept or only counted
	pos      positions
	budget   *budget
	alias    int // while expanding an alias: the line of its outermost use
}

func newDecoder(file string, b *budget) *decoder {
	return &decoder{file: file, pos: positions{}, budget: b}
}

// problem records a problem, or only counts it once the load has listed
// MaxProblems: the message is not even formatted then.
func (d *decoder) problem(line int, path, format string, args ...any) {
	d.failed = true
	if d.budget.listed >= MaxProblems {
		d.budget.dropped++
		return
	}
	d.budget.listed++
	d.problems = append(d.problems, Problem{File: d.file, Line: line, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// spend counts the visit of node n (a value, or a mapping key) against the
// load's budget. Past maxNodes it reports once, at n, and returns false
// from then on for every node of every file of the load.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	b := d.budget
	if b.exhausted {
		return false
	}
	b.nodes++
	if b.nodes <= maxNodes {
		return true
	}
	b.exhausted = true
	d.failed = true
	// Always listed, even past MaxProblems: it is why decoding stopped. It
	// points at the use of the alias being expanded, if any.
	line := n.Line
	if d.alias != 0 {
		line = d.alias
	}
	b.stop = &Problem{File: d.file, Line: line, Path: path,
		Msg: fmt.Sprintf("the desired state is too large or uses too many aliases: over %d YAML nodes in this revision (mapping keys included, each use of an alias counted again); decoding stopped here", maxNodes)}
	d.problems = append(d.problems, *b.stop)
	return false
}

// splitDocuments parses every YAML document of data into nodes. A syntax
// error is a single problem for the file: yaml.v3 cannot recover past it.
func splitDocuments(file string, data []byte, b *budget) ([]*yaml.Node, Problems) {
	if len(data) > MaxFileBytes {
		return nil, Problems{{File: file, Msg: fmt.Sprintf("file is %d bytes; the limit is %d", len(data), MaxFileBytes)}}
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var docs []*yaml.Node
	for {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			return docs, nil
		}
		if err != nil {
			return nil, Problems{yamlSyntaxProblem(file, err)}
		}
		if len(docs) == maxDocuments {
			return nil, Problems{{File: file, Line: n.Line, Msg: fmt.Sprintf("more than %d YAML documents", maxDocuments)}}
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].Tag == "!!null") {
			continue // an empty document, e.g. a file of comments or a trailing ---
		}
		if b.docs++; b.docs > maxLoadDocuments {
			return nil, Problems{{File: file, Line: n.Content[0].Line, Msg: fmt.Sprintf("more than %d YAML documents in this revision", maxLoadDocuments)}}
		}
		docs = append(docs, n.Content[0])
	}
}

// yamlSyntaxProblem turns yaml.v3's "yaml: line 3: did not find expected key"
// into a located problem.
func yamlSyntaxProblem(file string, err error) Problem {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	line := 0
	if rest, ok := strings.CutPrefix(msg, "line "); ok {
		if i := strings.Index(rest, ":"); i > 0 {
			if n, convErr := strconv.Atoi(rest[:i]); convErr == nil {
				line = n
				msg = strings.TrimSpace(rest[i+1:])
			}
		}
	}
	return Problem{File: file, Line: line, Msg: "invalid YAML: " + msg}
}

// decode fills v (a pointer) from n.
func (d *decoder) decode(n *yaml.Node, v any) {
	d.value(n, reflect.ValueOf(v).Elem(), "", 0)
}

func (d *decoder) value(n *yaml.Node, v reflect.Value, path string, depth int) {
	if !d.spend(n, path) {
		return
	}
	if depth > maxDepth {
		d.problem(n.Line, path, "nested deeper than %d levels", maxDepth)
		return
	}
	if n.Kind == yaml.AliasNode {
		outer := d.alias
		if outer == 0 {
			d.alias = n.Line
		}
		d.value(n.Alias, v, path, depth+1)
		d.alias = outer
		return
	}
	if _, seen := d.pos[path]; !seen {
		d.pos[path] = n.Line
	}
	if isNull(n) {
		return // leave the zero value: defaults fill it, validation reports it if required
	}
	if sd, ok := v.Addr().Interface().(scalarDecoder); ok {
		if s, ok := d.scalar(n, path); ok {
			if err := sd.decodeScalar(s); err != nil {
				d.problem(n.Line, path, "%s", err.Error())
			}
		}
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := reflect.New(v.Type().Elem())
		d.value(n, elem.Elem(), path, depth+1)
		v.Set(elem)
	case reflect.Struct:
		d.structure(n, v, path, depth)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.problem(n.Line, path, "must be a list, got %s", describe(n))
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			d.value(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), depth+1)
		}
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
		d.entries(n, path, func(k *yaml.Node, key string, val *yaml.Node) {
			elem := reflect.New(v.Type().Elem()).Elem()
			d.value(val, elem, join(path, key), depth+1)
			m.SetMapIndex(reflect.ValueOf(key).Convert(v.Type().Key()), elem)
		})
		v.Set(m)
	case reflect.String:
		if s, ok := d.scalar(n, path); ok {
			v.SetString(s)
		}
	case reflect.Bool:
		if s, ok := d.scalar(n, path); ok {
			b, err := strconv.ParseBool(s)
			if n.Tag != "!!bool" || err != nil {
				d.problem(n.Line, path, "must be true or false, got %q", s)
				return
			}
			v.SetBool(b)
		}
	case reflect.Int, reflect.Int32, reflect.Int64:
		if s, ok := d.scalar(n, path); ok {
			i, err := strconv.ParseInt(s, 0, 64)
			if n.Tag != "!!int" || err != nil || v.OverflowInt(i) {
				d.problem(n.Line, path, "must be an integer, got %q", s)
				return
			}
			v.SetInt(i)
		}
	case reflect.Float64:
		if s, ok := d.scalar(n, path); ok {
			f, err := strconv.ParseFloat(s, 64)
			if (n.Tag != "!!int" && n.Tag != "!!float") || err != nil {
				d.problem(n.Line, path, "must be a number, got %q", s)
				return
			}
			v.SetFloat(f)
		}
	default:
		panic(fmt.Sprintf("spec: no YAML decoding for %s", v.Type()))
	}
}

func (d *decoder) structure(n *yaml.Node, v reflect.Value, path string, depth int) {
	fields := fieldsOf(v.Type())
	d.entries(n, path, func(k *yaml.Node, key string, val *yaml.Node) {
		idx, ok := fields.index[key]
		if !ok {
			if d.extra(v, key, val, join(path, key), depth) {
				return
			}
			names := fields.names
			if more := extraNames(v); len(more) > 0 {
				names = append(slices.Clone(names), more...)
				sort.Strings(names)
			}
			d.problem(k.Line, join(path, key), "unknown field; expected one of: %s", strings.Join(names, ", "))
			return
		}
		d.value(val, v.Field(idx), join(path, key), depth+1)
	})
}

// extra decodes a key that a registered load-balancer kind declares
// (kinds.go): one of its binding fields, or its list of provider instances.
func (d *decoder) extra(v reflect.Value, key string, val *yaml.Node, path string, depth int) bool {
	switch x := v.Addr().Interface().(type) {
	case *Binding:
		if !slices.Contains(extraBindingFields(), key) {
			return false
		}
		var s string
		d.value(val, reflect.ValueOf(&s).Elem(), path, depth+1)
		if x.Ext == nil {
			x.Ext = map[string]string{}
		}
		x.Ext[key] = s
		return true
	case *Providers:
		k, ok := LookupLBKind(key)
		if !ok || k.Config == nil {
			return false
		}
		t := reflect.TypeOf(k.Config)
		if t.Kind() == reflect.Pointer {
			t = t.Elem()
		}
		list := reflect.New(reflect.SliceOf(t)).Elem()
		d.value(val, list, path, depth+1)
		out := make([]ProviderConfig, list.Len())
		for i := range out {
			out[i] = list.Index(i).Addr().Interface().(ProviderConfig)
		}
		if x.Ext == nil {
			x.Ext = map[string][]ProviderConfig{}
		}
		x.Ext[key] = out
		return true
	}
	return false
}

// extraNames are the keys extra accepts in v.
func extraNames(v reflect.Value) []string {
	switch v.Addr().Interface().(type) {
	case *Binding:
		return extraBindingFields()
	case *Providers:
		var out []string
		for _, k := range LBKinds() {
			if k.Config != nil {
				out = append(out, k.Name)
			}
		}
		return out
	}
	return nil
}

// entries calls f for each key of a mapping node, reporting a node that is
// not a mapping, keys that are not scalars, and duplicate keys.
func (d *decoder) entries(n *yaml.Node, path string, f func(k *yaml.Node, key string, val *yaml.Node)) {
	if n.Kind != yaml.MappingNode {
		d.problem(n.Line, path, "must be a mapping, got %s", describe(n))
		return
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if !d.spend(k, path) {
			return
		}
		key, ok := d.scalar(k, path)
		if !ok {
			continue
		}
		if first, dup := seen[key]; dup {
			d.problem(k.Line, join(path, key), "duplicate key (first defined on line %d)", first)
			continue
		}
		seen[key] = k.Line
		f(k, key, val)
	}
}

// scalar returns the text of a scalar node, reporting anything else.
func (d *decoder) scalar(n *yaml.Node, path string) (string, bool) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		d.problem(n.Line, path, "must be a single value, got %s", describe(n))
		return "", false
	}
	if len(n.Value) > maxScalarLength {
		d.problem(n.Line, path, "value is longer than %d bytes", maxScalarLength)
		return "", false
	}
	return n.Value, true
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Tag == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	default:
		return fmt.Sprintf("%q", n.Value)
	}
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

type structFields struct {
	index map[string]int
	names []string
}

var fieldCache sync.Map // reflect.Type -> structFields

func fieldsOf(t reflect.Type) structFields {
	if f, ok := fieldCache.Load(t); ok {
		return f.(structFields)
	}
	f := structFields{index: map[string]int{}}
	for i := 0; i < t.NumField(); i++ {
		name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		f.index[name] = i
		f.names = append(f.names, name)
	}
	sort.Strings(f.names)
	fieldCache.Store(t, f)
	return f
}
