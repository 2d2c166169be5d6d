package notify_test

import (
	"encoding/json"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/notify"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/spec"
)

func pauseEvent(deadline time.Time) reconcile.Event {
	e := event("user-service", reconcile.ReasonApprovalPending, "release 2.4.1 of user-service to group B (transition user-service-20260304T031200) is paused for approval")
	e.Transition, e.Phase, e.Deadline = "user-service-20260304T031200", reconcile.PhaseApproval, deadline
	return e
}

// linksOf extracts the promote and abort links from each vendor's message,
// in the shape that vendor documents for links or buttons.
var linksOf = map[string]func(t *testing.T, body []byte) (promote, abort string){
	"dingtalk": func(t *testing.T, body []byte) (string, string) {
		var m struct {
			Msgtype    string `json:"msgtype"`
			ActionCard struct {
				Title, Text, BtnOrientation string
				Btns                        []struct{ Title, ActionURL string }
			} `json:"actionCard"`
		}
		require.NoError(t, json.Unmarshal(body, &m))
		require.Equal(t, "actionCard", m.Msgtype)
		require.Contains(t, m.ActionCard.Text, "paused for approval")
		require.Len(t, m.ActionCard.Btns, 2)
		require.Equal(t, []string{"Promote", "Abort"}, []string{m.ActionCard.Btns[0].Title, m.ActionCard.Btns[1].Title})
		return m.ActionCard.Btns[0].ActionURL, m.ActionCard.Btns[1].ActionURL
	},
	"feishu": func(t *testing.T, body []byte) (string, string) {
		var m struct {
			Content struct {
				Post struct {
					ZhCN struct {
						Content [][]struct{ Tag, Text, Href string } `json:"content"`
					} `json:"zh_cn"`
				} `json:"post"`
			} `json:"content"`
		}
		require.NoError(t, json.Unmarshal(body, &m))
		links := map[string]string{}
		for _, line := range m.Content.Post.ZhCN.Content {
			for _, el := range line {
				if el.Tag == "a" {
					links[el.Text] = el.Href
				}
			}
		}
		require.Len(t, links, 2)
		return links["Promote"], links["Abort"]
	},
	"wecom": func(t *testing.T, body []byte) (string, string) {
		m, err := decode(body)
		require.NoError(t, err)
		require.Equal(t, "markdown", str(m, "msgtype"))
		c := str(m, "markdown", "content")
		require.LessOrEqual(t, len(c), 4096)
		found := regexp.MustCompile(`\[(Promote|Abort)\]\(([^)]+)\)`).FindAllStringSubmatch(c, -1)
		require.Len(t, found, 2)
		return found[0][2], found[1][2]
	},
	"slack": func(t *testing.T, body []byte) (string, string) {
		m, err := decode(body)
		require.NoError(t, err)
		require.Equal(t, false, m["unfurl_links"], "no preview fetch of the links")
		found := regexp.MustCompile(`<([^|>]+)\|(Promote|Abort)>`).FindAllStringSubmatch(str(m, "text"), -1)
		require.Len(t, found, 2)
		// Slack's mrkdwn escapes & as &amp; in text (formatting#escaping).
		return strings.ReplaceAll(found[0][1], "&amp;", "&"), strings.ReplaceAll(found[1][1], "&amp;", "&")
	},
	"webhook": func(t *testing.T, body []byte) (string, string) {
		var m struct{ Links map[string]string }
		require.NoError(t, json.Unmarshal(body, &m))
		return m.Links["promote"], m.Links["abort"]
	},
}

func TestAPauseIsAnnouncedWithSignedLinksOnEveryPlatform(t *testing.T) {
	signer, err := approvallink.New("https://tandem.example.com", []byte("0123456789abcdef0123456789abcdef"), time.Hour)
	require.NoError(t, err)
	deadline := time.Now().UTC().Add(20 * time.Minute).Truncate(time.Second)
	paths := map[string]string{"dingtalk": "/robot/send?access_token=t", "feishu": "/open-apis/bot/v2/hook/t",
		"wecom": "/cgi-bin/webhook/send?key=k", "slack": "/services/T/B/t", "webhook": "/hook"}
	answers := map[string]string{"dingtalk": `{"errcode":0,"errmsg":"ok"}`, "feishu": `{"code":0,"msg":"success"}`,
		"wecom": `{"errcode":0,"errmsg":"ok"}`, "slack": "ok", "webhook": ""}
	for typ, extract := range linksOf {
		t.Run(typ, func(t *testing.T) {
			rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusOK, answers[typ]))
			n, err := notify.New([]spec.Notifier{{Type: typ, URL: rc.srv.URL + paths[typ]}}, nil, notify.WithApprovalLinks(signer))
			require.NoError(t, err)
			run(t, n)
			n.Record(pauseEvent(deadline))
			h := rc.next(t)
			require.NoError(t, h.err)
			promote, abort := extract(t, h.body)
			for action, link := range map[spec.ApprovalDecision]string{spec.ApprovalPromote: promote, spec.ApprovalAbort: abort} {
				u, err := url.Parse(link)
				require.NoError(t, err, link)
				require.Equal(t, "tandem.example.com", u.Host)
				require.Equal(t, "/approval/user-service/"+string(action), u.Path)
				l, err := signer.Check("user-service", string(action), u.Query(), time.Now())
				require.NoError(t, err, link)
				require.Equal(t, "user-service-20260304T031200", l.Transition)
				require.Equal(t, deadline, l.Expires, "a link never outlives the pause's own deadline")
			}
			require.NotEqual(t, promote, abort)
		})
	}
}

func TestWithoutALinkKeyThePauseMessageSaysSo(t *testing.T) {
	rc := newReceiver(t, checkSlack, always(http.StatusOK, "ok"))
	n, err := notify.New([]spec.Notifier{{Type: "slack", URL: rc.srv.URL + "/services/T/B/t"}}, nil)
	require.NoError(t, err)
	run(t, n)
	n.Record(pauseEvent(time.Time{}))
	h := rc.next(t)
	require.NoError(t, h.err)
	m, err := decode(h.body)
	require.NoError(t, err)
	require.Contains(t, str(m, "text"), "release paused for approval")
	require.Contains(t, str(m, "text"), "No promote/abort links: api.linkKeyEnv and api.externalURL are not set.")
	require.NotContains(t, str(m, "text"), "/approval/")
}

// The links announcing the pause of a manual rollout step are bound to it.
func TestTheLinksOfAStepPauseCarryTheStep(t *testing.T) {
	signer, err := approvallink.New("https://tandem.example.com", []byte("0123456789abcdef0123456789abcdef"), time.Hour)
	require.NoError(t, err)
	rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusOK, ""))
	n, err := notify.New([]spec.Notifier{{Type: "webhook", URL: rc.srv.URL + "/hook"}}, nil, notify.WithApprovalLinks(signer))
	require.NoError(t, err)
	run(t, n)
	e := pauseEvent(time.Time{})
	e.Phase, e.PauseStep = reconcile.PhaseShift, 2
	n.Record(e)
	h := rc.next(t)
	require.NoError(t, h.err)
	promote, _ := linksOf["webhook"](t, h.body)
	u, err := url.Parse(promote)
	require.NoError(t, err)
	l, err := signer.Check("user-service", "promote", u.Query(), time.Now())
	require.NoError(t, err)
	require.Equal(t, 2, l.Step)
}
