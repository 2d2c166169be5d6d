// Command tandem is the Tandem daemon and its operator tools.
//
// Exit codes: 0 ok, 1 the command ran and failed (invalid spec, out of sync,
// lost traffic), 2 usage error.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of the positional arguments
	summary string
	run     func(ctx context.Context, env *cli, fs *flag.FlagSet, args []string) error
	flags   func(fs *flag.FlagSet)
	// raw commands get their arguments unparsed (after a --help check on
	// the first one): they hand them to another program's flags.
	raw bool
}

// cli carries the streams, so that tests run commands in-process.
type cli struct {
	stdout, stderr io.Writer
}

// usageError is reported with the command's usage and exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errReported is an error whose message has already been printed in full;
// errUsageReported the same for a usage error (exit code 2).
var (
	errReported      = errors.New("failed")
	errUsageReported = errors.New("usage")
)

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	env := &cli{stdout: stdout, stderr: stderr}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		if len(args) > 1 && args[0] == "help" {
			args = []string{args[1], "--help"}
		} else {
			printUsage(stdout)
			if len(args) == 0 {
				return exitUsage
			}
			return exitOK
		}
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tandem: unknown command %q\nRun 'tandem --help' for the list of commands.\n", args[0])
		return exitUsage
	}
	fs := flag.NewFlagSet("tandem "+c.name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: tandem %s [flags] %s\n\n%s\n", c.name, c.args, c.summary)
		if hasFlags(fs) {
			fmt.Fprintf(fs.Output(), "\nFlags:\n")
			fs.PrintDefaults()
		}
	}
	if c.flags != nil {
		c.flags(fs)
	}
	rest := args[1:]
	helpArgs := rest
	if c.raw && len(rest) > 0 {
		helpArgs = rest[:1]
	}
	for _, a := range helpArgs {
		if a == "-h" || a == "-help" || a == "--help" {
			fs.SetOutput(stdout)
			fs.Usage()
			return exitOK
		}
	}
	if !c.raw {
		if err := fs.Parse(interleave(fs, rest)); err != nil {
			return exitUsage
		}
		rest = fs.Args()
	}
	err := c.run(ctx, env, fs, rest)
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "tandem %s: %s\n", c.name, ue.msg)
		fs.Usage()
		return exitUsage
	case errors.Is(err, errUsageReported):
		return exitUsage
	case errors.Is(err, errReported):
		return exitFail
	default:
		fmt.Fprintf(stderr, "tandem %s: %v\n", c.name, err)
		return exitFail
	}
}

// interleave lets flags follow positional arguments (tandem validate DIR
// --config F), as operators type them; "--" ends flag parsing.
func interleave(fs *flag.FlagSet, args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			pos = append(pos, args[i+1:]...)
			break
		}
		if !strings.HasPrefix(a, "-") || a == "-" {
			pos = append(pos, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") {
			continue
		}
		if f := fs.Lookup(name); f != nil && i+1 < len(args) {
			if bf, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && bf.IsBoolFlag() {
				continue
			}
			flags = append(flags, args[i+1])
			i++
		}
	}
	return append(flags, append([]string{"--"}, pos...)...)
}

func hasFlags(fs *flag.FlagSet) bool {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	return n > 0
}

func printUsage(w io.Writer) {
	fmt.Fprintf(w, `tandem: imperceptible A/B releases driven by Git.

Usage: tandem <command> [flags] [arguments]

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, firstLine(commands[n].summary))
	}
	fmt.Fprintf(w, "\nRun 'tandem <command> --help' for a command's flags.\nExit codes: 0 ok, 1 failed, 2 usage error.\n")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
