package main

import (
	"net"
	"net/http"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestRunRefusesBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		msg  string
	}{
		{[]string{"--listen", "127.0.0.1:0"}, "--version is required"},
		{[]string{"--version", "1", "--nacos-addr", "127.0.0.1:8848"}, "--nacos-addr and --nacos-service go together"},
		{[]string{"--version", "1", "--listen", "0.0.0.0:0", "--nacos-addr", "127.0.0.1:8848", "--nacos-service", "demo"},
			`registering in nacos: --listen must name the IP consumers reach, got "0.0.0.0"`},
		{[]string{"--version", "1", "--listen", "127.0.0.1:0", "--nacos-addr", "nacos", "--nacos-service", "demo"},
			`registering in nacos: --nacos-addr "nacos": address nacos: missing port in address`},
	} {
		require.EqualError(t, run(tc.args), tc.msg)
	}
}

func TestRunServesUntilSIGTERMThenShutsDownGracefully(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	done := make(chan error, 1)
	go func() { done <- run([]string{"--listen", addr, "--version", "1.0.0", "--name", "a1", "--group", "A"}) }()
	// Once the app answers, run has installed its signal handler.
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + addr + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 5*time.Second, 10*time.Millisecond)
	require.NoError(t, syscall.Kill(syscall.Getpid(), syscall.SIGTERM))
	require.NoError(t, <-done)
	_, err = net.Dial("tcp", addr)
	require.Error(t, err)
}
