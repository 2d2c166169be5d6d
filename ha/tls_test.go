package ha

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/etcdtest"
	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/spec"
)

// The elector reaches an etcd that serves clients over TLS with a private
// CA and requires client certificates, given ha.caFile, certFile and
// keyFile; without the CA it does not.
func TestElectorConnectsToEtcdOverTLSWithTheConfiguredCA(t *testing.T) {
	files := testkit.NewTLSFiles(t)
	srv, err := etcdtest.StartTLS(t.TempDir(), "ha-tls", files.ServerCert, files.ServerKey, files.CA)
	require.NoError(t, err)
	t.Cleanup(srv.Close)
	endpoint := "https://" + srv.Clients[0].Addr().String()
	// A refused handshake is retried until the deadline: a short one for
	// the cases that must fail, a long one for the case that must not.
	leader := func(cfg spec.HAConfig, wait time.Duration) error {
		cfg.Etcd, cfg.Prefix, cfg.LeaseTTL = []string{endpoint}, "/tls", spec.Duration(2*time.Second)
		e, err := NewElector(cfg, "a", nil)
		if err != nil {
			return err
		}
		defer e.Close()
		ctx, cancel := context.WithTimeout(t.Context(), wait)
		defer cancel()
		_, err = e.Leader(ctx)
		return err
	}

	require.NoError(t, leader(spec.HAConfig{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}, 30*time.Second))
	require.Error(t, leader(spec.HAConfig{CertFile: files.ClientCert, KeyFile: files.ClientKey}, time.Second),
		"without the CA, etcd's certificate is not trusted")
	require.Error(t, leader(spec.HAConfig{CAFile: files.CA}, time.Second), "etcd requires a client certificate")
}
