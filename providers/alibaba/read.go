package alibaba

import (
	"context"
	"sync"
)

// ReadWithHealth reads a server group's servers and, when withHealth, its
// health at the same time: an idle pass over many services is bound by the
// API's latency, not by the work. A failed servers read cancels the health
// read (its answer would be thrown away). Both errors are returned, for the
// caller to name what failed.
func ReadWithHealth[S, H any](ctx context.Context, withHealth bool,
	servers func(context.Context) (S, error), health func(context.Context) (H, error),
) (s S, h H, serversErr, healthErr error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	if withHealth {
		wg.Go(func() { h, healthErr = health(ctx) })
	}
	if s, serversErr = servers(ctx); serversErr != nil {
		cancel()
	}
	wg.Wait()
	return s, h, serversErr, healthErr
}
