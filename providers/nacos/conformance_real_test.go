package nacos_test

import (
	"testing"

	"github.com/tandemhq/tandem/internal/nacostest"
)

// realExpectations are what each real server does where servers differ
// (docs/nacos-servers.md records the observations).
var realExpectations = map[string]expectations{
	// r-nacos keeps enabled=false on the stored instance and loses it when
	// the app re-registers (docs/nacos-servers.md) or the server restarts,
	// its catalog list leaves disabled instances out, and it pins an
	// address's first metadata.
	nacostest.KindRNacos: {restartKeepsOverride: false, serverRestartKeepsOverride: false, listOmitsDisabled: true, firstMetadataPinned: true},
	// Nacos 3 keeps the override 60 s after the owner left and across its own
	// restart, and refuses the v1 write API with 410 (docs/nacos-servers.md);
	// it answers a wrong password with 500.
	nacostest.KindNacos3: {restartKeepsOverride: true, serverRestartKeepsOverride: true, v1WritesGone: true, badLoginTransient: true},
}

// realTargets are the real servers internal/nacostest knows, with auth off
// and on; a server that is not installed skips (or fails under
// TANDEM_REQUIRE_REAL_NACOS=1). The override's 60 s expiry is not waited
// for on real servers (no startShortExpiry): make test does not spend that.
func realTargets() []target {
	var ts []target
	for _, kind := range nacostest.Kinds() {
		for _, auth := range []bool{false, true} {
			name := kind
			if auth {
				name += "-auth"
			}
			ts = append(ts, target{
				name:   name,
				auth:   auth,
				expect: realExpectations[kind],
				start: func(t testing.TB) server {
					if _, ok := realExpectations[kind]; !ok {
						t.Fatalf("no expectations recorded for the %s server", kind)
					}
					s := nacostest.Shared(t, kind, nacostest.Options{Auth: auth})
					return server{
						HTTPAddr: s.HTTPAddr, GRPCPort: s.GRPCPort, ContextPath: s.ContextPath, API: s.API,
						Username: s.Username, Password: s.Password,
						restart: s.Restart,
					}
				},
			})
		}
	}
	return ts
}
