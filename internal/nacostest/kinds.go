package nacostest

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	mathrand "math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// Versions installed by scripts/nacos/install-*.sh; keep them in step.
const (
	rnacosVersion = "0.8.5"
	nacos3Version = "3.1.0-bugfix"
)

// Readiness timeouts: r-nacos is ready in milliseconds, Nacos 3 in about ten
// seconds on two cores (docs/nacos-servers.md), slower when tests run beside it.
const (
	rnacosReadyTimeout = 30 * time.Second
	nacos3ReadyTimeout = 3 * time.Minute
)

// kind knows how to find and start one kind of server.
type kind struct {
	script    string       // install script under scripts/nacos
	installed func() error // nil when the server can be started
	// start starts one server in dir and returns it ready, or an error that
	// wraps errStartFailed when another start may succeed.
	start func(dir string, opts Options) (*Server, error)
	// attempts bounds the starts after errStartFailed: a server that exits
	// before it is ready because another process took a chosen port first,
	// or an r-nacos that came up broken (one start in ten to one in two).
	attempts int
}

var kinds = map[string]kind{
	KindRNacos: {script: "install-rnacos.sh", installed: rnacosInstalled, start: startRNacos, attempts: 12},
	KindNacos3: {script: "install-nacos3.sh", installed: nacos3Installed, start: startNacos3, attempts: 3},
}

// launch starts a server of that kind in a new temporary directory, which
// Server.stop removes.
func launch(kindName string, opts Options) (*Server, error) {
	k := kinds[kindName]
	dir, err := os.MkdirTemp("", "nacostest-"+kindName+"-")
	if err != nil {
		return nil, fmt.Errorf("creating data directory: %w", err)
	}
	for attempt := 1; ; attempt++ {
		home := filepath.Join(dir, strconv.Itoa(attempt))
		if err = os.Mkdir(home, 0o700); err != nil {
			err = fmt.Errorf("creating data directory: %w", err)
			break
		}
		var s *Server
		s, err = k.start(home, opts)
		if err == nil {
			s.dir = dir
			return s, nil
		}
		if !errors.Is(err, errStartFailed) {
			break
		}
		if attempt == k.attempts {
			err = fmt.Errorf("%d starts failed, the last: %w", attempt, err)
			break
		}
	}
	os.RemoveAll(dir)
	return nil, err
}

// Restart stops the server as an operator's restart does (SIGTERM, then
// SIGKILL after a grace), calls down while it is stopped, and starts it
// again with the same ports, data directory, settings and credentials. It
// returns once the server is ready again. Ephemeral registrations are gone
// with the process; what the server persisted (its Raft data) is kept.
func (s *Server) Restart(down func()) error {
	if err := s.proc.stop(); err != nil {
		return fmt.Errorf("stopping %s: %w", s.Kind, err)
	}
	if down != nil {
		down()
	}
	attempts := kinds[s.Kind].attempts
	for attempt := 1; ; attempt++ {
		old := s.proc.cmd
		cmd := exec.Command(old.Path, old.Args[1:]...)
		cmd.Dir, cmd.Env = old.Dir, old.Env
		p, err := startProcess(cmd, s.proc.logPath)
		if err != nil {
			return fmt.Errorf("restarting %s: %w", s.Kind, err)
		}
		s.proc = p
		if err = s.ready(); err == nil {
			return nil
		}
		p.stop()
		if !errors.Is(err, errStartFailed) || attempt == attempts {
			return fmt.Errorf("restarting %s (attempt %d): %w", s.Kind, attempt, err)
		}
	}
}

// stop stops the server and removes its data directory.
func (s *Server) stop() error {
	err := s.proc.stop()
	if rmErr := os.RemoveAll(s.dir); rmErr != nil && err == nil {
		err = fmt.Errorf("removing data directory: %w", rmErr)
	}
	return err
}

// --- r-nacos ---

func rnacosBinary() string {
	return filepath.Join(cacheDir(), "rnacos-"+rnacosVersion, "bin", "rnacos")
}

func rnacosInstalled() error {
	_, err := os.Stat(rnacosBinary())
	return err
}

// startRNacos starts r-nacos with every listener on 127.0.0.1. Settings are
// environment variables read by rnacos src/common/mod.rs
// (AppSysConfig::init_from_env); RNACOS_SDK_HOST defaults to 0.0.0.0.
func startRNacos(dir string, opts Options) (*Server, error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	httpPort, grpcPort, consolePort := ports[0], ports[1], ports[2]
	// An empty env file: without --env-file, rnacos loads a .env found in
	// its working directory or any parent.
	envFile := filepath.Join(dir, "rnacos.env")
	if err := os.WriteFile(envFile, nil, 0o600); err != nil {
		return nil, fmt.Errorf("writing %s: %w", envFile, err)
	}
	s := &Server{
		Kind:        KindRNacos,
		HTTPAddr:    fmt.Sprintf("127.0.0.1:%d", httpPort),
		GRPCPort:    grpcPort,
		ContextPath: "/nacos",
		API:         "v1",
	}
	env := []string{
		"RNACOS_HTTP_PORT=" + strconv.Itoa(httpPort),
		"RNACOS_GRPC_PORT=" + strconv.Itoa(grpcPort),
		"RNACOS_HTTP_CONSOLE_PORT=" + strconv.Itoa(consolePort),
		"RNACOS_SDK_HOST=127.0.0.1",
		"RNACOS_CONSOLE_HOST=127.0.0.1",
		"RNACOS_RAFT_NODE_ADDR=127.0.0.1:" + strconv.Itoa(grpcPort),
		"RNACOS_DATA_DIR=" + filepath.Join(dir, "data"),
		"RUST_LOG=info",
	}
	if opts.Auth {
		s.Username, s.Password = "nacos", randomHex(16)
		env = append(env,
			"RNACOS_ENABLE_OPEN_API_AUTH=true",
			"RNACOS_INIT_ADMIN_USERNAME="+s.Username,
			"RNACOS_INIT_ADMIN_PASSWORD="+s.Password,
		)
	}
	cmd := exec.Command(rnacosBinary(), "--env-file", envFile)
	cmd.Dir = dir
	cmd.Env = append(environWithout("RNACOS_", "RUST_LOG="), env...)
	if s.proc, err = startProcess(cmd, filepath.Join(dir, "server.log")); err != nil {
		return nil, err
	}
	s.ready = func() error {
		// /health, unlike /nacos/health, is outside open-API auth.
		err := s.proc.waitReady("http://"+s.HTTPAddr+"/health", rnacosReadyTimeout)
		if err == nil {
			err = checkRNacosRaft(s)
		}
		return err
	}
	if err := s.ready(); err != nil {
		s.proc.stop()
		return nil, err
	}
	return s, nil
}

// rnacosRaftTimeout bounds the check that r-nacos applies what it writes
// through Raft: milliseconds when it works, so waiting longer is useless.
const rnacosRaftTimeout = 3 * time.Second

// checkRNacosRaft checks that r-nacos applies Raft writes. In one start in
// ten to one in two on a new data directory, rnacos 0.8.5 panics in its Raft
// state machine (StateApplyManager handles a log entry before it is wired,
// raft/filestore/raftapply.rs) and from then on acknowledges writes that it
// never applies: no initial administrator, configs that cannot be read back.
// Ephemeral naming does not go through Raft, so such a server would seem to
// work. The check: with auth on, the initial administrator (written through
// Raft after start) can log in; without, a config written through the open
// API can be read back.
func checkRNacosRaft(s *Server) error {
	var err error
	if s.Username != "" {
		err = awaitLogin(s, rnacosRaftTimeout)
	} else {
		err = awaitConfigReadBack(s, rnacosRaftTimeout)
	}
	if err != nil && !errors.Is(err, errStartFailed) {
		err = fmt.Errorf("%w: rnacos does not apply Raft writes (its start-up race): %w", errStartFailed, err)
	}
	return err
}

// awaitConfigReadBack publishes a config through the v1 open API and polls
// until it reads back.
func awaitConfigReadBack(s *Server, timeout time.Duration) error {
	const dataID, group, content = "nacostest-ready", "nacostest", "ok"
	resp, err := httpClient.PostForm(s.BaseURL()+"/v1/cs/configs", url.Values{"dataId": {dataID}, "group": {group}, "content": {content}})
	if err != nil {
		return fmt.Errorf("publishing config %s: %w", dataID, err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("publishing config %s: %s", dataID, resp.Status)
	}
	get := s.BaseURL() + "/v1/cs/configs?" + url.Values{"dataId": {dataID}, "group": {group}}.Encode()
	return s.proc.poll(timeout, "config "+dataID+" read back", func() (bool, string) {
		resp, err := httpClient.Get(get)
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return resp.StatusCode == http.StatusOK && string(b) == content, resp.Status
	})
}

// --- Nacos 3 ---

func nacos3Dir() string { return filepath.Join(cacheDir(), "nacos3-"+nacos3Version) }

func nacos3Installed() error {
	if _, err := os.Stat(filepath.Join(nacos3Dir(), "stamp")); err != nil {
		return err
	}
	_, err := javaBinary()
	return err
}

// javaBinary finds java as the install script does: $JAVA_HOME, then PATH.
func javaBinary() (string, error) {
	if home := os.Getenv("JAVA_HOME"); home != "" {
		return filepath.Join(home, "bin", "java"), nil
	}
	return exec.LookPath("java")
}

// Nacos 3 derives its other ports from the main (HTTP) port
// (alibaba/nacos Constants.SDK_GRPC_PORT_DEFAULT_OFFSET,
// CLUSTER_GRPC_PORT_DEFAULT_OFFSET, and the Raft port in
// ProtocolManager/JRaftServer).
const (
	nacos3SDKOffset     = 1000
	nacos3ClusterOffset = 1001
	nacos3RaftOffset    = -1000
)

// nacos3Ports finds a main port whose derived ports are free too. It
// picks below the kernel's ephemeral port range, where no outgoing
// connection holds a local port: picked by bind(0) inside that range, the
// four ports were seen taken 50 times in a row while a test package ran
// hundreds of SDK connections.
func nacos3Ports() (int, error) {
	lo, hi := 1025-nacos3RaftOffset, ephemeralPortsFrom()-nacos3ClusterOffset
	if hi-lo < 1000 { // an unusual ephemeral range: use what is above it
		lo, hi = 33000, 65535-nacos3ClusterOffset
	}
	for range 50 {
		p := lo + mathrand.IntN(hi-lo)
		if portsFree(p, p+nacos3SDKOffset, p+nacos3ClusterOffset, p+nacos3RaftOffset) {
			return p, nil
		}
	}
	return 0, errors.New("no free main port with free derived ports (+1000, +1001, -1000)")
}

// ephemeralPortsFrom is the first port of the kernel's ephemeral range
// (net.ipv4.ip_local_port_range, 32768 by default).
func ephemeralPortsFrom() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	first, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\t")
	n, err := strconv.Atoi(strings.TrimSpace(first))
	if err != nil {
		return 32768
	}
	return n
}

// startNacos3 starts the standalone server built by install-nacos3.sh, with
// its data, logs and home under dir. Properties are the keys of alibaba/nacos
// bootstrap application.properties; see scripts/nacos/nacos3.
func startNacos3(dir string, opts Options) (*Server, error) {
	java, err := javaBinary()
	if err != nil {
		return nil, fmt.Errorf("finding java: %w", err)
	}
	port, err := nacos3Ports()
	if err != nil {
		return nil, err
	}
	install := nacos3Dir()
	s := &Server{
		Kind:        KindNacos3,
		HTTPAddr:    fmt.Sprintf("127.0.0.1:%d", port),
		GRPCPort:    port + nacos3SDKOffset,
		ContextPath: "/nacos",
		API:         "v3",
	}
	args := []string{
		// Small heap, serial GC and C1 only: the server idles in tests and
		// should start fast and stay small (figures in docs/nacos-servers.md).
		"-Xms64m", "-Xmx512m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
		"-Dnacos.standalone=true",
		"-Dnacos.home=" + dir,
		"-Duser.home=" + dir,
		"-DJM.LOG.PATH=" + filepath.Join(dir, "logs"),
		"-Dnacos.server.ip=127.0.0.1",
		"-Dnacos.remote.grpc.listen.ip=127.0.0.1",
		// lib-sofa after lib: see install-nacos3.sh.
		"-cp", strings.Join([]string{
			filepath.Join(install, "classes"),
			filepath.Join(install, "lib", "*"),
			filepath.Join(install, "lib-sofa", "*"),
		}, string(os.PathListSeparator)),
		"dev.tandem.nacos3.Main",
		"--spring.config.additional-location=file:" + filepath.Join(install, "conf") + "/",
		"--nacos.server.main.port=" + strconv.Itoa(port),
		"--nacos.logs.path=" + filepath.Join(dir, "logs"),
		// Secrets are random per server. The token key must be base64 of at
		// least 32 bytes or startup fails (JwtTokenManager).
		"--nacos.core.auth.server.identity.key=tandem-" + randomHex(8),
		"--nacos.core.auth.server.identity.value=" + randomHex(16),
		"--nacos.core.auth.plugin.nacos.token.secret.key=" + base64.StdEncoding.EncodeToString(randomBytes(32)),
		"--nacos.core.auth.enabled=" + strconv.FormatBool(opts.Auth),
		"--nacos.core.auth.admin.enabled=" + strconv.FormatBool(opts.Auth),
		"--nacos.core.auth.console.enabled=" + strconv.FormatBool(opts.Auth),
	}
	cmd := exec.Command(java, args...)
	cmd.Dir = dir
	if s.proc, err = startProcess(cmd, filepath.Join(dir, "server.log")); err != nil {
		return nil, err
	}
	// Ready: serving, and once an administrator exists, its login works.
	s.ready = func() error {
		err := s.proc.waitReady(s.BaseURL()+"/v3/admin/core/state/readiness", nacos3ReadyTimeout)
		if err == nil && s.Username != "" {
			err = awaitLogin(s, time.Minute)
		}
		return err
	}
	err = s.ready() // no administrator yet: serving is enough
	if err == nil && opts.Auth {
		s.Username, s.Password = "nacos", randomHex(16)
		if err = createNacos3Admin(s); err == nil {
			err = awaitLogin(s, time.Minute)
		}
	}
	if err != nil {
		s.proc.stop()
		return nil, err
	}
	return s, nil
}

// createNacos3Admin creates the first administrator, which Nacos 3 always
// names "nacos" (POST /v3/auth/user/admin, default auth plugin).
func createNacos3Admin(s *Server) error {
	resp, err := httpClient.PostForm(s.BaseURL()+"/v3/auth/user/admin", url.Values{"password": {s.Password}})
	if err != nil {
		return fmt.Errorf("creating the nacos administrator: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("creating the nacos administrator: %s: %s", resp.Status, body)
	}
	return nil
}

// awaitLogin polls the v1 login, which both kinds serve, until the
// server's credentials work.
func awaitLogin(s *Server, timeout time.Duration) error {
	form := url.Values{"username": {s.Username}, "password": {s.Password}}
	return s.proc.poll(timeout, "login as "+s.Username, func() (bool, string) {
		resp, err := httpClient.PostForm(s.BaseURL()+"/v1/auth/users/login", form)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, resp.Status
	})
}

// environWithout returns the environment without the variables whose
// names start with any of the prefixes.
func environWithout(prefixes ...string) []string {
	var env []string
next:
	for _, kv := range os.Environ() {
		for _, p := range prefixes {
			if strings.HasPrefix(kv, p) {
				continue next
			}
		}
		env = append(env, kv)
	}
	return env
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func randomHex(n int) string { return hex.EncodeToString(randomBytes(n)) }
