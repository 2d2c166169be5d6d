package notify_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// The receivers below stand in for the vendors. Each recomputes the
// signature the way the vendor's documentation describes (independently of
// the package's code) and checks the fields the vendor requires; sources
// are cited beside each check in format.go.

// hit is one request a receiver got, with what its check found wrong.
type hit struct {
	query  map[string][]string
	header http.Header
	body   []byte
	err    error
}

type receiver struct {
	srv  *httptest.Server
	hits chan hit
}

// answer says how a receiver answers its n-th request (from 1).
type answer func(n int) (status int, body string)

func always(status int, body string) answer {
	return func(int) (int, string) { return status, body }
}

func newReceiver(t *testing.T, check func(*http.Request, []byte) error, ans answer) *receiver {
	t.Helper()
	rc := &receiver{hits: make(chan hit, 100)}
	var n atomic.Int64
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err == nil {
			err = check(r, body)
		}
		if r.Method != http.MethodPost {
			err = errors.Join(err, fmt.Errorf("method %s, want POST", r.Method))
		}
		if ct := r.Header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			err = errors.Join(err, fmt.Errorf("content type %q, want application/json", ct))
		}
		status, text := ans(int(n.Add(1)))
		rc.hits <- hit{query: r.URL.Query(), header: r.Header.Clone(), body: body, err: err}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, text)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

// next waits for the next request the receiver gets.
func (rc *receiver) next(t *testing.T) hit {
	t.Helper()
	select {
	case h := <-rc.hits:
		return h
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver got no request within 10s")
		return hit{}
	}
}

func hmacSum(key, msg string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// fresh checks a timestamp is within an hour of now, the window DingTalk
// and Feishu allow.
func fresh(ts string, unit time.Duration) error {
	v, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("timestamp %q is not an integer", ts)
	}
	if d := time.Since(time.Unix(0, v*int64(unit))); d > time.Hour || d < -time.Hour {
		return fmt.Errorf("timestamp %q is %s off", ts, d)
	}
	return nil
}

func decode(body []byte) (map[string]any, error) {
	var m map[string]any
	err := json.Unmarshal(body, &m)
	return m, err
}

// str walks a JSON object by keys and returns the string at the end, or "".
func str(m map[string]any, keys ...string) string {
	var v any = m
	for _, k := range keys {
		o, ok := v.(map[string]any)
		if !ok {
			return ""
		}
		v = o[k]
	}
	s, _ := v.(string)
	return s
}

func nonEmpty(m map[string]any, keys ...string) error {
	if str(m, keys...) == "" {
		return fmt.Errorf("%s: missing or empty", strings.Join(keys, "."))
	}
	return nil
}

// checkWebhook verifies the generic webhook as the package doc specifies.
func checkWebhook(secret string) func(*http.Request, []byte) error {
	return func(r *http.Request, body []byte) error {
		ts := r.Header.Get("X-Tandem-Timestamp")
		if err := fresh(ts, time.Second); err != nil {
			return err
		}
		sig, ok := strings.CutPrefix(r.Header.Get("X-Tandem-Signature"), "sha256=")
		got, err := hex.DecodeString(sig)
		if !ok || err != nil || !hmac.Equal(got, hmacSum(secret, ts+"."+string(body))) {
			return errors.New("X-Tandem-Signature does not match")
		}
		m, err := decode(body)
		if err != nil {
			return err
		}
		return errors.Join(nonEmpty(m, "service"), nonEmpty(m, "reason"), nonEmpty(m, "type"),
			nonEmpty(m, "message"), nonEmpty(m, "time"), nonEmpty(m, "text"))
	}
}

// checkDingTalk verifies a signed DingTalk custom robot call: timestamp in
// ms and sign = Base64(HMAC-SHA256(secret, timestamp+"\n"+secret)) in the
// query beside the access_token; a markdown message with title and text.
func checkDingTalk(token, secret string) func(*http.Request, []byte) error {
	return func(r *http.Request, body []byte) error {
		q := r.URL.Query()
		if q.Get("access_token") != token {
			return errors.New("access_token lost")
		}
		ts := q.Get("timestamp")
		if err := fresh(ts, time.Millisecond); err != nil {
			return err
		}
		if q.Get("sign") != base64.StdEncoding.EncodeToString(hmacSum(secret, ts+"\n"+secret)) {
			return errors.New("sign does not match")
		}
		m, err := decode(body)
		if err != nil {
			return err
		}
		if str(m, "msgtype") != "markdown" {
			return fmt.Errorf("msgtype %q, want markdown", str(m, "msgtype"))
		}
		return errors.Join(nonEmpty(m, "markdown", "title"), nonEmpty(m, "markdown", "text"))
	}
}

// checkFeishu verifies a signed Feishu custom bot call: timestamp in
// seconds and sign = Base64(HMAC-SHA256 keyed with timestamp+"\n"+secret
// over nothing) in the body; a post with a title and lines of text elements.
func checkFeishu(secret string) func(*http.Request, []byte) error {
	return func(r *http.Request, body []byte) error {
		m, err := decode(body)
		if err != nil {
			return err
		}
		ts := str(m, "timestamp")
		if err := fresh(ts, time.Second); err != nil {
			return err
		}
		if str(m, "sign") != base64.StdEncoding.EncodeToString(hmacSum(ts+"\n"+secret, "")) {
			return errors.New("sign does not match")
		}
		if str(m, "msg_type") != "post" {
			return fmt.Errorf("msg_type %q, want post", str(m, "msg_type"))
		}
		if err := nonEmpty(m, "content", "post", "zh_cn", "title"); err != nil {
			return err
		}
		var post struct {
			Content struct {
				Post struct {
					ZhCN struct {
						Content [][]struct{ Tag, Text string } `json:"content"`
					} `json:"zh_cn"`
				} `json:"post"`
			} `json:"content"`
		}
		if err := json.Unmarshal(body, &post); err != nil {
			return err
		}
		lines := post.Content.Post.ZhCN.Content
		if len(lines) == 0 {
			return errors.New("post has no lines")
		}
		for _, l := range lines {
			for _, el := range l {
				if el.Tag != "text" || el.Text == "" {
					return fmt.Errorf("post element %+v is not a text element", el)
				}
			}
		}
		return nil
	}
}

// checkWeCom verifies a WeCom group robot call: the key stays in the query;
// a markdown message whose content is at most 4096 bytes.
func checkWeCom(key string) func(*http.Request, []byte) error {
	return func(r *http.Request, body []byte) error {
		if r.URL.Query().Get("key") != key {
			return errors.New("key lost")
		}
		m, err := decode(body)
		if err != nil {
			return err
		}
		if str(m, "msgtype") != "markdown" {
			return fmt.Errorf("msgtype %q, want markdown", str(m, "msgtype"))
		}
		if c := str(m, "markdown", "content"); c == "" || len(c) > 4096 {
			return fmt.Errorf("markdown.content is %d bytes, want 1..4096", len(c))
		}
		return nil
	}
}

// checkSlack verifies a Slack incoming webhook call: {"text"} not empty.
func checkSlack(r *http.Request, body []byte) error {
	m, err := decode(body)
	if err != nil {
		return err
	}
	return nonEmpty(m, "text")
}
