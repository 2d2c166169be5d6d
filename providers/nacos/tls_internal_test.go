package nacos

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/spec"
)

// tlsNacos is a Nacos operator API over TLS with a certificate of a private
// CA; with clientCA it also requires a client certificate that CA signed.
func tlsNacos(t *testing.T, files testkit.TLSFiles, clientCA bool) string {
	cert, err := tls.LoadX509KeyPair(files.ServerCert, files.ServerKey)
	require.NoError(t, err)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/nacos/v1/ns/catalog/instances" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprint(w, `{"count":1,"list":[{"ip":"10.0.0.1","port":8080,"clusterName":"DEFAULT","enabled":true,"healthy":true,"weight":1}]}`)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	if clientCA {
		pem, err := os.ReadFile(files.CA)
		require.NoError(t, err)
		pool := x509.NewCertPool()
		require.True(t, pool.AppendCertsFromPEM(pem))
		srv.TLS.ClientCAs, srv.TLS.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "https://")
}

func TestOperatorSpeaksHTTPSVerifiedWithTheConfiguredCA(t *testing.T) {
	files := testkit.NewTLSFiles(t)
	ref := spec.NacosRef{Provider: "prod", Namespace: "public", Group: "DEFAULT_GROUP", Service: "web", Cluster: "DEFAULT"}
	list := func(server string, cfg spec.NacosProvider) error {
		cfg.Name, cfg.Scheme = "prod", "https"
		hc, err := httpClient(cfg, 5*time.Second)
		if err != nil {
			return err
		}
		o := &operator{scheme: "https", servers: []string{server}, contextPath: "/nacos", api: "v1", hc: hc, now: time.Now}
		got, err := o.list(context.Background(), ref)
		if err == nil && len(got) != 1 {
			return fmt.Errorf("want 1 instance, got %v", got)
		}
		return err
	}

	server := tlsNacos(t, files, false)
	require.NoError(t, list(server, spec.NacosProvider{CAFile: files.CA}))
	err := list(server, spec.NacosProvider{})
	require.Error(t, err, "without the CA the server's certificate is refused")
	require.Contains(t, err.Error(), "certificate signed by unknown authority")

	mutual := tlsNacos(t, files, true)
	require.NoError(t, list(mutual, spec.NacosProvider{CAFile: files.CA, CertFile: files.ClientCert, KeyFile: files.ClientKey}))
	require.Error(t, list(mutual, spec.NacosProvider{CAFile: files.CA}), "the server requires a client certificate")
}
