package emulator

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Main runs the emulator until ctx ends: `tandem emulate nacos`. It returns
// the process exit code (2 for bad flags).
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("emulate nacos", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8848", "HTTP listen address; gRPC listens on its port + 1000")
	grpcPort := fs.Int("grpc-port", 0, "gRPC port (default: the HTTP port + 1000)")
	mode := fs.String("mode", ModeV1, "API generation: v1 (Nacos 2.x) or v3 (Nacos 3.x)")
	user := fs.String("auth-user", "", "turn authentication on with this username")
	passEnv := fs.String("auth-password-env", "", "environment variable holding the password (with --auth-user)")
	pushDelay := fs.Duration("push-delay", 500*time.Millisecond, "delay before a change is pushed (Nacos: 500ms)")
	expiry := fs.Duration("override-expiry", DefaultOverrideExpiry, "how long an operator override outlives its instance's connection")
	verbose := fs.Bool("v", false, "log requests and pushes")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "emulate nacos: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if (*user == "") != (*passEnv == "") {
		fmt.Fprintln(stderr, "emulate nacos: set both --auth-user and --auth-password-env, or neither")
		return 2
	}
	pass, err := spec.SecretFromEnv("--auth-password-env", *passEnv)
	if err != nil {
		fmt.Fprintf(stderr, "emulate nacos: %v\n", err)
		return 2
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
		fmt.Fprintf(stderr, "emulate nacos: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "nacos emulator (%s) listening: http://%s%s grpc %s\n", *mode, addrs.HTTP, ContextPath, addrs.GRPC)
	<-ctx.Done()
	if err := e.Close(); err != nil {
		fmt.Fprintf(stderr, "emulate nacos: %v\n", err)
		return 1
	}
	return 0
}
