// Command tandem is the Tandem daemon and its operator tools.
//
// Every command behaves the same on the command line (internal/cmdflag):
// -h or --help prints its usage on stdout and exits 0; an error of the
// command exits 1 (invalid spec, out of sync, lost traffic); a usage error
// (unknown command or flag, missing or extra argument) prints the error and
// a one-line hint on stderr and exits 2.
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

	"github.com/tandemhq/tandem/internal/cmdflag"
)

// Exit codes.
const (
	exitOK    = cmdflag.ExitOK
	exitFail  = cmdflag.ExitFail
	exitUsage = cmdflag.ExitUsage
)

// command is one subcommand.
type command struct {
	name    string
	args    string // synopsis of the positional arguments; [optional], the others required
	summary string
	run     func(ctx context.Context, env *cli, fs *flag.FlagSet, args []string) error
	flags   func(fs *flag.FlagSet)
	// subs, when set, are the command's own subcommands (tandem emulate
	// SYSTEM): programs that take the arguments after their name, parse
	// them with cmdflag and return an exit code. run is then unused.
	subs map[string]subcommand
}

// subcommand is a program run as `tandem COMMAND NAME [args]`; its flag set
// is named "tandem COMMAND NAME" and parsed with cmdflag.Parse.
type subcommand func(ctx context.Context, args []string, stdout, stderr io.Writer) int

// cli carries the streams, so that tests run commands in-process.
type cli struct {
	stdout, stderr io.Writer
}

// usageError is reported with a hint to the command's usage and exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// errReported is an error whose message has already been printed in full.
var errReported = errors.New("failed")

var commands = map[string]*command{}

func register(c *command) { commands[c.name] = c }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	switch {
	case len(args) == 0:
		printUsage(stderr)
		return exitUsage
	case args[0] == "-h" || args[0] == "-help" || args[0] == "--help" || (args[0] == "help" && len(args) == 1):
		printUsage(stdout)
		return exitOK
	case args[0] == "help": // tandem help COMMAND [SUBCOMMAND]
		args = append(args[1:len(args):len(args)], "--help")
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "tandem: unknown command %q\n", args[0])
		cmdflag.Hint(stderr, "tandem")
		return exitUsage
	}
	fs := flag.NewFlagSet("tandem "+c.name, flag.ContinueOnError)
	fs.Usage = func() { cmdflag.PrintUsage(fs, c.args, c.summary) }
	if c.flags != nil {
		c.flags(fs)
	}
	if c.subs != nil {
		// Flags before the subcommand's name are the command's; the rest
		// belong to the subcommand.
		if code, done := cmdflag.Parse(fs, args[1:], stdout, stderr); done {
			return code
		}
		return runSub(ctx, c, fs.Args(), stdout, stderr)
	}
	if code, done := cmdflag.Parse(fs, interleave(fs, args[1:]), stdout, stderr); done {
		return code
	}
	err := c.run(ctx, &cli{stdout: stdout, stderr: stderr}, fs, fs.Args())
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.As(err, &ue):
		return cmdflag.Usagef(stderr, fs.Name(), "%s", ue.msg)
	case errors.Is(err, errReported):
		return exitFail
	default:
		fmt.Fprintf(stderr, "%s: %v\n", fs.Name(), err)
		return exitFail
	}
}

// runSub runs the subcommand of c that args name.
func runSub(ctx context.Context, c *command, args []string, stdout, stderr io.Writer) int {
	name := "tandem " + c.name
	if len(args) == 0 {
		return cmdflag.Usagef(stderr, name, "name one of: %s", strings.Join(subNames(c), ", "))
	}
	sub, ok := c.subs[args[0]]
	if !ok {
		return cmdflag.Usagef(stderr, name, "unknown %q (have: %s)", args[0], strings.Join(subNames(c), ", "))
	}
	return sub(ctx, args[1:], stdout, stderr)
}

func subNames(c *command) []string {
	out := make([]string, 0, len(c.subs))
	for n := range c.subs {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
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
	fmt.Fprintf(w, "\nRun 'tandem <command> --help' (or 'tandem help <command>') for a command's flags.\nExit codes: 0 ok, 1 failed, 2 usage error.\n")
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
