package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/testkit"
	"github.com/tandemhq/tandem/server"
)

func TestDemoOnceReleasesAndRevertsLosingNothing(t *testing.T) {
	out := &demoOutput{check: func(url string) { requireDashboard(t, url) }}
	var errOut testkit.Buffer
	code := run(t.Context(), []string{"demo", "--once", "--listen", "127.0.0.1:0"}, out, &errOut)
	stdout := out.String()
	require.Equal(t, exitOK, code, "stdout:\n%s\nstderr:\n%s", stdout, errOut.String())
	require.True(t, out.checked, "the demo printed its dashboard URL:\n%s", stdout)

	dir := regexp.MustCompile(`its files are in (\S+) \(removed at exit\)`).FindStringSubmatch(stdout)
	require.NotNil(t, dir, stdout)
	_, err := os.Stat(dir[1])
	require.True(t, os.IsNotExist(err), "the demo removed %s: %v", dir[1], err)

	_, report, ok := strings.Cut(stdout, "Zero-loss report")
	require.True(t, ok, stdout)
	traffic, transitions := map[string][]string{}, map[string][]string{}
	for line := range strings.Lines(report) {
		f := strings.Fields(line)
		switch {
		case len(f) == 9 && slices.Contains([]string{"gateway", "user-service", "push"}, f[0]):
			traffic[f[0]] = f
		case len(f) == 12 && (f[1] == "release" || f[1] == "revert"):
			transitions[f[0]+" "+f[1]] = f
		}
	}
	require.Len(t, traffic, 3, report)
	for name, f := range traffic {
		require.Positive(t, atoi(t, f[2]), "%s: requests sent", name)
		require.Equal(t, "0", f[3], "%s: requests failed", name)
	}
	push := traffic["push"]
	require.Positive(t, atoi(t, push[4]), "push: messages sent")
	require.Equal(t, push[4], push[5], "push: every message echoed")
	require.Equal(t, "0", push[6], "push: messages lost")
	closes := regexp.MustCompile(`^1001×(\d+)$`).FindStringSubmatch(push[7])
	require.NotNil(t, closes, "push: the drains closed WebSockets with 1001 only: %s", push[7])
	require.Equal(t, closes[1], push[8], "push: every close followed by a reconnect")

	require.Len(t, transitions, 6, report)
	for key, f := range transitions {
		require.Equal(t, "succeeded", f[11], key)
		want := "0"
		if f[1] == "release" {
			want = "1"
		}
		require.Equal(t, want, f[10], "%s: deploys", key)
	}
	require.Contains(t, report, "\nResult: nothing lost.")
}

// requireDashboard asserts that the dashboard serves its page and that the
// API lists the three services.
func requireDashboard(t *testing.T, url string) {
	client := &http.Client{}
	defer client.CloseIdleConnections()
	get := func(path string) []byte {
		resp, err := client.Get(url + path)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		require.Equal(t, http.StatusOK, resp.StatusCode, "GET %s: %s", path, body)
		return body
	}
	require.Contains(t, string(get("")), "<title>Tandem</title>")
	var list server.ServiceList
	require.NoError(t, json.Unmarshal(get("api/v1/services"), &list))
	var names []string
	for _, s := range list.Services {
		names = append(names, s.Service)
	}
	require.ElementsMatch(t, []string{"gateway", "user-service", "push"}, names)
}

func atoi(t *testing.T, s string) int {
	n, err := strconv.Atoi(s)
	require.NoError(t, err)
	return n
}

// demoOutput is the demo's stdout. When the dashboard URL is printed, it
// runs check on it before the demo goes on (the demo waits on its write).
type demoOutput struct {
	check   func(url string)
	checked bool
	testkit.Buffer
}

var dashboardLine = regexp.MustCompile(`(?m)^Dashboard: (http://\S+/) `)

func (o *demoOutput) Write(p []byte) (int, error) {
	n, err := o.Buffer.Write(p)
	if m := dashboardLine.FindStringSubmatch(o.String()); m != nil && !o.checked {
		o.checked = true
		o.check(m[1])
	}
	return n, err
}
