package egress_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/egress"
	"github.com/tandemhq/tandem/spec"
)

type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, errors.New("no such host " + host)
}

func TestDialerChecksTheAddressesANameResolvesTo(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	_, port, err := net.SplitHostPort(ln.Addr().String())
	require.NoError(t, err)
	d := &egress.Dialer{Resolver: resolver{
		"metadata.example": {netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("::ffff:100.100.100.200")},
		"mixed.example":    {netip.MustParseAddr("169.254.169.254"), netip.MustParseAddr("127.0.0.1")},
	}}

	_, err = d.DialContext(t.Context(), "tcp", net.JoinHostPort("metadata.example", port))
	require.True(t, egress.IsRefused(err), "%v", err)
	require.ErrorContains(t, err, "refused by policy: metadata.example (169.254.169.254) is a link-local address")
	require.ErrorContains(t, err, "metadata.example (100.100.100.200) is the Alibaba Cloud metadata service")

	c, err := d.DialContext(t.Context(), "tcp", net.JoinHostPort("mixed.example", port))
	require.NoError(t, err, "the refused address is skipped, the allowed one dialed")
	require.Equal(t, ln.Addr().String(), c.RemoteAddr().String())
	require.NoError(t, c.Close())

	d.Allow = spec.NewAllowlist("policy.network.probe", "10.0.0.0/8")
	_, err = d.DialContext(t.Context(), "tcp", ln.Addr().String())
	require.True(t, egress.IsRefused(err))
	require.ErrorContains(t, err, "127.0.0.1 is not allowed by policy.network.probe")
}
