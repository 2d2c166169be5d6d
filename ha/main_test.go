package ha

import (
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/goleak"
	"go.uber.org/zap"

	"github.com/tandemhq/tandem/internal/etcdtest"
	"github.com/tandemhq/tandem/spec"
)

// One embedded etcd serves the whole package, with auth on, as production
// etcd should run: the electors log in as testUser, who may use /test/
// only; testRoot sets things up and plays the operator.
var (
	etcdEndpoint string
	testRoot     *clientv3.Client
)

const (
	testUser        = "tandem"
	testPassword    = "pw-7f3a9c2e-never-shown"
	testUserEnv     = "TANDEM_TEST_ETCD_USER"
	testPasswordEnv = "TANDEM_TEST_ETCD_PASSWORD"
	rootPassword    = "root-pw"
)

func TestMain(m *testing.M) {
	if dir := os.Getenv(lockHelperEnv); dir != "" {
		lockHelper(dir)
		return
	}
	os.Exit(run(m))
}

func run(m *testing.M) int {
	dir, err := os.MkdirTemp("", "tandem-ha-etcd-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	srv, err := etcdtest.Start(dir, "ha-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, "starting embedded etcd:", err)
		return 1
	}
	etcdEndpoint = srv.Clients[0].Addr().String()
	if err := setUpAuth(); err != nil {
		fmt.Fprintln(os.Stderr, "setting up etcd auth:", err)
		srv.Close()
		return 1
	}
	os.Setenv(testUserEnv, testUser)
	os.Setenv(testPasswordEnv, testPassword)

	code := m.Run()
	testRoot.Close()
	srv.Close()
	if code == 0 {
		if err := goleak.Find(leakOptions...); err != nil {
			fmt.Fprintln(os.Stderr, "goroutines leaked:", err)
			return 1
		}
	}
	return code
}

// leakOptions are goroutines that outlive a closed embedded etcd and
// client by design.
var leakOptions = []goleak.Option{}

// setUpAuth creates root and the test user, who may use /test/ only, turns
// auth on and connects testRoot.
func setUpAuth() error {
	if err := etcdtest.EnableAuth(etcdEndpoint, rootPassword, testUser, testPassword, "/test/"); err != nil {
		return err
	}
	var err error
	testRoot, err = clientv3.New(clientv3.Config{Endpoints: []string{etcdEndpoint}, Username: "root", Password: rootPassword,
		DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	return err
}

var prefixes atomic.Int64

// haConfig is a configuration for a prefix of its own, even when tests
// are repeated (-count).
func haConfig(t testing.TB, ttl time.Duration) spec.HAConfig {
	return spec.HAConfig{
		Etcd:        []string{etcdEndpoint},
		Prefix:      fmt.Sprintf("/test/%s-%d", strings.ReplaceAll(t.Name(), "/", "_"), prefixes.Add(1)),
		LeaseTTL:    spec.Duration(ttl),
		UsernameEnv: testUserEnv,
		PasswordEnv: testPasswordEnv,
	}
}
