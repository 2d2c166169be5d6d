package gitsource

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSetFieldsChangesOnlyTheValues(t *testing.T) {
	release := []field{{"version", "2.5.0"}, {"active", "B"}}
	for _, tc := range []struct {
		name   string
		in     string
		fields []field
		want   string
		err    string
	}{
		{
			name: "plain values stay plain, comments stay",
			in:   "# gateway\nservice: gw   # the edge\nactive: A # serving\nversion: 2.4.1 # running\ndrain: {quiet: 5s}\n",
			want: "# gateway\nservice: gw   # the edge\nactive: B # serving\nversion: 2.5.0 # running\ndrain: {quiet: 5s}\n",
		},
		{
			name: "double quotes stay double",
			in:   "service: gw\nactive: \"A\"\nversion: \"2.4.1\"\n",
			want: "service: gw\nactive: \"B\"\nversion: \"2.5.0\"\n",
		},
		{
			name: "single quotes stay single",
			in:   "service: gw\nactive: 'A'\nversion: '2.4.1'\n",
			want: "service: gw\nactive: 'B'\nversion: '2.5.0'\n",
		},
		{
			name:   "a plain value that would read as a number is quoted",
			in:     "service: gw\nactive: A\nversion: 2.9\n",
			fields: []field{{"version", "2.10"}},
			want:   "service: gw\nactive: A\nversion: \"2.10\"\n",
		},
		{
			name:   "a quote inside a single-quoted value is doubled",
			in:     "service: gw\nversion: 'x'\n",
			fields: []field{{"version", "it's"}},
			want:   "service: gw\nversion: 'it''s'\n",
		},
		{
			name:   "a newline is escaped, never written raw",
			in:     "service: gw\nversion: x\n",
			fields: []field{{"version", "1\nactive: B"}},
			want:   "service: gw\nversion: \"1\\nactive: B\"\n",
		},
		{
			name: "only the named service's document changes",
			in:   "service: api\nactive: A\nversion: 2.4.1\n---\nservice: gw\nactive: A\nversion: 2.4.1\n---\nservice: web\nactive: A\nversion: 2.4.1\n",
			want: "service: api\nactive: A\nversion: 2.4.1\n---\nservice: gw\nactive: B\nversion: 2.5.0\n---\nservice: web\nactive: A\nversion: 2.4.1\n",
		},
		{
			name: "a flow mapping after wide characters is edited in place",
			in:   "{service: gw, deploy: {exec: [\"dépl\"]}, active: A, version: 2.4.1}\n",
			want: "{service: gw, deploy: {exec: [\"dépl\"]}, active: B, version: 2.5.0}\n",
		},
		{name: "a block scalar is refused", in: "service: gw\nactive: A\nversion: |\n  2.4.1\n", err: "x.yaml:3: version: the value is not a plain or quoted scalar; edit it by hand"},
		{name: "an anchored value is refused", in: "service: gw\nactive: &g A\nversion: 2.4.1\n", err: "x.yaml:2: active: the value is not a plain or quoted scalar"},
		{name: "a tagged value is refused", in: "service: gw\nactive: A\nversion: !!str 2.4.1\n", err: "x.yaml:3: version: the value is not a plain or quoted scalar"},
		{name: "a multi-line quoted value is refused", in: "service: gw\nactive: A\nversion: \"2.4\n  .1\"\n", err: "x.yaml:3: version: the value spans more than one line"},
		{name: "a missing field is refused", in: "service: gw\nversion: 2.4.1\n", err: "x.yaml: service gw has no active field to edit"},
		{name: "another service's file is refused", in: "service: api\nactive: A\nversion: 1\n", err: "x.yaml: no document defines service gw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fields := tc.fields
			if fields == nil {
				fields = release
			}
			service := "gw"
			got, err := setFields("x.yaml", []byte(tc.in), service, fields)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, tc.want, string(got))
		})
	}
}

func TestReverseApplyUndoesOnlyTheCommitsLines(t *testing.T) {
	lines := func(ls ...string) []byte { return []byte(strings.Join(ls, "\n") + "\n") }
	old := lines("service: gw", "active: A", "version: 1.0", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 5s")
	released := lines("service: gw", "active: B", "version: 1.1", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 5s")
	for _, tc := range []struct {
		name string
		cur  []byte
		want []byte
		err  string
	}{
		{name: "an unchanged file gets its old bytes back", cur: released, want: old},
		{
			name: "a change far from the release is kept",
			cur:  lines("service: gw", "active: B", "version: 1.1", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 9s"),
			want: lines("service: gw", "active: A", "version: 1.0", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 9s"),
		},
		{
			name: "lines added above the release shift it without conflict",
			cur:  lines("# owned by the edge team", "# since 2024", "service: gw", "active: B", "version: 1.1", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 5s"),
			want: lines("# owned by the edge team", "# since 2024", "service: gw", "active: A", "version: 1.0", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 5s"),
		},
		{
			name: "a later change of a released line conflicts",
			cur:  lines("service: gw", "active: B", "version: 1.2", "groups:", "  a: 1", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 5s"),
			err:  "line 2: the lines the commit changed, or the 3 lines around them, have changed since",
		},
		{
			name: "a later change next to the released lines conflicts",
			cur:  lines("service: gw", "active: B", "version: 1.1", "groups:", "  a: 10", "  b: 2", "  c: 3", "  d: 4", "  e: 5", "drain:", "  quiet: 5s"),
			err:  "line 2:",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := reverseApply(old, released, tc.cur)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			require.Equal(t, string(tc.want), string(got))
		})
	}
}

func TestReverseApplyHandlesSeparateHunks(t *testing.T) {
	old := []byte("a\nb\nc\nd\ne\nf\ng\nh\ni\nj\nk\nl\n")
	released := []byte("a\nB\nc\nd\ne\nf\ng\nh\ni\nj\nK\nl\n")
	cur := []byte("a\nB\nc\nd\ne\nF\ng\nh\ni\nj\nK\nl\nm\n")
	got, err := reverseApply(old, released, cur)
	require.NoError(t, err)
	require.Equal(t, "a\nb\nc\nd\ne\nF\ng\nh\ni\nj\nk\nl\nm\n", string(got))
}
