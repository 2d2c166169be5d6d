// Package cmdflag gives every tandem command, and the programs it hands its
// arguments to (tandem emulate SYSTEM), the same behaviour on the command
// line: -h or --help prints the usage on stdout and exits 0; a usage error
// (unknown flag, bad flag value, missing or extra argument) prints the error
// and a one-line hint on stderr and exits 2; any other error exits 1.
package cmdflag

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Exit codes of every tandem command.
const (
	ExitOK    = 0
	ExitFail  = 1
	ExitUsage = 2
)

// Parse parses args into fs. done reports that the command must stop now
// with code: ExitOK after printing fs.Usage on stdout for -h/--help (the
// flag list when fs.Usage is nil); ExitUsage after printing the bad flag,
// after the command's name, and the hint on stderr.
func Parse(fs *flag.FlagSet, args []string, stdout, stderr io.Writer) (code int, done bool) {
	usage := fs.Usage
	if usage == nil {
		usage = func() { PrintUsage(fs, "", "") }
	}
	// The flag package prints its error and the usage on every error; the
	// error is printed here instead, with the command's name and the hint.
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(stderr)
	switch {
	case err == nil:
		return ExitOK, false
	case errors.Is(err, flag.ErrHelp):
		fs.SetOutput(stdout)
		usage()
		fs.SetOutput(stderr)
		return ExitOK, true
	default:
		return Usagef(stderr, fs.Name(), "%v", err), true
	}
}

// Usagef prints a usage error of the command called name (as it is typed,
// "tandem emulate nacos") and the hint, on w; it returns ExitUsage.
func Usagef(w io.Writer, name, format string, args ...any) int {
	fmt.Fprintf(w, "%s: %s\n", name, fmt.Sprintf(format, args...))
	Hint(w, name)
	return ExitUsage
}

// Hint prints the one line that follows every usage error.
func Hint(w io.Writer, name string) {
	fmt.Fprintf(w, "Run '%s --help' for usage.\n", name)
}

// PrintUsage prints, on fs.Output(), "Usage: NAME [flags] ARGS", the
// summary and the flag list. args is the synopsis of the positional
// arguments ("DIR", "SERVICE VERSION"), empty when there are none.
func PrintUsage(fs *flag.FlagSet, args, summary string) {
	w := fs.Output()
	fmt.Fprintf(w, "Usage: %s [flags]", fs.Name())
	if args != "" {
		fmt.Fprintf(w, " %s", args)
	}
	fmt.Fprintln(w)
	if summary != "" {
		fmt.Fprintf(w, "\n%s\n", summary)
	}
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n > 0 {
		fmt.Fprintf(w, "\nFlags:\n")
		fs.PrintDefaults()
	}
}
