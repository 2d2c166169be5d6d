package main

import (
	"github.com/tandemhq/tandem/providers/alibaba/emulator"
	nacosemu "github.com/tandemhq/tandem/providers/nacos/emulator"
)

func init() {
	register(&command{
		name: "emulate",
		args: "SYSTEM [system flags]",
		summary: `Run an emulator of an external system on this machine, for trying Tandem without a cloud:
  alibaba   ALB and SLB OpenAPI (the official SDKs talk to it), with an optional data plane
  nacos     Nacos naming: the SDK's gRPC protocol and the operator HTTP API (v1 or v3 mode)
Run 'tandem emulate SYSTEM --help' for its flags.`,
		subs: map[string]subcommand{
			"alibaba": emulator.Main,
			"nacos":   nacosemu.Main,
		},
	})
}
