package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
	"github.com/tandemhq/tandem/spec"
	"github.com/tandemhq/tandem/spec/gitsource"
)

func TestPrintStatusTableMatchesGolden(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, server.PrintStatus(&b, fixtures(), ""))
	golden(t, "status.txt", b.Bytes())

	var table bytes.Buffer
	require.NoError(t, server.PrintStatus(&table, fixtures(), "table"))
	require.Equal(t, b.String(), table.String(), "table is the default")
}

func TestPrintStatusJSONMatchesGoldenAndTheAPI(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, server.PrintStatus(&b, fixtures(), "json"))
	golden(t, "status.json", b.Bytes())
}

func TestPrintStatusWithoutServices(t *testing.T) {
	var b bytes.Buffer
	require.NoError(t, server.PrintStatus(&b, nil, ""))
	require.Equal(t, "No services.\n", b.String())
	b.Reset()
	require.NoError(t, server.PrintStatus(&b, nil, "json"))
	require.JSONEq(t, `{"services": []}`, b.String())
}

func TestPrintStatusRefusesAnUnknownFormat(t *testing.T) {
	var b bytes.Buffer
	err := server.PrintStatus(&b, fixtures(), "yaml")
	require.EqualError(t, err, `output format "yaml": want table or json`)
	require.Empty(t, b.String())
}

func TestFetchStatusReadsTheAPI(t *testing.T) {
	e := start(t, server.Options{})
	got, err := server.FetchStatus(context.Background(), e.url)
	require.NoError(t, err)
	require.Equal(t, fixtures(), got)

	got, err = server.FetchStatus(context.Background(), e.url+"/")
	require.NoError(t, err, "a trailing slash is fine")
	require.Len(t, got, 4)
}

func TestFetchStatusErrors(t *testing.T) {
	failing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/broken/api/v1/services":
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`{"error": "statuses unavailable"}`))
		case "/other/api/v1/services":
			_, _ = w.Write([]byte(`{"items": []}`))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(failing.Close)
	tests := []struct {
		name string
		url  string
		want string
	}{
		{"a server error carries its message", failing.URL + "/broken",
			"fetching status from " + failing.URL + "/broken/api/v1/services: 500 Internal Server Error: statuses unavailable"},
		{"an answer that is not Tandem's is named", failing.URL + "/other", "the answer has no services list; is this a Tandem server?"},
		{"a page that is not found is reported", failing.URL + "/elsewhere", "404 Not Found"},
		{"a URL without a scheme is refused", "127.0.0.1:8080", `server URL "127.0.0.1:8080": want http://host:port or https://host:port`},
		{"a URL with another scheme is refused", "ftp://127.0.0.1", `server URL "ftp://127.0.0.1": want http://host:port`},
		{"a password in a refused URL is not repeated", "ftp://admin:hunter2@127.0.0.1", `server URL "ftp://admin:xxxxx@127.0.0.1"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := server.FetchStatus(context.Background(), tc.url)
			require.ErrorContains(t, err, tc.want)
			require.NotContains(t, err.Error(), "hunter2")
		})
	}
}

func TestFetchStatusStopsWithItsContext(t *testing.T) {
	e := start(t, server.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := server.FetchStatus(ctx, e.url)
	require.ErrorIs(t, err, context.Canceled)
}

func TestStatusShowsWhatKeepsTheNewestRevisionOut(t *testing.T) {
	good, head := &gitsource.Revision{Hash: revOld}, &gitsource.Revision{Hash: revNew}
	e := start(t, server.Options{Ready: func() error { return errors.New("this replica is not acting: tandem-2 leads; ask it") },
		Source: fakeSource{gitsource.Status{Good: good, Head: head, Failures: 2, LastFetch: t0.Add(-12 * time.Second),
			Rejected: &gitsource.Rejection{Reason: gitsource.ReasonInvalid, Err: errors.New("services/push.yaml:7: groups.b[0].port: must be 1-65535")},
			FetchErr: errors.New("fetching branch main: connection refused")}}})
	list, err := server.FetchServices(context.Background(), e.url, "")
	require.NoError(t, err)
	var b bytes.Buffer
	require.NoError(t, server.PrintServices(&b, list, "table"))
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	require.Contains(t, lines, "NOT READY: this replica is not acting: tandem-2 leads; ask it")
	require.Contains(t, lines, "git: revision 0c0ffee in force; last fetch 12s ago; "+
		"head 1a2b3c4 NOT applied: services/push.yaml:7: groups.b[0].port: must be 1-65535; "+
		"fetching FAILS (2 in a row): fetching branch main: connection refused")

	b.Reset()
	require.NoError(t, server.PrintServices(&b, list, "json"))
	var back server.ServiceList
	require.NoError(t, json.Unmarshal(b.Bytes(), &back))
	require.Equal(t, list.Source, back.Source, "json carries the source")

	// Without services the source still shows; in force, nothing more.
	e2 := start(t, server.Options{Source: fakeSource{gitsource.Status{Good: good, Head: good, LastFetch: t0.Add(-time.Second)}}})
	e2.status.set(nil)
	list, err = server.FetchServices(context.Background(), e2.url, "")
	require.NoError(t, err)
	b.Reset()
	require.NoError(t, server.PrintServices(&b, list, "table"))
	require.Equal(t, "No services.\ngit: revision 0c0ffee in force; last fetch 1s ago\n", b.String())
}

// The idle group's last probe shows in the table: its version, and
// "(unhealthy)" when it failed.
func TestPrintStatusMarksAnUnhealthyGroup(t *testing.T) {
	st := fixtures()[1] // gateway: A serves, B idle
	st.Probed = map[spec.Group]reconcile.GroupProbe{
		spec.GroupA: {Version: st.Versions[spec.GroupA], Healthy: true},
		spec.GroupB: {Version: st.Versions[spec.GroupB], Healthy: false, Detail: "10.0.2.11:8080: 503"},
	}
	var b bytes.Buffer
	require.NoError(t, server.PrintStatus(&b, []reconcile.Status{st}, ""))
	require.Contains(t, b.String(), st.Versions[spec.GroupB]+" (unhealthy)")
	require.NotContains(t, b.String(), st.Versions[spec.GroupA]+" (unhealthy)")
}

// A release that rolls out in steps shows its step and the target's share
// in the phase column while it shifts.
func TestPrintStatusShowsTheRolloutStep(t *testing.T) {
	st := fixtures()[3] // user-service, in a release
	tr := *st.Transition
	tr.Phase = reconcile.PhaseShift
	tr.Rollout = &reconcile.RolloutProgress{Steps: []reconcile.RolloutStep{{Share: 10, Pause: time.Minute}, {Share: 50}, {Share: 100}}, Step: 1}
	st.Transition = &tr
	var b bytes.Buffer
	require.NoError(t, server.PrintStatus(&b, []reconcile.Status{st}, ""))
	require.Contains(t, b.String(), "release:shift 2/3 50%")
}

func TestFetchServicesSendsTheToken(t *testing.T) {
	e := start(t, server.Options{Token: token, ReadToken: readToken})
	_, err := server.FetchServices(context.Background(), e.url, "")
	require.ErrorContains(t, err, "401 Unauthorized: a token is required to read")
	for _, tok := range []spec.Secret{readToken, token} {
		list, err := server.FetchServices(context.Background(), e.url, tok)
		require.NoError(t, err)
		require.Len(t, list.Services, 4)
	}
}
