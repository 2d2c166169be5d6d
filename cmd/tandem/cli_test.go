package main

import (
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// optional matches the [bracketed] parts of a synopsis.
var optional = regexp.MustCompile(`\[[^\]]*\]`)

// requiredArgs counts the positional arguments a synopsis ("SERVICE
// VERSION", "SYSTEM [system flags]") requires: those outside brackets.
func requiredArgs(synopsis string) int {
	return len(strings.Fields(optional.ReplaceAllString(synopsis, "")))
}

func sortedKeys[V any](m map[string]V) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// requireUsageError checks a usage error: exit 2, nothing on stdout, and on
// stderr one line naming the command and the problem, then the hint.
func requireUsageError(t *testing.T, name, problem string, code int, out, errOut string) {
	t.Helper()
	require.Equal(t, exitUsage, code, errOut)
	require.Empty(t, out)
	lines := strings.Split(strings.TrimSuffix(errOut, "\n"), "\n")
	require.Len(t, lines, 2, errOut)
	require.True(t, strings.HasPrefix(lines[0], name+": "), errOut)
	require.Contains(t, lines[0], problem)
	require.Equal(t, "Run '"+name+" --help' for usage.", lines[1])
}

// requireHelp checks that --help, -h and `tandem help ...` of the command
// called by args print the same non-empty usage on stdout and exit 0.
func requireHelp(t *testing.T, args ...string) {
	t.Helper()
	name := "tandem " + strings.Join(args, " ")
	var first string
	for _, argv := range [][]string{
		append(args[:len(args):len(args)], "--help"),
		append(args[:len(args):len(args)], "-h"),
		append([]string{"help"}, args...),
	} {
		code, out, errOut := tandem(t, argv...)
		require.Equal(t, exitOK, code, "tandem %v: %s", argv, errOut)
		require.Empty(t, errOut, "tandem %v", argv)
		require.True(t, strings.HasPrefix(out, "Usage: "+name+" [flags]"), "tandem %v printed:\n%s", argv, out)
		if first == "" {
			first = out
		}
		require.Equal(t, first, out, "tandem %v", argv)
	}
}

// Every command and subcommand of the command table, so that a new one is
// covered without touching this test: help exits 0 with the usage on
// stdout, an unknown flag and a missing (or, for a command that takes none,
// an extra) argument exit 2 with one line and a hint on stderr.
func TestEveryCommandFollowsTheCommandLineConventions(t *testing.T) {
	require.NotEmpty(t, commands)
	for _, name := range sortedKeys(commands) {
		c := commands[name]
		t.Run(name, func(t *testing.T) {
			cmd := "tandem " + name
			requireHelp(t, name)

			code, out, errOut := tandem(t, name, "--no-such-flag")
			requireUsageError(t, cmd, "flag provided but not defined: -no-such-flag", code, out, errOut)

			if requiredArgs(c.args) > 0 {
				code, out, errOut = tandem(t, name)
				requireUsageError(t, cmd, "", code, out, errOut)
			} else {
				code, out, errOut = tandem(t, name, "extra-argument")
				requireUsageError(t, cmd, "", code, out, errOut)
			}

			if c.subs == nil {
				return
			}
			code, out, errOut = tandem(t, name, "no-such-subcommand")
			requireUsageError(t, cmd, `unknown "no-such-subcommand"`, code, out, errOut)
			for _, sub := range sortedKeys(c.subs) {
				t.Run(sub, func(t *testing.T) {
					cmd := cmd + " " + sub
					requireHelp(t, name, sub)
					code, out, errOut := tandem(t, name, sub, "--no-such-flag")
					requireUsageError(t, cmd, "flag provided but not defined: -no-such-flag", code, out, errOut)
					code, out, errOut = tandem(t, name, sub, "extra-argument")
					requireUsageError(t, cmd, "extra-argument", code, out, errOut)
				})
			}
		})
	}
}

func TestTopLevelHelpAndUsage(t *testing.T) {
	for _, argv := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		code, out, errOut := tandem(t, argv...)
		require.Equal(t, exitOK, code, "tandem %v", argv)
		require.Empty(t, errOut)
		require.True(t, strings.HasPrefix(out, "tandem: "), out)
		for name := range commands {
			require.Regexp(t, `(?m)^  `+name+` `, out, "tandem %v lists %s", argv, name)
		}
	}

	// No command at all is a usage error: the usage goes to stderr.
	code, out, errOut := tandem(t)
	require.Equal(t, exitUsage, code)
	require.Empty(t, out)
	require.Contains(t, errOut, "Usage: tandem <command>")

	code, out, errOut = tandem(t, "no-such-command")
	requireUsageError(t, "tandem", `unknown command "no-such-command"`, code, out, errOut)
	code, out, errOut = tandem(t, "help", "no-such-command")
	requireUsageError(t, "tandem", `unknown command "no-such-command"`, code, out, errOut)
}

func TestRequiredArgs(t *testing.T) {
	for synopsis, want := range map[string]int{
		"": 0, "DIR": 1, "SERVICE VERSION": 2, "SYSTEM [system flags]": 1, "[DIR]": 0,
	} {
		require.Equal(t, want, requiredArgs(synopsis), synopsis)
	}
}
