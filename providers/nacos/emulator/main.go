package emulator

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tandemhq/tandem/internal/cmdflag"
	"github.com/tandemhq/tandem/spec"
)

// Main runs the emulator until ctx ends: `tandem emulate nacos`. It returns
// the process exit code: 0 after a clean stop or --help, 2 for bad flags or
// arguments, 1 when serving failed.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	const name = "tandem emulate nacos"
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.Usage = func() {
		cmdflag.PrintUsage(fs, "", "Serve Nacos naming (the SDK's gRPC protocol and the operator HTTP API) until interrupted.")
	}
	listen := fs.String("listen", "127.0.0.1:8848", "HTTP listen address; gRPC listens on its port + 1000")
	grpcPort := fs.Int("grpc-port", 0, "gRPC port (default: the HTTP port + 1000)")
	mode := fs.String("mode", ModeV1, "API generation: v1 (Nacos 2.x) or v3 (Nacos 3.x)")
	user := fs.String("auth-user", "", "turn authentication on with this username")
	passEnv := fs.String("auth-password-env", "", "environment variable holding the password (with --auth-user)")
	pushDelay := fs.Duration("push-delay", 500*time.Millisecond, "delay before a change is pushed (Nacos: 500ms)")
	expiry := fs.Duration("override-expiry", DefaultOverrideExpiry, "how long an operator override outlives its instance's connection")
	verbose := fs.Bool("v", false, "log requests and pushes")
	if code, done := cmdflag.Parse(fs, args, stdout, stderr); done {
		return code
	}
	if fs.NArg() > 0 {
		return cmdflag.Usagef(stderr, name, "unexpected arguments %q", fs.Args())
	}
	if (*user == "") != (*passEnv == "") {
		return cmdflag.Usagef(stderr, name, "set both --auth-user and --auth-password-env, or neither")
	}
	pass, err := spec.SecretFromEnv("--auth-password-env", *passEnv)
	if err != nil {
		return cmdflag.Usagef(stderr, name, "%v", err)
	}
	level := slog.LevelInfo
	if *verbose {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	e := New(Options{
		Mode: *mode, Username: *user, Password: pass, GRPCPort: *grpcPort,
		PushDelay: *pushDelay, OverrideExpiry: *expiry, Log: log,
	})
	addrs, err := e.Start(ctx, *listen)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return cmdflag.ExitFail
	}
	fmt.Fprintf(stdout, "nacos emulator (%s) listening: http://%s%s grpc %s\n", *mode, addrs.HTTP, ContextPath, addrs.GRPC)
	<-ctx.Done()
	if err := e.Close(); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", name, err)
		return cmdflag.ExitFail
	}
	return cmdflag.ExitOK
}
