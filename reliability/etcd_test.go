package reliability_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/etcdtest"
)

// startEtcd starts an embedded single-member etcd on loopback with auth on:
// user may read and write under prefix with password, as production etcd
// for Tandem's HA runs. It returns the client endpoint.
func startEtcd(t testing.TB, user, password, prefix string) string {
	t.Helper()
	srv, err := etcdtest.Start(t.TempDir(), "reliability")
	require.NoError(t, err, "embedded etcd")
	t.Cleanup(srv.Close)
	endpoint := srv.Clients[0].Addr().String()
	require.NoError(t, etcdtest.EnableAuth(endpoint, "root-pw-reliability", user, password, prefix))
	return endpoint
}
