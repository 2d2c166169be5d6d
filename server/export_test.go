package server

import "time"

// SetClock fixes the server's clock (the time of service lists).
func (s *Server) SetClock(now func() time.Time) { s.now = now }

// Session is the value of a session cookie that expires at expiry.
func (s *Server) Session(expiry time.Time) string { return s.tokens.session(expiry) }

// SetStreamWriteTimeout changes the deadline of each stream write.
func (s *Server) SetStreamWriteTimeout(d time.Duration) { s.writeTimeout = d }
