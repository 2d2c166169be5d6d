package nacostest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// operator calls a server's HTTP API as an operator does, with net/http.
type operator struct {
	t     testing.TB
	s     *Server
	token string // sent as the accessToken parameter when set
}

// newOperator returns an operator, logged in when s has auth on.
func newOperator(t testing.TB, s *Server) *operator {
	o := &operator{t: t, s: s}
	if s.Username != "" {
		status, body := o.login("/v1/auth/users/login", s.Username, s.Password)
		require.Equal(t, http.StatusOK, status, "login: %s", body)
		var l loginResult
		require.NoError(t, json.Unmarshal(body, &l), "login: %s", body)
		o.token = l.AccessToken
	}
	return o
}

type loginResult struct {
	AccessToken string `json:"accessToken"`
	TokenTTL    int64  `json:"tokenTtl"`
	GlobalAdmin bool   `json:"globalAdmin"`
}

func (o *operator) login(path, user, password string) (int, []byte) {
	return o.call(http.MethodPost, path, url.Values{"username": {user}, "password": {password}})
}

// call sends form (in the query for GET) to the path under the base URL.
func (o *operator) call(method, path string, form url.Values) (int, []byte) {
	o.t.Helper()
	form = cloneValues(form)
	if o.token != "" {
		form.Set("accessToken", o.token)
	}
	target := o.s.BaseURL() + path
	var body io.Reader
	if method == http.MethodGet {
		target += "?" + form.Encode()
	} else {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, target, body)
	require.NoError(o.t, err)
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	return o.do(req)
}

func (o *operator) do(req *http.Request) (int, []byte) {
	o.t.Helper()
	resp, err := httpClient.Do(req)
	require.NoError(o.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(o.t, err)
	return resp.StatusCode, b
}

// instancePath is the operator's instance endpoint for the server's API.
func (o *operator) instancePath() string {
	if o.s.API == "v3" {
		return "/v3/admin/ns/instance"
	}
	return "/v1/ns/instance"
}

// updateInstance PUTs the form to the instance endpoint and requires success.
func (o *operator) updateInstance(form url.Values) {
	o.t.Helper()
	status, body := o.call(http.MethodPut, o.instancePath(), form)
	require.Equal(o.t, http.StatusOK, status, "PUT %s %v: %s", o.instancePath(), form, body)
}

// adminInstance is an instance as the admin lists return it.
type adminInstance struct {
	IP          string            `json:"ip"`
	Port        uint64            `json:"port"`
	Weight      float64           `json:"weight"`
	Enabled     bool              `json:"enabled"`
	Healthy     bool              `json:"healthy"`
	Ephemeral   bool              `json:"ephemeral"`
	ClusterName string            `json:"clusterName"`
	Metadata    map[string]string `json:"metadata"`
}

// instanceForm is the form of an instance update: the full row, as the
// console sends it.
func instanceForm(a app, enabled bool, weight float64, metadata string) url.Values {
	f := url.Values{
		"serviceName": {a.service},
		"groupName":   {a.group},
		"ip":          {a.ip},
		"port":        {strconv.FormatUint(a.port, 10)},
		"clusterName": {"DEFAULT"},
		"ephemeral":   {"true"},
		"enabled":     {strconv.FormatBool(enabled)},
		"weight":      {strconv.FormatFloat(weight, 'f', -1, 64)},
	}
	if metadata != "" {
		f.Set("metadata", metadata)
	}
	return f
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}
