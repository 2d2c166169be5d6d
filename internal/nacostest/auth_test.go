package nacostest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/nacos-group/nacos-sdk-go/v2/vo"
	"github.com/stretchr/testify/require"
)

// authFacts are what each kind of server does with auth on.
type authFacts struct {
	tokenTTL            int64 // seconds, as login reports it
	wrongPasswordStatus int   // of every login endpoint
	// tokenPlaces are the ways of sending the token the server accepts, of
	// tokenPlaceNames.
	tokenPlaces []string
}

var serverAuthFacts = map[string]authFacts{
	KindRNacos: {
		tokenTTL:            3600,
		wrongPasswordStatus: http.StatusForbidden,
		tokenPlaces:         []string{"query accessToken", "form accessToken", "header Authorization: <token>"},
	},
	KindNacos3: {
		tokenTTL:            18000,
		wrongPasswordStatus: http.StatusInternalServerError,
		tokenPlaces:         []string{"query accessToken", "form accessToken", "header accessToken", "header Authorization: Bearer <token>"},
	},
}

// tokenPlaceNames are the ways of sending a token that were tried, each with
// how it puts the token into a request.
var tokenPlaceNames = map[string]func(r *http.Request, form string, token string){
	"query accessToken": func(r *http.Request, form, token string) { r.URL.RawQuery = "accessToken=" + token },
	"form accessToken":  func(r *http.Request, form, token string) { setBody(r, form+"&accessToken="+token) },
	"header accessToken": func(r *http.Request, form, token string) {
		r.Header.Set("accessToken", token)
	},
	"header Authorization: Bearer <token>": func(r *http.Request, form, token string) {
		r.Header.Set("Authorization", "Bearer "+token)
	},
	"header Authorization: <token>": func(r *http.Request, form, token string) {
		r.Header.Set("Authorization", token)
	},
}

func setBody(r *http.Request, body string) {
	r.Body = io.NopCloser(strings.NewReader(body))
	r.ContentLength = int64(len(body))
}

func TestFactAuthLoginEndpointsReturnATokenWithItsTTL(t *testing.T) {
	forEachKind(t, Options{Auth: true}, func(t *testing.T, s *Server) {
		want := serverAuthFacts[s.Kind]
		op := &operator{t: t, s: s}
		for _, path := range []string{"/v1/auth/users/login", "/v1/auth/login", "/v3/auth/user/login"} {
			status, body := op.login(path, s.Username, s.Password)
			require.Equal(t, http.StatusOK, status, "POST %s: %s", path, body)
			var l loginResult
			require.NoError(t, json.Unmarshal(body, &l), "POST %s: %s", path, body)
			require.NotEmpty(t, l.AccessToken, path)
			require.Equal(t, want.tokenTTL, l.TokenTTL, path)

			status, body = op.login(path, s.Username, "not-"+s.Password)
			require.Equal(t, want.wrongPasswordStatus, status, "POST %s with a wrong password: %s", path, body)
		}
	})
}

func TestFactAuthTokenIsAcceptedOnlyWhereTheServerLooks(t *testing.T) {
	forEachKind(t, Options{Auth: true}, func(t *testing.T, s *Server) {
		want := serverAuthFacts[s.Kind]
		token := newOperator(t, s).token
		a := app{service: serviceName(t), group: "DEFAULT_GROUP", ip: "127.0.0.1", port: 8080, weight: 1}
		a.register(t, newSDKClient(t, s, nil))
		form := instanceForm(a, true, 1, "").Encode()
		op := &operator{t: t, s: s} // no token of its own

		send := func(place func(*http.Request, string, string)) int {
			req, err := http.NewRequest(http.MethodPut, s.BaseURL()+op.instancePath(), nil)
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			setBody(req, form)
			if place != nil {
				place(req, form, token)
			}
			status, _ := op.do(req)
			return status
		}
		require.Equal(t, http.StatusForbidden, send(nil), "PUT without a token")
		for name, place := range tokenPlaceNames {
			accepted := send(place) == http.StatusOK
			require.Equal(t, contains(want.tokenPlaces, name), accepted, "token in %s accepted", name)
		}
	})
}

func TestFactAuthSDKWithoutCredentialsCannotRegister(t *testing.T) {
	forEachKind(t, Options{Auth: true}, func(t *testing.T, s *Server) {
		anonymous := *s
		anonymous.Username, anonymous.Password = "", ""
		client := newSDKClient(t, &anonymous, nil)
		svc := serviceName(t)
		// nacos-sdk-go reports the refusal as an error from r-nacos but
		// only as ok=false from Nacos 3.
		ok, _ := client.RegisterInstance(vo.RegisterInstanceParam{
			Ip: "127.0.0.1", Port: 8080, ServiceName: svc, Weight: 1, Enable: true, Healthy: true, Ephemeral: true,
		})
		require.False(t, ok)
		a := app{service: svc, group: "DEFAULT_GROUP", ip: "127.0.0.2", port: 8080, weight: 1}
		a.register(t, newSDKClient(t, s, nil))
		op := newOperator(t, s)
		in := op.awaitAdmin(a, "the instance registered with credentials", present)
		require.Equal(t, "127.0.0.2", in.IP)
		_, found := op.adminLookup(app{service: svc, group: "DEFAULT_GROUP", ip: "127.0.0.1", port: 8080})
		require.False(t, found, "the instance registered without credentials is there")
	})
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
