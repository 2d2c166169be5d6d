package server

import (
	"context"
	"net"
	"time"
)

// SetClock fixes the server's clock (the time of service lists).
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// ServeListener is Serve on a listener the test opened.
func (s *Server) ServeListener(ctx context.Context, ln net.Listener) error { return s.serve(ctx, ln) }
