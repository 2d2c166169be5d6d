// Package reliability_test is Tandem's reliability suite: the real `tandem
// run` binary, killed with SIGKILL at every phase of transitions and
// restarted (crash_test.go); faults of every system it talks to under live
// traffic (faults_test.go); and secrets that must never show (secrets_test.go).
//
// Every test runs the daemon as a subprocess against an environment of
// internal/stage that outlives it: the Alibaba ALB/SLB emulator and its
// data plane, the Nacos emulator, the demo fleets, a Git repository, and the
// test's own deploy system. A monitor samples that environment continuously
// and checks invariants 1-4 of the README ("The transition") at every sample.
package reliability_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"go.uber.org/goleak"

	"github.com/tandemhq/tandem/internal/nacostest"
)

// tandemBin is the binary under test, built once by TestMain.
var tandemBin string

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tandem-reliability-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating the build directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	tandemBin = filepath.Join(dir, "tandem")
	build := exec.Command("go", "build", "-o", tandemBin, "github.com/tandemhq/tandem/cmd/tandem")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building tandem:", err)
		return 1
	}
	code := m.Run()
	if code == 0 {
		opts := append(nacostest.IgnoreSDKGoroutines(),
			goleak.IgnoreTopFunction("github.com/fsnotify/fsnotify.(*inotify).readEvents"))
		if err := goleak.Find(opts...); err != nil {
			fmt.Fprintln(os.Stderr, "goleak:", err)
			return 1
		}
	}
	return code
}
