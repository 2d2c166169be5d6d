package gitsource

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

// field is a top-level key of a service document and its new value.
type field struct{ key, value string }

// setFields rewrites top-level scalar values of the document that defines
// service in a YAML file. Only the bytes of each value change: comments,
// layout, key order, other documents and the value's quoting style stay as
// they were (a plain value that would not read back as a string, such as
// 2.10, is double-quoted).
func setFields(file string, data []byte, service string, fields []field) ([]byte, error) {
	doc, err := findDocument(data, service)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	type replacement struct {
		start, end int
		text       string
	}
	var reps []replacement
	for _, f := range fields {
		n := mappingValue(doc, f.key)
		if n == nil {
			return nil, fmt.Errorf("%s: service %s has no %s field to edit", file, service, f.key)
		}
		start, end, err := scalarSpan(data, n)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %s: %w; edit it by hand", file, n.Line, f.key, err)
		}
		reps = append(reps, replacement{start, end, renderScalar(f.value, n.Style)})
	}
	slices.SortFunc(reps, func(a, b replacement) int { return b.start - a.start })
	out := bytes.Clone(data)
	for _, r := range reps {
		out = slices.Concat(out[:r.start], []byte(r.text), out[r.end:])
	}
	return out, nil
}

// findDocument returns the mapping of the document whose service is name.
func findDocument(data []byte, name string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("no document defines service %s", name)
		}
		if err != nil {
			return nil, fmt.Errorf("parsing YAML: %w", err)
		}
		if len(doc.Content) == 0 {
			continue
		}
		if n := mappingValue(doc.Content[0], "service"); n != nil && n.Value == name {
			return doc.Content[0], nil
		}
	}
}

func mappingValue(m *yaml.Node, key string) *yaml.Node {
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return m.Content[i+1]
		}
	}
	return nil
}

// scalarSpan finds the bytes of a one-line plain or quoted scalar.
func scalarSpan(data []byte, n *yaml.Node) (int, int, error) {
	if n.Kind != yaml.ScalarNode || n.Style&(yaml.TaggedStyle|yaml.LiteralStyle|yaml.FoldedStyle) != 0 || n.Anchor != "" {
		return 0, 0, errors.New("the value is not a plain or quoted scalar")
	}
	lineStart := 0
	for line := 1; line < n.Line; line++ {
		i := bytes.IndexByte(data[lineStart:], '\n')
		if i < 0 {
			return 0, 0, errors.New("the value is not where the parser put it")
		}
		lineStart += i + 1
	}
	line := data[lineStart:]
	if i := bytes.IndexByte(line, '\n'); i >= 0 {
		line = line[:i]
	}
	// yaml.v3 counts columns in characters, from 1.
	start := 0
	for col := 1; col < n.Column; col++ {
		_, size := utf8.DecodeRune(line[start:])
		if size == 0 {
			return 0, 0, errors.New("the value is not where the parser put it")
		}
		start += size
	}
	end := -1
	switch n.Style {
	case yaml.DoubleQuotedStyle:
		for i := start + 1; i < len(line); i++ {
			if line[i] == '\\' {
				i++
			} else if line[i] == '"' {
				end = i + 1
				break
			}
		}
	case yaml.SingleQuotedStyle:
		for i := start + 1; i < len(line); i++ {
			if line[i] == '\'' {
				if i+1 < len(line) && line[i+1] == '\'' {
					i++
					continue
				}
				end = i + 1
				break
			}
		}
	default:
		if bytes.HasPrefix(line[start:], []byte(n.Value)) {
			end = start + len(n.Value)
		}
	}
	if end < 0 {
		return 0, 0, errors.New("the value spans more than one line")
	}
	return lineStart + start, lineStart + end, nil
}

// renderScalar writes v in the given style, falling back to double quotes
// when the style cannot hold v as a string.
func renderScalar(v string, style yaml.Style) string {
	printable := true
	for _, r := range v {
		if r < 0x20 || r > 0x7e {
			printable = false
		}
	}
	switch {
	case style == yaml.SingleQuotedStyle && printable:
		return "'" + strings.ReplaceAll(v, "'", "''") + "'"
	case style == 0 && printable && readsAsPlainString(v):
		return v
	}
	// Go's escapes for a quoted string (\" \\ \n \xNN \uNNNN) are all valid
	// YAML double-quoted escapes.
	return strconv.Quote(v)
}

// readsAsPlainString reports whether v, written unquoted, reads back as
// the string v.
func readsAsPlainString(v string) bool {
	var n yaml.Node
	if err := yaml.Unmarshal([]byte("k: "+v), &n); err != nil || len(n.Content) == 0 {
		return false
	}
	val := mappingValue(n.Content[0], "k")
	return val != nil && val.Kind == yaml.ScalarNode && val.Tag == "!!str" && val.Style == 0 && val.Value == v
}
