//go:build !nacostest

package nacos_test

// realTargets is empty until internal/nacostest lands in this branch; build
// with -tags nacostest to include the real servers.
func realTargets() []target { return nil }
