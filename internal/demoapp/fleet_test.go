package demoapp_test

import (
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
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
