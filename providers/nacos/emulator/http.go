package emulator

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/nacos-group/nacos-sdk-go/v2/model"
)

// Error codes of the v3 API (com.alibaba.nacos.api.model.v2.ErrorCode);
// the exact code per failure is unverified on a real 3.x server.
const (
	v3CodeParameterMissing  = 10000
	v3CodeParameterInvalid  = 10001
	v3CodeResourceNotFound  = 20004
	v3CodeAccessDenied      = 30000
	v3MessageSuccess        = "success"
	errMsgUnknownUser       = "unknown user!"
	errMsgUserNotFound      = "user not found!"
	errMsgTokenInvalid      = "token invalid!"
	errMsgTokenExpired      = "token expired!"
	errMsgAPIDeprecatedInV3 = "Current API will be deprecated, please use the v3 API instead."
)

func (e *Emulator) httpHandler() http.Handler {
	mux := http.NewServeMux()
	counted := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.count(r.Method + " " + r.URL.Path)
		mux.ServeHTTP(w, r)
	})
	cp := ContextPath
	// Login: 2.x and 3.x (docs/nacos-servers.md, "Auth"); the SDK always uses
	// the v1 path.
	mux.HandleFunc("POST "+cp+"/v1/auth/users/login", e.login)
	if e.opts.Mode == ModeV1 {
		mux.HandleFunc("PUT "+cp+"/v1/ns/instance", e.authed(e.v1Update))
		mux.HandleFunc("GET "+cp+"/v1/ns/catalog/instances", e.authed(e.v1List))
		mux.HandleFunc("GET "+cp+"/v1/ns/instance", e.authed(e.v1Detail))
		return counted
	}
	mux.HandleFunc("POST "+cp+"/v3/auth/user/login", e.login)
	mux.HandleFunc("PUT "+cp+"/v3/admin/ns/instance", e.authed(e.v3Update(false)))
	mux.HandleFunc("PUT "+cp+"/v3/admin/ns/instance/partial", e.authed(e.v3Update(true)))
	mux.HandleFunc("GET "+cp+"/v3/admin/ns/instance/list", e.authed(e.v3List))
	// Nacos 3.x answers the v1/v2 admin API with 410 unless
	// nacos.core.api.compatibility.admin.enabled=true (Nacos
	// ApiCompatibilityFilter). That the console read
	// /v1/ns/catalog/instances is refused the same way is unverified.
	gone := func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, errMsgAPIDeprecatedInV3, http.StatusGone)
	}
	mux.HandleFunc(cp+"/v1/ns/", gone)
	mux.HandleFunc(cp+"/v2/ns/", gone)
	return counted
}

// login answers {accessToken, tokenTtl, globalAdmin} (docs/nacos-servers.md,
// "Auth"). The SDK reads tokenTtl as a number and panics without it
// (security/nacos_auth_client.go). With auth off any user gets a token.
func (e *Emulator) login(w http.ResponseWriter, r *http.Request) {
	user, pass := r.FormValue("username"), r.FormValue("password")
	if e.opts.Username != "" && (subtle.ConstantTimeCompare([]byte(user), []byte(e.opts.Username)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(e.opts.Password.Reveal())) != 1) {
		http.Error(w, errMsgUnknownUser, http.StatusForbidden)
		return
	}
	token := newID()
	e.mu.Lock()
	e.tokens[token] = time.Now().Add(e.opts.TokenTTL)
	e.mu.Unlock()
	writeJSON(w, http.StatusOK, map[string]any{
		"accessToken": token,
		"tokenTtl":    int64(e.opts.TokenTTL / time.Second),
		"globalAdmin": true,
		"username":    user,
	})
}

// RevokeTokens forgets every login token, as a server restart or a token
// secret rotation would; clients must log in again.
func (e *Emulator) RevokeTokens() {
	e.mu.Lock()
	defer e.mu.Unlock()
	clear(e.tokens)
}

// authError is a refusal of the server's auth; its text is Nacos's reply,
// word for word (punctuation included), sent back to the client.
type authError string

func (e authError) Error() string { return string(e) }

// reply is an error whose text is the server's reply word for word
// (punctuation included) and whose kind is one of the emulator's errors.
type reply struct {
	kind error
	text string
}

func (r reply) Error() string { return r.text }
func (r reply) Unwrap() error { return r.kind }

// checkToken validates a token when auth is on.
func (e *Emulator) checkToken(token string) error {
	if e.opts.Username == "" {
		return nil
	}
	if token == "" {
		return authError(errMsgUserNotFound)
	}
	e.mu.Lock()
	exp, ok := e.tokens[token]
	e.mu.Unlock()
	switch {
	case !ok:
		return authError(errMsgTokenInvalid)
	case time.Now().After(exp):
		return authError(errMsgTokenExpired)
	}
	return nil
}

// authed checks the token of an HTTP request: the accessToken parameter or
// header, or Authorization: Bearer (Nacos
// NacosAuthPluginService.resolveToken). Refusals are 403 as on Nacos 2.x.
func (e *Emulator) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		token := r.FormValue("accessToken")
		if token == "" {
			token = r.Header.Get("accessToken")
		}
		if token == "" {
			token, _ = strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		}
		if err := e.checkToken(token); err != nil {
			if e.opts.Mode == ModeV3 {
				writeJSON(w, http.StatusForbidden, v3Result{Code: v3CodeAccessDenied, Message: err.Error()})
				return
			}
			http.Error(w, err.Error(), http.StatusForbidden)
			return
		}
		h(w, r)
	}
}

// instanceForm is the operator's update form, shared by v1 and v3 (Nacos
// InstanceController and InstanceControllerV3).
type instanceForm struct {
	key     serviceKey
	ip      string
	port    uint64
	cluster string
	o       override
	hasMeta bool
}

// parseInstanceForm reads the form. Omitted fields reset: weight 1,
// enabled true, metadata empty (Nacos HttpRequestInstanceBuilder,
// InstanceForm.validate). An override without metadata, or with "{}",
// merges nothing, so the app's own metadata shows again: the override is
// InstanceOperatorClientImpl.buildMetadata of the request's instance,
// whose metadata is none on v1 (HttpRequestInstanceBuilder.setMetadata
// skips an empty parameter) and UtilsAndCommons.parseMetadata of the blank
// parameter, an empty map, on v3 (InstanceUtil.buildInstance). Checked on
// Nacos 3.1 (docs/nacos-servers.md).
func parseInstanceForm(r *http.Request) (instanceForm, error) {
	var f instanceForm
	name := r.FormValue("serviceName")
	if name == "" {
		return f, fmt.Errorf("%w: 'serviceName'", errMissing)
	}
	f.key = newServiceKey(r.FormValue("namespaceId"), r.FormValue("groupName"), name)
	if f.ip = r.FormValue("ip"); f.ip == "" {
		return f, fmt.Errorf("%w: 'ip'", errMissing)
	}
	port, err := strconv.ParseUint(r.FormValue("port"), 10, 16)
	if err != nil || port == 0 {
		return f, fmt.Errorf("%w: parameter 'port' must be 1..65535, got %q", errInvalid, r.FormValue("port"))
	}
	f.port = port
	if f.cluster = r.FormValue("clusterName"); f.cluster == "" {
		f.cluster = defaultCluster
	}
	f.o = override{Enabled: true, Weight: 1, Metadata: map[string]string{}}
	if v := r.FormValue("weight"); v != "" {
		if f.o.Weight, err = strconv.ParseFloat(v, 64); err != nil {
			return f, fmt.Errorf("%w: parameter 'weight' must be a number, got %q", errInvalid, v)
		}
	}
	if v := r.FormValue("enabled"); v != "" {
		if f.o.Enabled, err = strconv.ParseBool(v); err != nil {
			return f, fmt.Errorf("%w: parameter 'enabled' must be true or false, got %q", errInvalid, v)
		}
	}
	if v := r.FormValue("metadata"); v != "" {
		f.hasMeta = true
		if f.o.Metadata, err = parseMetadata(v); err != nil {
			return f, err
		}
	}
	return f, nil
}

// parseMetadata accepts JSON or k=v,k=v (UtilsAndCommons.parseMetadata).
func parseMetadata(s string) (map[string]string, error) {
	m := map[string]string{}
	if err := json.Unmarshal([]byte(s), &m); err == nil {
		return m, nil
	}
	for kv := range strings.SplitSeq(s, ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, fmt.Errorf("%w: parameter 'metadata' must be JSON or k=v,k=v, got %q", errInvalid, s)
		}
		m[k] = v
	}
	return m, nil
}

// v1Update is Nacos 2.x PUT /v1/ns/instance: plain "ok", errors as text.
func (e *Emulator) v1Update(w http.ResponseWriter, r *http.Request) {
	f, err := parseInstanceForm(r)
	if err == nil {
		err = e.update(f.key, f.ip, f.port, f.cluster, f.o)
	}
	if err != nil {
		http.Error(w, "caused: "+err.Error(), httpStatus(err))
		return
	}
	_, _ = w.Write([]byte("ok"))
}

// v1List is Nacos 2.x GET /v1/ns/catalog/instances: every instance, disabled
// ones included, as {count, list} (Nacos CatalogController: it needs
// clusterName, pageNo and pageSize).
func (e *Emulator) v1List(w http.ResponseWriter, r *http.Request) {
	k := newServiceKey(r.FormValue("namespaceId"), r.FormValue("groupName"), r.FormValue("serviceName"))
	pageNo, err1 := strconv.Atoi(r.FormValue("pageNo"))
	pageSize, err2 := strconv.Atoi(r.FormValue("pageSize"))
	cluster := r.FormValue("clusterName")
	if k.name == "" || cluster == "" || err1 != nil || err2 != nil || pageNo < 1 || pageSize < 1 {
		http.Error(w, "caused: serviceName, clusterName, pageNo and pageSize are required", http.StatusBadRequest)
		return
	}
	list, err := e.adminList(k, cluster)
	if err != nil {
		http.Error(w, "caused: "+err.Error(), httpStatus(err))
		return
	}
	start := min((pageNo-1)*pageSize, len(list))
	writeJSON(w, http.StatusOK, map[string]any{"count": len(list), "list": list[start:min(start+pageSize, len(list))]})
}

// v1Detail is GET /v1/ns/instance: one instance, disabled or not, 404
// when no connection publishes it. The JSON is the full instance as r-nacos
// answers (docs/nacos-servers.md); which fields Nacos 2.x puts in it is
// unverified.
func (e *Emulator) v1Detail(w http.ResponseWriter, r *http.Request) {
	k := newServiceKey(r.FormValue("namespaceId"), r.FormValue("groupName"), r.FormValue("serviceName"))
	port, err := strconv.ParseUint(r.FormValue("port"), 10, 16)
	if k.name == "" || r.FormValue("ip") == "" || err != nil {
		http.Error(w, "caused: serviceName, ip and port are required", http.StatusBadRequest)
		return
	}
	cluster := r.FormValue("clusterName")
	if cluster == "" {
		cluster = defaultCluster
	}
	list, err := e.adminList(k, cluster)
	if err != nil {
		http.Error(w, "caused: "+err.Error(), httpStatus(err))
		return
	}
	for _, in := range list {
		if in.Ip == r.FormValue("ip") && in.Port == port {
			writeJSON(w, http.StatusOK, in)
			return
		}
	}
	http.Error(w, "caused: no matched ip found!", http.StatusNotFound) // Nacos 2.x: InstanceOperatorClientImpl.getInstance
}

type v3Result struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data"`
}

// v3Update is Nacos 3.x PUT /v3/admin/ns/instance, or .../partial, which
// keeps the current override metadata when none is sent but still resets
// weight and enabled (Nacos InstanceForm.validate).
func (e *Emulator) v3Update(partial bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f, err := parseInstanceForm(r)
		if err == nil {
			if partial && !f.hasMeta {
				f.o.Metadata = e.overrideMetadata(f)
			}
			err = e.update(f.key, f.ip, f.port, f.cluster, f.o)
		}
		if err != nil {
			writeV3Error(w, err)
			return
		}
		writeJSON(w, http.StatusOK, v3Result{Message: v3MessageSuccess, Data: "ok"})
	}
}

func (e *Emulator) overrideMetadata(f instanceForm) map[string]string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if s := e.services[f.key]; s != nil {
		if o := s.overrides[metadataID(f.ip, f.port, f.cluster)]; o != nil {
			return o.Metadata
		}
	}
	return map[string]string{}
}

// v3List is Nacos 3.x GET /v3/admin/ns/instance/list: every instance,
// disabled ones included, as data (InstanceControllerV3.list reads
// catalogService.listInstances).
func (e *Emulator) v3List(w http.ResponseWriter, r *http.Request) {
	k := newServiceKey(r.FormValue("namespaceId"), r.FormValue("groupName"), r.FormValue("serviceName"))
	if k.name == "" {
		writeV3Error(w, fmt.Errorf("%w: 'serviceName'", errMissing))
		return
	}
	list, err := e.adminList(k, r.FormValue("clusterName"))
	if err != nil {
		writeV3Error(w, err)
		return
	}
	writeJSON(w, http.StatusOK, v3Result{Message: v3MessageSuccess, Data: list})
}

// adminList is the operator view of a service.
func (e *Emulator) adminList(k serviceKey, cluster string) ([]model.Instance, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.services[k] == nil {
		return nil, reply{kind: errNotFound, text: fmt.Sprintf("service %s is not found!", k)} // Nacos 3's words (docs/nacos-servers.md)
	}
	list := e.instances(k, cluster, false)
	if list == nil {
		list = []model.Instance{}
	}
	return list, nil
}

func httpStatus(err error) int {
	if errors.Is(err, errNotFound) {
		return http.StatusNotFound
	}
	return http.StatusBadRequest
}

func writeV3Error(w http.ResponseWriter, err error) {
	code := v3CodeParameterInvalid
	switch {
	case errors.Is(err, errNotFound):
		code = v3CodeResourceNotFound
	case errors.Is(err, errMissing):
		code = v3CodeParameterMissing
	}
	writeJSON(w, httpStatus(err), v3Result{Code: code, Message: err.Error()})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
