// Package javaapps runs the Java provider and consumer of e2e/java (Spring
// Boot 3.5, Spring Cloud 2025.0, Spring Cloud Alibaba Nacos discovery) for
// tests: what most users of Tandem run. scripts/build-java-apps.sh builds
// them into the Tandem cache (make deps-test runs it); this package only
// starts what is there.
//
// Every app listens on 127.0.0.1 on a free port, logs to a file of its own
// and registers in Nacos with ip 127.0.0.1 when given a Nacos address.
//
// Apps that are not built make the test skip, with the command that builds
// them, unless TANDEM_REQUIRE_JAVA_APPS=1 (set by make test), when the test
// fails instead.
package javaapps

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// RequireEnv turns "not built" from a skip into a failure.
const RequireEnv = "TANDEM_REQUIRE_JAVA_APPS"

// Built returns the directory of the built jars, or why there is none and
// how to build them. It asks scripts/build-java-apps.sh, which only checks
// with TANDEM_JAVA_APPS_CHECK=1.
func Built() (string, error) {
	_, file, _, _ := runtime.Caller(0)
	script := filepath.Join(filepath.Dir(file), "..", "..", "scripts", "build-java-apps.sh")
	cmd := exec.Command(script)
	cmd.Env = append(os.Environ(), "TANDEM_JAVA_APPS_CHECK=1")
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("the Java apps are not built for these sources (%v); build them with scripts/build-java-apps.sh", err)
	}
	return strings.TrimSpace(string(out)), nil
}

// Require returns the directory of the built jars; it skips t when they are
// not built, or fails it when RequireEnv=1 or java is missing.
func Require(t testing.TB) string {
	t.Helper()
	dir, err := Built()
	if err == nil {
		_, err = exec.LookPath("java")
	}
	if err != nil {
		if os.Getenv(RequireEnv) == "1" {
			t.Fatalf("%v (%s=1 makes this a failure)", err, RequireEnv)
		}
		t.Skip(err)
	}
	return dir
}

// App is one running Java app.
type App struct {
	Name    string
	Addr    string // 127.0.0.1:port
	Version string // the provider's app.version
	LogPath string

	jar  string
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

// Options describe an app to start.
type Options struct {
	Dir   string // from Require or Built
	Jar   string // "provider.jar" or "consumer.jar"
	Name  string // app.name, the X-Backend header; also names the log file
	Group string // app.group (provider)
	// Version is app.version: the provider's build.version and Nacos
	// metadata version.
	Version string
	// Nacos is the Nacos server's host:port; "" turns discovery off.
	Nacos string
	// Args are more Spring properties, "--name=value".
	Args   []string
	LogDir string
}

// Fleet runs Java apps and stops them all on Close.
type Fleet struct {
	mu   sync.Mutex
	apps map[string]*App // by Addr
}

// NewFleet returns an empty fleet.
func NewFleet() *Fleet { return &Fleet{apps: map[string]*App{}} }

// jvmFlags make a small JVM that starts fast: a test app needs neither
// the optimizing compiler nor a large heap.
var jvmFlags = []string{"-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC", "-Xmx256m", "-Xss512k"}

// Start starts the app on a free loopback port. It returns once the app
// runs; Ready waits for it to answer.
func (f *Fleet) Start(o Options) (*App, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	args := []string{"--server.port=" + strconv.Itoa(port), "--app.name=" + o.Name}
	if o.Group != "" {
		args = append(args, "--app.group="+o.Group)
	}
	if o.Nacos != "" {
		args = append(args, "--spring.cloud.nacos.discovery.server-addr="+o.Nacos)
	} else {
		args = append(args, "--spring.cloud.nacos.discovery.enabled=false", "--spring.cloud.service-registry.auto-registration.enabled=false")
	}
	a := &App{Name: o.Name, Addr: "127.0.0.1:" + strconv.Itoa(port), LogPath: filepath.Join(o.LogDir, o.Name+".log"),
		jar: filepath.Join(o.Dir, o.Jar), args: append(args, o.Args...)}
	if err := a.start(o.Version); err != nil {
		return nil, err
	}
	f.mu.Lock()
	f.apps[a.Addr] = a
	f.mu.Unlock()
	return a, nil
}

func (a *App) start(version string) error {
	args := append(append([]string{}, jvmFlags...), "-jar", a.jar)
	args = append(args, a.args...)
	if version != "" {
		args = append(args, "--app.version="+version)
	}
	logFile, err := os.OpenFile(a.LogPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("creating the log of %s: %w", a.Name, err)
	}
	cmd := exec.Command("java", args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Pdeathsig: a test binary killed by its timeout leaves no JVM behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("starting %s: %w", a.Name, err)
	}
	done := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logFile.Close()
		close(done)
	}()
	a.cmd, a.done, a.Version = cmd, done, version
	return nil
}

// stopGrace bounds a graceful shutdown (the apps' own
// spring.lifecycle.timeout-per-shutdown-phase is 30s).
const stopGrace = 40 * time.Second

// Stop shuts the app down gracefully (SIGTERM: Spring deregisters from
// Nacos, finishes requests in flight and closes), killing it after
// stopGrace.
func (a *App) Stop() error {
	if a.cmd == nil {
		return nil
	}
	_ = a.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-a.done:
		return nil
	case <-time.After(stopGrace):
	}
	_ = syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
	<-a.done
	return fmt.Errorf("%s did not stop within %s and was killed", a.Name, stopGrace)
}

// Ready waits until the app answers GET /actuator/health with 200, and
// fails early when it exited.
func (a *App) Ready(ctx context.Context) error {
	client := &http.Client{Timeout: time.Second}
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		resp, err := client.Get("http://" + a.Addr + "/actuator/health")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-a.done:
			return fmt.Errorf("%s exited before it was ready; see %s", a.Name, a.LogPath)
		case <-ctx.Done():
			return fmt.Errorf("%s is not ready (%w); see %s", a.Name, ctx.Err(), a.LogPath)
		case <-t.C:
		}
	}
}

// Restart restarts the apps at addrs at version, in parallel, each stopped
// gracefully and started again on the same port; it returns when all are
// ready: what a deploy of a group does.
func (f *Fleet) Restart(ctx context.Context, addrs []string, version string) error {
	var apps []*App
	f.mu.Lock()
	for _, addr := range addrs {
		a, ok := f.apps[addr]
		if !ok {
			f.mu.Unlock()
			return fmt.Errorf("no Java app runs at %s", addr)
		}
		apps = append(apps, a)
	}
	f.mu.Unlock()
	errs := make([]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() {
			if err := a.Stop(); err != nil {
				errs[i] = err
				return
			}
			if err := a.start(version); err != nil {
				errs[i] = err
				return
			}
			errs[i] = a.Ready(ctx)
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Has reports whether an app of the fleet runs at addr.
func (f *Fleet) Has(addr string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.apps[addr] != nil
}

// Close stops every app.
func (f *Fleet) Close() error {
	f.mu.Lock()
	apps := make([]*App, 0, len(f.apps))
	for _, a := range f.apps {
		apps = append(apps, a)
	}
	f.apps = map[string]*App{}
	f.mu.Unlock()
	errs := make([]error, len(apps))
	var wg sync.WaitGroup
	for i, a := range apps {
		wg.Go(func() { errs[i] = a.Stop() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Tail returns the last lines of the app's log, for a failed test.
func (a *App) Tail() string {
	b, err := os.ReadFile(a.LogPath)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
