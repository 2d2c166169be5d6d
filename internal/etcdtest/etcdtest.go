// Package etcdtest starts embedded etcd servers for tests
// (go.etcd.io/etcd/server/v3/embed) and sets up authentication on them as
// production etcd for Tandem's HA runs. Only tests import it.
package etcdtest

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	"golang.org/x/crypto/bcrypt"
)

// readyTimeout bounds the wait for a started server.
const readyTimeout = 30 * time.Second

// Start starts a single-member etcd named name, with its data in dir, on
// loopback ports the kernel chooses, and returns it ready; Close stops it.
// Ticks are halved so that etcd's minimum lease TTL, 3/2 of the election
// timeout rounded up to a second, is 1s instead of 2s. Nothing is synced to
// disk and passwords are hashed at the lowest cost: for tests only.
func Start(dir, name string) (*embed.Etcd, error) {
	return start(dir, name, nil)
}

// StartTLS is Start with clients served over TLS only, with the server
// certificate certFile and its key keyFile; when clientCA is set, clients
// must present a certificate it signed.
func StartTLS(dir, name, certFile, keyFile, clientCA string) (*embed.Etcd, error) {
	return start(dir, name, &transport.TLSInfo{CertFile: certFile, KeyFile: keyFile, TrustedCAFile: clientCA, ClientCertAuth: clientCA != ""})
}

func start(dir, name string, tlsInfo *transport.TLSInfo) (*embed.Etcd, error) {
	cfg := embed.NewConfig()
	cfg.Name = name
	cfg.Dir = dir
	loop := url.URL{Scheme: "http", Host: "127.0.0.1:0"}
	clients := loop
	if tlsInfo != nil {
		clients.Scheme = "https"
		cfg.ClientTLSInfo = *tlsInfo
	}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{clients}, []url.URL{clients}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{loop}, []url.URL{loop}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.TickMs, cfg.ElectionMs = 50, 500
	cfg.UnsafeNoFsync = true
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
	case <-time.After(readyTimeout):
		srv.Close()
		return nil, fmt.Errorf("not ready after %s", readyTimeout)
	}
}

// EnableAuth creates root with rootPassword, and user with password and
// read-write access under prefix only, then turns authentication on.
func EnableAuth(endpoint, rootPassword, user, password, prefix string) error {
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{endpoint}, Logger: zap.NewNop()})
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, step := range []func() error{
		func() error { _, err := c.UserAdd(ctx, "root", rootPassword); return err },
		func() error { _, err := c.UserGrantRole(ctx, "root", "root"); return err },
		func() error { _, err := c.RoleAdd(ctx, user); return err },
		func() error {
			_, err := c.RoleGrantPermission(ctx, user, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := c.UserAdd(ctx, user, password); return err },
		func() error { _, err := c.UserGrantRole(ctx, user, user); return err },
		func() error { _, err := c.AuthEnable(ctx); return err },
	} {
		if err := step(); err != nil {
			return err
		}
	}
	return nil
}
