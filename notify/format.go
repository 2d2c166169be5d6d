package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/tandemhq/tandem/providers"
	"github.com/tandemhq/tandem/reconcile"
)

// summary is what every format says about an event: a title naming the
// service and what happened, then a few short lines.
type summary struct {
	title   string   // "Tandem: user-service: drift detected"
	lines   []string // the message, then revision, author and subject, then phase
	warning bool
	links   []actionLink // promote and abort of an approval pause (approval.go)
}

// headlines says in words what a reason means; other reasons show as they are.
var headlines = map[string]string{
	reconcile.ReasonTransitionStarted:   "transition started",
	reconcile.ReasonTransitionSucceeded: "transition finished",
	reconcile.ReasonTransitionAborted:   "transition aborted",
	reconcile.ReasonSwappedBack:         "swapped back",
	reconcile.ReasonAbortStarted:        "abort started",
	reconcile.ReasonSwapBackStarted:     "swap-back started",
	reconcile.ReasonDriftDetected:       "drift detected",
	reconcile.ReasonDriftResolved:       "drift resolved",
	reconcile.ReasonStalled:             "stalled, a person must act",
	reconcile.ReasonStallResolved:       "stall resolved",
	reconcile.ReasonRevisionRejected:    "revision rejected",
	reconcile.ReasonDrainCeiling:        "drain reached its ceiling",
	reconcile.ReasonApprovalPending:     "release paused for approval",
	reconcile.ReasonPromoted:            "release promoted",
	reconcile.ReasonAborted:             "release aborted at the approval gate",
}

// maxMessage and maxSubject bound the free text of a notification, so that
// a message stays short and under WeCom's 4096 bytes of markdown content
// (see buildWeCom).
const (
	maxMessage = 1500
	maxSubject = 200
)

func summarize(e reconcile.Event) summary {
	what := headlines[e.Reason]
	if what == "" {
		what = e.Reason
	}
	service := e.Service
	if service == "" {
		service = "all services"
	}
	s := summary{title: "Tandem: " + service + ": " + what, warning: e.Type == reconcile.EventWarning}
	if s.warning {
		s.title = "WARNING " + s.title
	}
	if e.Message != "" {
		s.lines = append(s.lines, truncate(e.Message, maxMessage))
	}
	if e.Revision != "" {
		rev := "revision " + shortHash(e.Revision)
		if e.Author != "" {
			rev += " by " + e.Author
		}
		if e.Subject != "" {
			rev += ": " + truncate(e.Subject, maxSubject)
		}
		s.lines = append(s.lines, rev)
	}
	if e.Phase != "" {
		s.lines = append(s.lines, "phase "+string(e.Phase))
	}
	return s
}

func (s summary) text() string {
	return strings.Join(append([]string{s.title}, s.lines...), "\n")
}

// markdown is the summary as a level-4 heading and one paragraph per line;
// both DingTalk and WeCom render this subset.
func (s summary) markdown(title string) string {
	var b strings.Builder
	b.WriteString("#### " + title)
	for _, l := range s.lines {
		b.WriteString("\n\n" + l)
	}
	return b.String()
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + " … (truncated)"
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// A vendor is one notifier type: how a request is built and how an answer
// with a 2xx status is judged.
type vendor struct {
	signs       bool // accepts a signing secret (secretEnv)
	tokenInPath bool // the URL path carries the credential: never shown
	build       func(s summary, e reconcile.Event, secret string, now time.Time, u url.URL) (url.URL, http.Header, []byte, error)
	accept      func(body []byte) error // nil: any 2xx is success
}

var vendors = map[string]vendor{
	"webhook":  {signs: true, build: buildWebhook},
	"dingtalk": {signs: true, build: buildDingTalk, accept: acceptCode("errcode", "errmsg")},
	"feishu":   {signs: true, tokenInPath: true, build: buildFeishu, accept: acceptCode("code", "msg")},
	"wecom":    {build: buildWeCom, accept: acceptCode("errcode", "errmsg")},
	"slack":    {tokenInPath: true, build: buildSlack},
}

func jsonHeader() http.Header {
	return http.Header{"Content-Type": {"application/json; charset=utf-8"}}
}

func hmacSHA256(key, msg string) []byte {
	m := hmac.New(sha256.New, []byte(key))
	m.Write([]byte(msg))
	return m.Sum(nil)
}

// buildWebhook posts the event itself plus a "text" summary, signed as the
// package documentation describes.
func buildWebhook(s summary, e reconcile.Event, secret string, now time.Time, u url.URL) (url.URL, http.Header, []byte, error) {
	body, err := json.Marshal(struct {
		reconcile.Event
		Text  string            `json:"text"`
		Links map[string]string `json:"links,omitempty"` // promote, abort: signed links of an approval pause
	}{e, s.text(), s.linkMap()})
	if err != nil {
		return u, nil, nil, err
	}
	h := jsonHeader()
	if secret != "" {
		ts := strconv.FormatInt(now.Unix(), 10)
		h.Set("X-Tandem-Timestamp", ts)
		h.Set("X-Tandem-Signature", "sha256="+hex.EncodeToString(hmacSHA256(secret, ts+"."+string(body))))
	}
	return u, h, body, nil
}

// buildDingTalk posts a markdown message to a DingTalk custom robot.
// Message format: {"msgtype":"markdown","markdown":{"title","text"}}, the
// title being what the conversation list shows (消息类型和数据格式,
// https://open.dingtalk.com/document/robots/custom-robot-access). Signing
// (安全设置 加签, https://open.dingtalk.com/document/robots/customize-robot-security-settings):
// string to sign = timestamp in milliseconds + "\n" + secret; HMAC-SHA256
// keyed with the secret; Base64; URL-encoded; appended to the webhook URL as
// timestamp= and sign=. The timestamp must be within one hour of DingTalk's
// clock. Read through copies that quote the official page and its Java and
// Python examples; the official page itself was not in the stored corpus.
//
// With approval links the message is an ActionCard with one button per
// link ("独立跳转ActionCard": {"msgtype":"actionCard","actionCard":{"title",
// "text" (markdown),"btnOrientation":"1" (side by side),"btns":[{"title",
// "actionURL"}]}}, same page, message types section; also
// https://open.dingtalk.com/document/development/robot-message-type; read
// through copies that quote it, as above).
func buildDingTalk(s summary, _ reconcile.Event, secret string, now time.Time, u url.URL) (url.URL, http.Header, []byte, error) {
	msg := map[string]any{
		"msgtype":  "markdown",
		"markdown": map[string]string{"title": s.title, "text": s.markdown(s.title)},
	}
	if len(s.links) > 0 {
		btns := make([]map[string]string, len(s.links))
		for i, l := range s.links {
			btns[i] = map[string]string{"title": l.label, "actionURL": l.url}
		}
		msg = map[string]any{
			"msgtype":    "actionCard",
			"actionCard": map[string]any{"title": s.title, "text": s.markdown(s.title), "btnOrientation": "1", "btns": btns},
		}
	}
	body, err := json.Marshal(msg)
	if err != nil {
		return u, nil, nil, err
	}
	if secret != "" {
		ts := strconv.FormatInt(now.UnixMilli(), 10)
		q := u.Query()
		q.Set("timestamp", ts)
		q.Set("sign", base64.StdEncoding.EncodeToString(hmacSHA256(secret, ts+"\n"+secret)))
		u.RawQuery = q.Encode() // percent-encodes the Base64 '+', '/' and '='
	}
	return u, jsonHeader(), body, nil
}

// buildFeishu posts a rich-text ("post") message to a Feishu/Lark custom bot:
// {"msg_type":"post","content":{"post":{"zh_cn":{"title","content":[[{"tag":"text","text"}]]}}}}
// plus, when signed, "timestamp" (seconds, as a string) and "sign" =
// Base64(HMAC-SHA256 keyed with timestamp + "\n" + secret, over an empty
// message). Note the key is the string to sign, unlike DingTalk (自定义机器人
// 使用指南, https://open.feishu.cn/document/client-docs/bot-v3/add-custom-bot;
// read through copies quoting it and its Python example, and open source
// clients; the official page itself was not in the stored corpus). Unverified:
// that Lark (the international service) shows a zh_cn-only post; the
// request shape is documented as the same.
//
// Approval links are a last paragraph of "a" elements ({"tag":"a","text",
// "href"}: the rich-text tags of the same page's post section, also
// https://open.feishu.cn/document/server-docs/im-v1/message-content-description/create_json).
// UNVERIFIED: neither page was in the stored corpus for this shape; it is
// the rich-text form open source clients send.
func buildFeishu(s summary, _ reconcile.Event, secret string, now time.Time, u url.URL) (url.URL, http.Header, []byte, error) {
	type element struct {
		Tag  string `json:"tag"`
		Text string `json:"text"`
		Href string `json:"href,omitempty"`
	}
	content := make([][]element, 0, len(s.lines)+1)
	for _, l := range s.lines {
		content = append(content, []element{{Tag: "text", Text: l}})
	}
	if len(s.links) > 0 {
		var p []element
		for i, l := range s.links {
			if i > 0 {
				p = append(p, element{Tag: "text", Text: "  "})
			}
			p = append(p, element{Tag: "a", Text: l.label, Href: l.url})
		}
		content = append(content, p)
	}
	msg := map[string]any{
		"msg_type": "post",
		"content": map[string]any{"post": map[string]any{"zh_cn": map[string]any{
			"title": s.title, "content": content,
		}}},
	}
	if secret != "" {
		ts := strconv.FormatInt(now.Unix(), 10)
		msg["timestamp"] = ts
		msg["sign"] = base64.StdEncoding.EncodeToString(hmacSHA256(ts+"\n"+secret, ""))
	}
	body, err := json.Marshal(msg)
	return u, jsonHeader(), body, err
}

// buildWeCom posts a markdown message to a WeCom group robot:
// {"msgtype":"markdown","markdown":{"content"}}. WeCom robots are not
// signed: the key in the URL is the credential (群机器人配置说明,
// https://developer.work.weixin.qq.com/document/path/91770, read as stored
// at work.weixin.qq.com/api/doc/90000/90136/91770). The content limit of
// 4096 bytes and <font color="warning"> being one of three built-in colours
// come from copies of that page's markdown section, which the stored page
// cut short.
//
// Approval links are markdown links [label](url) in a last paragraph.
// UNVERIFIED: that the robot's markdown subset renders links is taken from
// copies of the page's markdown section, not the stored page.
func buildWeCom(s summary, _ reconcile.Event, _ string, _ time.Time, u url.URL) (url.URL, http.Header, []byte, error) {
	title := s.title
	if s.warning {
		title = `<font color="warning">` + title + `</font>`
	}
	content := s.markdown(title)
	if len(s.links) > 0 {
		parts := make([]string, len(s.links))
		for i, l := range s.links {
			parts[i] = "[" + l.label + "](" + l.url + ")"
		}
		content += "\n\n" + strings.Join(parts, "    ")
	}
	body, err := json.Marshal(map[string]any{
		"msgtype":  "markdown",
		"markdown": map[string]string{"content": content},
	})
	return u, jsonHeader(), body, err
}

// slackEscaper escapes the three characters Slack parses as controls in
// text; they must be sent as HTML entities (Formatting text for app
// surfaces, https://api.slack.com/reference/surfaces/formatting#escaping).
var slackEscaper = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;")

// buildSlack posts {"text"} in mrkdwn to a Slack incoming webhook, which
// answers 200 "ok" or a 4xx with an error string such as invalid_payload
// (Sending messages using incoming webhooks,
// https://api.slack.com/messaging/webhooks; the status codes per
// https://api.slack.com/changelog/2016-05-17-changes-to-errors-for-incoming-webhooks).
//
// Approval links are mrkdwn links <url|label> on a last line (Formatting
// text, https://api.slack.com/reference/surfaces/formatting#linking-urls),
// with unfurl_links false so that Slack shows no preview of them
// (https://api.slack.com/reference/messaging/link-unfurling#classic_unfurl;
// that incoming webhooks honour it is UNVERIFIED: the confirmation page
// makes a fetched link harmless either way).
func buildSlack(s summary, _ reconcile.Event, _ string, _ time.Time, u url.URL) (url.URL, http.Header, []byte, error) {
	var b strings.Builder
	b.WriteString("*" + slackEscaper.Replace(s.title) + "*")
	for _, l := range s.lines {
		b.WriteString("\n" + slackEscaper.Replace(l))
	}
	msg := map[string]any{}
	if len(s.links) > 0 {
		b.WriteString("\n")
		for i, l := range s.links {
			if i > 0 {
				b.WriteString("   ")
			}
			// The link's query is percent-encoded: it holds no <, > or |.
			b.WriteString("<" + slackEscaper.Replace(l.url) + "|" + slackEscaper.Replace(l.label) + ">")
		}
		msg["unfurl_links"] = false
	}
	msg["text"] = b.String()
	body, err := json.Marshal(msg)
	return u, jsonHeader(), body, err
}

// acceptCode judges robots that answer HTTP 200 with an error code in the
// body: DingTalk and WeCom send {"errcode":0,"errmsg":"ok"} on success and a
// non-zero errcode otherwise (DingTalk 310000: bad signature or missing
// keyword; WeCom 45009: too many messages); Feishu sends
// {"code":0,"msg":"success"} and a non-zero code otherwise (19021: bad
// signature or a timestamp more than an hour off).
func acceptCode(codeKey, msgKey string) func([]byte) error {
	return func(body []byte) error {
		var r map[string]any
		_ = json.Unmarshal(body, &r)
		code, ok := r[codeKey].(float64)
		if !ok {
			return fmt.Errorf("robot answered without %s (%d bytes)", codeKey, len(body))
		}
		if code != 0 {
			msg, _ := r[msgKey].(string)
			return fmt.Errorf("robot answered error code %d: %s", int(code), msg)
		}
		return nil
	}
}

// permanentStatus reports whether an HTTP status means retrying cannot help:
// a redirect (not followed: a signed message goes only where configured) or
// a 4xx other than 408 (timeout) and 429 (too many requests). Slack answers
// 400, 403, 404 and 410 for bad payloads and gone channels.
func permanentStatus(code int) bool {
	return code >= 300 && code < 500 && code != http.StatusRequestTimeout && code != http.StatusTooManyRequests
}

// answerError builds the error for a non-2xx answer. The body is shown only
// when it is a short error word (Slack's invalid_payload): a longer body (a
// proxy's error page) could echo the request URL and its token.
func answerError(resp *http.Response, body []byte) error {
	msg := "answered " + resp.Status
	if len(body) <= 64 && errorWord.Match(body) {
		msg += ": " + string(body)
	}
	err := errors.New(msg)
	if permanentStatus(resp.StatusCode) {
		return providers.Permanent("NotificationRejected", err)
	}
	return err
}

var errorWord = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
