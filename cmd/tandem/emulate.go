package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	nacosemu "github.com/tandemhq/tandem/providers/nacos/emulator"
)

// emulators are the systems `tandem emulate` can stand in for; each takes
// its own flags.
var emulators = map[string]func(ctx context.Context, args []string, stdout, stderr io.Writer) int{
	"alibaba": emulator.Main,
	"nacos":   nacosemu.Main,
}

func init() {
	register(&command{
		name: "emulate",
		raw:  true,
		args: "SYSTEM [flags]",
		summary: `Run an emulator of an external system on this machine, for trying Tandem without a cloud:
  alibaba   ALB and SLB OpenAPI (the official SDKs talk to it), with an optional data plane
  nacos     Nacos naming: the SDK's gRPC protocol and the operator HTTP API (v1 or v3 mode)
Run 'tandem emulate SYSTEM --help' for its flags.`,
		run: func(ctx context.Context, env *cli, _ *flag.FlagSet, args []string) error {
			if len(args) == 0 {
				return usagef("name a system: %s", strings.Join(emulatorNames(), ", "))
			}
			main, ok := emulators[args[0]]
			if !ok {
				return usagef("no emulator for %q (have: %s)", args[0], strings.Join(emulatorNames(), ", "))
			}
			switch code := main(ctx, args[1:], env.stdout, env.stderr); code {
			case exitOK:
				return nil
			case exitUsage:
				return fmt.Errorf("see 'tandem emulate %s --help': %w", args[0], errUsageReported)
			default:
				return fmt.Errorf("emulator %s exited with code %d: %w", args[0], code, errReported)
			}
		},
	})
}

func emulatorNames() []string {
	var out []string
	for n := range emulators {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}
