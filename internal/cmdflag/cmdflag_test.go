package cmdflag_test

import (
	"bytes"
	"flag"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/cmdflag"
)

func newFlags() (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("tandem x", flag.ContinueOnError)
	v := fs.String("name", "a", "a `NAME`")
	return fs, v
}

func TestParseCases(t *testing.T) {
	for _, tc := range []struct {
		name           string
		args           []string
		code           int
		done           bool
		stdout, stderr string
	}{
		{name: "flags and arguments", args: []string{"--name", "b", "arg"}, code: cmdflag.ExitOK},
		{name: "--help", args: []string{"--help"}, code: cmdflag.ExitOK, done: true,
			stdout: "Usage of tandem x:\n  -name NAME\n    \ta NAME (default \"a\")\n"},
		{name: "-h", args: []string{"-h"}, code: cmdflag.ExitOK, done: true,
			stdout: "Usage of tandem x:\n  -name NAME\n    \ta NAME (default \"a\")\n"},
		{name: "unknown flag", args: []string{"--nope"}, code: cmdflag.ExitUsage, done: true,
			stderr: "tandem x: flag provided but not defined: -nope\nRun 'tandem x --help' for usage.\n"},
		{name: "missing value", args: []string{"--name"}, code: cmdflag.ExitUsage, done: true,
			stderr: "tandem x: flag needs an argument: -name\nRun 'tandem x --help' for usage.\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fs, _ := newFlags()
			var out, errOut bytes.Buffer
			code, done := cmdflag.Parse(fs, tc.args, &out, &errOut)
			require.Equal(t, tc.code, code)
			require.Equal(t, tc.done, done)
			require.Equal(t, tc.stdout, out.String())
			require.Equal(t, tc.stderr, errOut.String())
		})
	}
}

func TestParseKeepsTheCommandsUsageAndValues(t *testing.T) {
	fs, v := newFlags()
	fs.Usage = func() { cmdflag.PrintUsage(fs, "DIR", "Does x.") }
	var out, errOut bytes.Buffer
	_, done := cmdflag.Parse(fs, []string{"--name", "b", "dir"}, &out, &errOut)
	require.False(t, done)
	require.Equal(t, "b", *v)
	require.Equal(t, []string{"dir"}, fs.Args())

	_, done = cmdflag.Parse(fs, []string{"--help"}, &out, &errOut)
	require.True(t, done)
	require.Equal(t, "Usage: tandem x [flags] DIR\n\nDoes x.\n\nFlags:\n  -name NAME\n    \ta NAME (default \"a\")\n", out.String())
	require.Empty(t, errOut.String())
}
