package server

import "time"

// SetClock fixes the server's clock (the time of service lists).
func (s *Server) SetClock(now func() time.Time) { s.now = now }
