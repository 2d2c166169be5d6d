package demoapp_test

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/demoapp"
	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/providers/deploy"
	"github.com/tandemhq/tandem/spec"
)

func TestFleetDeployRestartsTheInstancesAtTheNewVersionThroughTheHTTPDeployer(t *testing.T) {
	fleet := demoapp.NewFleet(t.Context(), nil)
	t.Cleanup(func() { require.NoError(t, fleet.Close()) })
	var instances []spec.Instance
	for _, name := range []string{"b1", "b2"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		a, err := fleet.Start(demoapp.Options{Name: name, Version: "1.0.0", Group: "B", Listener: ln})
		require.NoError(t, err)
		instances = append(instances, a.Instance())
	}
	srv := httptest.NewServer(fleet.DeployHandler())
	t.Cleanup(srv.Close)
	d, err := deploy.New(spec.Deploy{
		HTTP:    &spec.HTTPDeploy{URL: srv.URL + "/deploy", PollInterval: spec.Duration(10 * time.Millisecond)},
		Timeout: spec.Duration(30 * time.Second),
	}, deploy.Policy{}, nil)
	require.NoError(t, err)

	res, err := d.Deploy(t.Context(), providers.DeployRequest{Service: "demo", Group: spec.GroupB, Version: "2.0.0", Instances: instances})
	require.NoError(t, err)
	require.Equal(t, "restarted "+instances[0].Addr()+", "+instances[1].Addr()+" at 2.0.0\n", res.Output)
	for i, in := range instances {
		_, body := get(t, "http://"+in.Addr()+"/version")
		require.JSONEq(t, `{"version":"2.0.0","group":"B","name":"b`+strconv.Itoa(i+1)+`"}`, body)
	}

	_, err = d.Deploy(t.Context(), providers.DeployRequest{Service: "demo", Group: spec.GroupB, Version: "3.0.0",
		Instances: []spec.Instance{{IP: "127.0.0.1", Port: 1, ID: "ghost"}}})
	var perm *providers.PermanentError
	require.ErrorAs(t, err, &perm)
	require.Equal(t, "DeployRejected", perm.Reason)
	require.ErrorContains(t, err, "no app runs at 127.0.0.1:1")
	resp, _ := get(t, srv.URL+"/deploy/jobs/7")
	require.Equal(t, http.StatusNotFound, resp.StatusCode)
}

func TestABrokenVersionAnswersEchoWith500WhileItsHealthChecksPass(t *testing.T) {
	fleet := demoapp.NewFleet(t.Context(), nil)
	t.Cleanup(func() { require.NoError(t, fleet.Close()) })
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	a, err := fleet.Start(demoapp.Options{Name: "b1", Version: "1.0.0", Group: "B", Listener: ln})
	require.NoError(t, err)
	fleet.BreakEcho("2.0.0-bad")

	// A new connection each time: the app restarts between the requests.
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	echo := func() (int, string) {
		resp, err := client.Post("http://"+a.Addr()+"/echo", "text/plain", strings.NewReader("ping"))
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, string(body)
	}
	code, body := echo()
	require.Equal(t, http.StatusOK, code, "only the broken version is broken")
	require.Equal(t, "ping", body)

	require.NoError(t, fleet.Restart([]string{a.Addr()}, "2.0.0-bad"))
	code, body = echo()
	require.Equal(t, http.StatusInternalServerError, code)
	require.Equal(t, "fault injected for version 2.0.0-bad\n", body)
	resp, _ := get(t, "http://"+a.Addr()+"/healthz")
	require.Equal(t, http.StatusOK, resp.StatusCode, "the health check stays green")

	require.NoError(t, fleet.Restart([]string{a.Addr()}, "2.0.1"))
	code, _ = echo()
	require.Equal(t, http.StatusOK, code, "the next version is fine again")
}
