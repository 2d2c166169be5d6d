package ha

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/goleak"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"

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
	srv, err := startEtcd(dir)
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

// startEtcd starts a single-member etcd on loopback ports chosen by the
// kernel. Ticks are halved so that etcd's minimum lease TTL, 3/2 of the
// election timeout rounded up to a second, is 1s instead of 2s.
func startEtcd(dir string) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = "ha-test"
	cfg.Dir = dir
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{loop}, []url.URL{loop}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{loop}, []url.URL{loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs, cfg.ElectionMs = 50, 500
	cfg.UnsafeNoFsync = true // tests only
	cfg.BcryptCost = uint(bcrypt.MinCost)
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	srv, err := embed.StartEtcd(cfg)
	if err != nil {
		return nil, err
	}
	select {
	case <-srv.Server.ReadyNotify():
		return srv, nil
	case err := <-srv.Err():
		srv.Close()
		return nil, err
	case <-time.After(30 * time.Second):
		srv.Close()
		return nil, fmt.Errorf("not ready after 30s")
	}
}

// setUpAuth creates root and the test user and turns auth on.
func setUpAuth() error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{etcdEndpoint}, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	steps := []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, testUser); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, testUser, "/test/", clientv3.GetPrefixRangeEnd("/test/"), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, testUser, testPassword); return err },
		func() error { _, err := c.UserGrantRole(ctx, testUser, testUser); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	}
	for _, step := range steps {
		if err := step(); err != nil {
			return err
		}
	}
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
