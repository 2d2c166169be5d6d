package nacostest

import (
	"bufio"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(SharedMain(m), IgnoreSDKGoroutines()...)
}

// forEachKind runs f in a subtest per kind against that kind's shared server.
func forEachKind(t *testing.T, opts Options, f func(t *testing.T, s *Server)) {
	for _, kind := range Kinds() {
		t.Run(kind, func(t *testing.T) {
			f(t, Shared(t, kind, opts))
		})
	}
}

var serviceSeq atomic.Int64

// serviceName returns a service name no other test uses.
func serviceName(t testing.TB) string {
	name := strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
	return fmt.Sprintf("%s-%d", name, serviceSeq.Add(1))
}

func TestServersListenOnLoopbackOnly(t *testing.T) {
	forEachKind(t, Options{}, func(t *testing.T, s *Server) {
		addrs := listeningAddrs(t, s.proc.cmd.Process.Pid)
		require.NotEmpty(t, addrs)
		for _, a := range addrs {
			require.True(t, a.IP.IsLoopback(), "%s listens on %s", s.Kind, a)
		}
		require.Contains(t, addrs, &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1).To4(), Port: s.GRPCPort})
	})
}

func TestStartStopsTheServerAndRemovesItsDataAtCleanup(t *testing.T) {
	var s *Server
	t.Run("rnacos", func(t *testing.T) { s = Start(t, KindRNacos, Options{}) })
	if s == nil {
		return // skipped: not installed
	}
	select {
	case <-s.proc.exited:
	default:
		t.Fatal("the server is still running after the test that started it")
	}
	_, err := os.Stat(s.dir)
	require.True(t, os.IsNotExist(err), "data directory %s: %v", s.dir, err)
}

func TestNotInstalledNamesTheInstallScript(t *testing.T) {
	t.Setenv("TANDEM_CACHE", t.TempDir())
	for kind, script := range map[string]string{KindRNacos: "install-rnacos.sh", KindNacos3: "install-nacos3.sh"} {
		err := Installed(kind)
		require.ErrorContains(t, err, kind+" is not installed")
		require.ErrorContains(t, err, "scripts/nacos/"+script)
	}
	require.ErrorContains(t, Installed("zookeeper"), `unknown Nacos server kind "zookeeper"`)
}

// listeningAddrs returns the TCP addresses the process listens on, from
// /proc: its socket inodes matched against /proc/net/tcp{,6} rows in LISTEN.
func listeningAddrs(t *testing.T, pid int) []*net.TCPAddr {
	t.Helper()
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	require.NoError(t, err)
	inodes := map[string]bool{}
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join(fmt.Sprintf("/proc/%d/fd", pid), fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var addrs []*net.TCPAddr
	for _, table := range []string{"tcp", "tcp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		require.NoError(t, err)
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			const listen = "0A"
			if len(fields) < 10 || fields[3] != listen || !inodes[fields[9]] {
				continue
			}
			addrs = append(addrs, parseProcAddr(t, fields[1]))
		}
		f.Close()
		require.NoError(t, sc.Err())
	}
	return addrs
}

// parseProcAddr parses a /proc/net/tcp address: the IP as 32-bit words in
// host (little-endian) order, then ":" and the port in hex.
func parseProcAddr(t *testing.T, s string) *net.TCPAddr {
	ipHex, portHex, ok := strings.Cut(s, ":")
	require.True(t, ok, s)
	raw, err := hex.DecodeString(ipHex)
	require.NoError(t, err, s)
	for i := 0; i+4 <= len(raw); i += 4 {
		raw[i], raw[i+1], raw[i+2], raw[i+3] = raw[i+3], raw[i+2], raw[i+1], raw[i]
	}
	var port int
	_, err = fmt.Sscanf(portHex, "%X", &port)
	require.NoError(t, err, s)
	ip := net.IP(raw)
	if v4 := ip.To4(); v4 != nil {
		ip = v4
	}
	return &net.TCPAddr{IP: ip, Port: port}
}
