package haproxy

// Health exposes health for a table test.
var Health = health
