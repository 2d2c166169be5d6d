package server_test

import (
	"fmt"
	"io"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
)

// BenchmarkServicesList measures GET /api/v1/services over loopback with
// 1,000 services (the scale target in README, "Benchmarks") and reports the
// size of the answer: go test -run - -bench ServicesList ./server
func BenchmarkServicesList(b *testing.B) {
	e := start(b, server.Options{})
	base := fixtures()
	list := make([]reconcile.Status, 0, 1000)
	for i := range 1000 {
		s := base[i%len(base)]
		s.Service = fmt.Sprintf("%s-%03d", s.Service, i)
		list = append(list, s)
	}
	e.status.set(list)
	var size int64
	b.ReportAllocs()
	for b.Loop() {
		resp, err := e.client.Get(e.url + "/api/v1/services")
		require.NoError(b, err)
		size, err = io.Copy(io.Discard, resp.Body)
		require.NoError(b, err)
		require.NoError(b, resp.Body.Close())
	}
	b.ReportMetric(float64(size)/1e6, "MB/answer")
}
