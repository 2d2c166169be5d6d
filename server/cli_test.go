package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/server"
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
