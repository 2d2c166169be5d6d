// Package egress dials only where a policy.network allowlist of tandem.yaml
// (spec.Allowlist) lets the desired state in Git make the daemon connect.
// The check runs on the address a host name resolved to, immediately before
// the connection is made (net.Dialer.Control), so a name that resolves to a
// metadata address, or is re-pointed at one after the service file was
// loaded, is refused.
package egress

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// Resolver looks up the addresses of a host name; *net.Resolver is one.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// RefusedError is a connection the policy does not allow.
type RefusedError struct{ Err error }

func (e *RefusedError) Error() string { return "refused by policy: " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Dialer connects only to allowed addresses.
type Dialer struct {
	Allow    *spec.Allowlist // nil: every address but the refused ranges
	Resolver Resolver        // nil: net.DefaultResolver
	Timeout  time.Duration   // connect timeout; 0: 10s
}

// DialContext resolves addr's host, drops the addresses the allowlist
// refuses and dials the others in turn. It is an http.Transport DialContext.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("dialing %s: bad port %q", addr, portText)
	}
	allow := d.Allow
	if allow == nil {
		allow = spec.NewAllowlist("policy.network")
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		var r Resolver = net.DefaultResolver
		if d.Resolver != nil {
			r = d.Resolver
		}
		if ips, err = r.LookupNetIP(ctx, "ip", host); err != nil {
			return nil, err
		}
	}
	timeout := d.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	nd := &net.Dialer{
		Timeout: timeout,
		// The last word: whatever address the connection is about to use.
		Control: func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return &RefusedError{fmt.Errorf("unparsable address %q", address)}
			}
			if err := allow.CheckDial(host, ap.Addr()); err != nil {
				return &RefusedError{err}
			}
			return nil
		},
	}
	var errs []error
	for _, ip := range ips {
		if err := allow.CheckDial(host, ip); err != nil {
			errs = append(errs, &RefusedError{err})
			continue
		}
		c, err := nd.DialContext(ctx, network, netip.AddrPortFrom(ip, uint16(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
	}
	if len(errs) == 0 {
		return nil, fmt.Errorf("dialing %s: no addresses", addr)
	}
	return nil, errors.Join(errs...)
}

// Transport is an HTTP transport that dials through d. It uses no proxy:
// the allowlist is about the address a request reaches, and a proxy would
// hide it.
func (d *Dialer) Transport() *http.Transport {
	return &http.Transport{
		DialContext:           d.DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          100,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
	}
}

// InstanceClient is the HTTP client of the requests Tandem sends to
// instances (health probes, smoke tests): it connects only where hosts
// allows (policy.network.probe of tandem.yaml; nil: every address but the
// refused ranges), opens a connection per request and never follows a
// redirect, which is an answer of its own.
func InstanceClient(hosts *spec.Allowlist) *http.Client {
	if hosts == nil {
		hosts = spec.NewAllowlist("policy.network.probe")
	}
	transport := (&Dialer{Allow: hosts}).Transport()
	transport.DisableKeepAlives = true
	return &http.Client{
		Transport:     transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// IsRefused reports whether err is a connection the policy refused.
func IsRefused(err error) bool {
	var r *RefusedError
	return errors.As(err, &r)
}
