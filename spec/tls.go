package spec

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
)

// TLSFiles are the files of a TLS client: the PEM CA bundle that verifies
// the server's certificate (empty: the system's roots), an optional client
// certificate and key (PEM), and the name to verify instead of the host
// dialled (empty: the host).
type TLSFiles struct {
	CAFile     string
	CertFile   string
	KeyFile    string
	ServerName string
}

// Set reports whether any TLS setting is given.
func (f TLSFiles) Set() bool {
	return f.CAFile != "" || f.CertFile != "" || f.KeyFile != "" || f.ServerName != ""
}

// ClientConfig loads the files into a client TLS configuration (TLS 1.2 at
// least). base names the section in errors, e.g. "ha".
func (f TLSFiles) ClientConfig(base string) (*tls.Config, error) {
	cfg, field, err := f.load()
	if err != nil {
		return nil, fmt.Errorf("%s.%s: %w", base, field, err)
	}
	return cfg, nil
}

// load builds the configuration, or names the field whose file is wrong.
func (f TLSFiles) load() (cfg *tls.Config, field string, err error) {
	cfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: f.ServerName}
	if f.CAFile != "" {
		pem, err := readSmall(f.CAFile)
		if err != nil {
			return nil, "caFile", fmt.Errorf("cannot read the CA bundle: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, "caFile", fmt.Errorf("%s holds no PEM certificate", f.CAFile)
		}
		cfg.RootCAs = pool
	}
	switch {
	case f.CertFile == "" && f.KeyFile == "":
	case f.CertFile == "":
		return nil, "certFile", fmt.Errorf("is required with keyFile (a client certificate needs both)")
	case f.KeyFile == "":
		return nil, "keyFile", fmt.Errorf("is required with certFile (a client certificate needs both)")
	default:
		certPEM, err := readSmall(f.CertFile)
		if err != nil {
			return nil, "certFile", fmt.Errorf("cannot read the client certificate: %w", err)
		}
		keyPEM, err := readSmall(f.KeyFile)
		if err != nil {
			return nil, "keyFile", fmt.Errorf("cannot read the client key: %w", err)
		}
		cert, err := tls.X509KeyPair(certPEM, keyPEM)
		if err != nil {
			return nil, "certFile", fmt.Errorf("%s and %s are not a PEM certificate and its key: %w", f.CertFile, f.KeyFile, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, "", nil
}

// maxPEMFile bounds what is read of a certificate, key or CA file.
const maxPEMFile = 1 << 20

// readSmall reads a regular file of at most maxPEMFile bytes (never a
// device or a pipe named by mistake).
func readSmall(path string) ([]byte, error) {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return nil, err
	case !st.Mode().IsRegular():
		return nil, fmt.Errorf("%s is not a regular file", path)
	case st.Size() > maxPEMFile:
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxPEMFile)
	}
	return os.ReadFile(path)
}
