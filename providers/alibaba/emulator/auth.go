package emulator

import (
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"io"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"time"
)

const (
	albVersion = "2020-06-16"
	slbVersion = "2014-05-15"
	// signatureWindow bounds both the clock skew of a signed request and the
	// time a signature nonce may not be reused: 15 minutes (the OpenAPI
	// signature docs; yunion cloudpods' aliyun client notes "SignatureNonce
	// must not repeat within 15 minutes").
	signatureWindow = 15 * time.Minute
)

// authenticate reads the request and verifies its signature: ACS3-HMAC-SHA256
// in the Authorization header (darabonba-openapi DoRequest +
// utils.GetAuthorization), or the legacy RPC signature, HMAC-SHA1 in the
// Signature query parameter (DoRPCRequest + utils.GetRPCSignature).
//
// Error codes are the OpenAPI gateway's common ones: IncompleteSignature,
// SignatureDoesNotMatch and InvalidTimeStamp.Expired (HTTP 400),
// InvalidAccessKeyId.NotFound (HTTP 404), SignatureNonceUsed (HTTP 400).
// Their exact HTTP statuses are UNVERIFIED; all are authentication
// failures the SDK surfaces as *tea.SDKError with that code.
func (e *Emulator) authenticate(r *http.Request) (*request, *apiError) {
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		return nil, errf(http.StatusBadRequest, "InvalidParameter", "The request body could not be read.")
	}
	if r.Method != http.MethodPost && r.Method != http.MethodGet {
		return nil, errf(http.StatusMethodNotAllowed, "UnsupportedHTTPMethod", "This http method is not supported.")
	}
	params := map[string]string{}
	for k, v := range r.URL.Query() {
		params[k] = v[0]
	}
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, errf(http.StatusBadRequest, "InvalidParameter", "The request body is not form-encoded.")
	}
	for k, v := range form {
		params[k] = v[0]
	}
	req := &request{
		action:  first(r.Header.Get("x-acs-action"), params["Action"]),
		version: first(r.Header.Get("x-acs-version"), params["Version"]),
		params:  params,
		now:     time.Now(),
	}
	if auth := r.Header.Get("Authorization"); strings.HasPrefix(auth, "ACS3-") {
		return req, e.verifyACS3(r, req, auth, body)
	}
	if _, ok := params["Signature"]; ok {
		return req, e.verifyRPC(r, req)
	}
	return req, errf(http.StatusBadRequest, "IncompleteSignature", "The request signature does not conform to Aliyun standards.")
}

func (e *Emulator) verifyACS3(r *http.Request, req *request, auth string, body []byte) *apiError {
	algo, rest, _ := strings.Cut(auth, " ")
	if algo != "ACS3-HMAC-SHA256" {
		return errf(http.StatusBadRequest, "IncompleteSignature", "The signature algorithm %s is not supported.", algo)
	}
	fields := map[string]string{}
	for _, part := range strings.Split(rest, ",") {
		k, v, _ := strings.Cut(strings.TrimSpace(part), "=")
		fields[k] = v
	}
	signed := strings.Split(fields["SignedHeaders"], ";")
	if fields["Credential"] == "" || fields["Signature"] == "" {
		return errf(http.StatusBadRequest, "IncompleteSignature", "The Authorization header lacks Credential or Signature.")
	}
	// host and the x-acs headers that make a request unique must be signed.
	for _, h := range []string{"host", "x-acs-action", "x-acs-version", "x-acs-date", "x-acs-signature-nonce", "x-acs-content-sha256"} {
		if !slices.Contains(signed, h) {
			return errf(http.StatusBadRequest, "IncompleteSignature", "The header %s must be signed.", h)
		}
	}
	key, aerr := e.key(fields["Credential"], r.Header.Get("x-acs-security-token"))
	if aerr != nil {
		return aerr
	}
	payload := sha256.Sum256(body)
	if hex.EncodeToString(payload[:]) != r.Header.Get("x-acs-content-sha256") {
		return errf(http.StatusBadRequest, "SignatureDoesNotMatch", "The request body does not match x-acs-content-sha256.")
	}

	var canon strings.Builder
	canon.WriteString(r.Method + "\n" + acsEscape(first(r.URL.EscapedPath(), "/")) + "\n")
	canon.WriteString(canonicalQuery(r.URL.Query()) + "\n")
	for _, h := range signed {
		v := r.Header.Values(h)
		if h == "host" {
			v = []string{r.Host}
		}
		vals := make([]string, len(v))
		for i, s := range v {
			vals[i] = strings.TrimSpace(s)
		}
		sort.Strings(vals)
		canon.WriteString(h + ":" + strings.Join(vals, ",") + "\n")
	}
	// Canonical headers end with a newline of their own; then a blank line.
	canon.WriteString("\n" + fields["SignedHeaders"] + "\n" + r.Header.Get("x-acs-content-sha256"))
	hashed := sha256.Sum256([]byte(canon.String()))
	mac := hmac.New(sha256.New, []byte(key.Secret))
	mac.Write([]byte("ACS3-HMAC-SHA256\n" + hex.EncodeToString(hashed[:])))
	want := hex.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(fields["Signature"])) {
		return errf(http.StatusBadRequest, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation.")
	}
	ts, err := time.Parse("2006-01-02T15:04:05Z", r.Header.Get("x-acs-date"))
	if err != nil {
		return errf(http.StatusBadRequest, "InvalidTimeStamp.Format", "The x-acs-date header is not in UTC ISO 8601 form.")
	}
	return e.freshness(req.now, ts, r.Header.Get("x-acs-signature-nonce"))
}

func (e *Emulator) verifyRPC(r *http.Request, req *request) *apiError {
	p := req.params
	if p["SignatureMethod"] != "HMAC-SHA1" || p["SignatureVersion"] != "1.0" {
		return errf(http.StatusBadRequest, "IncompleteSignature", "SignatureMethod must be HMAC-SHA1 and SignatureVersion 1.0.")
	}
	key, aerr := e.key(p["AccessKeyId"], p["SecurityToken"])
	if aerr != nil {
		return aerr
	}
	// StringToSign = METHOD&%2F&percentEncode(sorted k=v pairs), HMAC-SHA1
	// keyed with secret+"&", base64 (utils.buildRpcStringToSign).
	vals := url.Values{}
	for k, v := range p {
		if k != "Signature" {
			vals.Set(k, v)
		}
	}
	canon := strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(vals.Encode())
	stringToSign := r.Method + "&%2F&" + url.QueryEscape(canon)
	mac := hmac.New(sha1.New, []byte(key.Secret+"&"))
	mac.Write([]byte(stringToSign))
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	if !hmac.Equal([]byte(want), []byte(p["Signature"])) {
		// The service echoes its string-to-sign, which names the AccessKey
		// ID, the security token and the nonce (the wording is the one
		// commonly reported for the RPC gateway; UNVERIFIED against a live
		// account).
		return errf(http.StatusBadRequest, "SignatureDoesNotMatch", "Specified signature is not matched with our calculation. server string to sign is:%s", stringToSign)
	}
	ts, err := time.Parse("2006-01-02T15:04:05Z", p["Timestamp"])
	if err != nil {
		return errf(http.StatusBadRequest, "InvalidTimeStamp.Format", "The Timestamp parameter is not in UTC ISO 8601 form.")
	}
	return e.freshness(req.now, ts, p["SignatureNonce"])
}

// key finds the AccessKey a request claims and checks its STS token.
func (e *Emulator) key(id, token string) (Key, *apiError) {
	key, ok := e.keys[id]
	if !ok {
		return Key{}, errf(http.StatusNotFound, "InvalidAccessKeyId.NotFound", "Specified access key is not found.")
	}
	if key.Token != token {
		return Key{}, errf(http.StatusBadRequest, "InvalidSecurityToken.MismatchWithAccessKey", "The security token does not match the access key.")
	}
	return key, nil
}

// freshness refuses old timestamps and reused nonces.
func (e *Emulator) freshness(now, ts time.Time, nonce string) *apiError {
	if d := now.Sub(ts); d > signatureWindow || d < -signatureWindow {
		return errf(http.StatusBadRequest, "InvalidTimeStamp.Expired", "Specified time stamp or date value is expired.")
	}
	if nonce == "" {
		return errf(http.StatusBadRequest, "IncompleteSignature", "The signature nonce is missing.")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	for len(e.nonceQueue) > 0 && now.Sub(e.nonces[e.nonceQueue[0]]) > signatureWindow {
		delete(e.nonces, e.nonceQueue[0])
		e.nonceQueue = e.nonceQueue[1:]
	}
	if _, used := e.nonces[nonce]; used {
		return errf(http.StatusBadRequest, "SignatureNonceUsed", "Specified signature nonce was used already.")
	}
	e.nonces[nonce] = now
	e.nonceQueue = append(e.nonceQueue, nonce)
	return nil
}

// canonicalQuery is the ACS3 canonical query string: keys sorted, values
// percent-encoded with %20 for space, %2A for * and ~ left alone.
func canonicalQuery(q url.Values) string {
	keys := make([]string, 0, len(q))
	for k := range q {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = acsEscape(url.QueryEscape(k)) + "=" + acsEscape(url.QueryEscape(q.Get(k)))
	}
	return strings.Join(parts, "&")
}

func acsEscape(s string) string {
	return strings.NewReplacer("+", "%20", "*", "%2A", "%7E", "~").Replace(s)
}

func first(a, b string) string {
	if a != "" {
		return a
	}
	return b
}
