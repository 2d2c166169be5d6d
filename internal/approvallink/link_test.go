package approvallink_test

import (
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/internal/approvallink"
	"github.com/tandemhq/tandem/spec"
)

var key = []byte("0123456789abcdef0123456789abcdef")

func TestNewRefusesAShortKeyAndABadBase(t *testing.T) {
	_, err := approvallink.New("https://tandem.example.com", key[:31], time.Hour)
	require.EqualError(t, err, "the approval link key (api.linkKeyEnv) has 31 bytes; at least 32 are needed")
	_, err = approvallink.New("tandem.example.com", key, time.Hour)
	require.EqualError(t, err, `api.externalURL: want an http or https URL, got "tandem.example.com"`)
}

func TestALinkChecksOnlyWithEveryPartAsSigned(t *testing.T) {
	s, err := approvallink.New("https://tandem.example.com/ops/", key, time.Hour)
	require.NoError(t, err)
	now := time.Date(2026, 3, 4, 3, 0, 0, 0, time.UTC)
	link, err := s.URL("user-service", "user-service-1", 0, spec.ApprovalPromote, now, time.Time{})
	require.NoError(t, err)
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.Equal(t, "/ops/approval/user-service/promote", u.Path)

	l, err := s.Check("user-service", "promote", u.Query(), now.Add(59*time.Minute))
	require.NoError(t, err)
	require.Equal(t, approvallink.Link{Service: "user-service", Action: spec.ApprovalPromote, Transition: "user-service-1",
		Expires: now.Add(time.Hour), Nonce: u.Query().Get("n")}, l)

	_, err = s.Check("user-service", "promote", u.Query(), now.Add(time.Hour))
	require.ErrorIs(t, err, approvallink.ErrExpired)
	_, err = s.Check("user-service", "approve", u.Query(), now)
	require.EqualError(t, err, `unknown action "approve": want promote or abort`)
	doubled := u.Query()
	doubled.Add("t", "user-service-2")
	_, err = s.Check("user-service", "promote", doubled, now)
	require.ErrorContains(t, err, `lacks its "t" part`)
	other, err := approvallink.New("https://tandem.example.com", []byte(strings.Repeat("k", 32)), time.Hour)
	require.NoError(t, err)
	_, err = other.Check("user-service", "promote", u.Query(), now)
	require.ErrorIs(t, err, approvallink.ErrForged, "another key")

	// Two links for the same pause differ (their nonces), and a deadline
	// sooner than the TTL bounds the expiry.
	again, err := s.URL("user-service", "user-service-1", 0, spec.ApprovalPromote, now, now.Add(10*time.Minute))
	require.NoError(t, err)
	require.NotEqual(t, link, again)
	v, _ := url.Parse(again)
	l, err = s.Check("user-service", "promote", v.Query(), now)
	require.NoError(t, err)
	require.Equal(t, now.Add(10*time.Minute), l.Expires)
}

// A link for the manual pause of a rollout step carries its step, signed:
// taking the step off (a gate's link) or changing it makes it forged.
func TestALinkIsBoundToItsPause(t *testing.T) {
	s, err := approvallink.New("https://tandem.example.com", key, time.Hour)
	require.NoError(t, err)
	now := time.Date(2026, 3, 4, 3, 0, 0, 0, time.UTC)
	link, err := s.URL("user-service", "user-service-1", 2, spec.ApprovalAbort, now, time.Time{})
	require.NoError(t, err)
	u, err := url.Parse(link)
	require.NoError(t, err)
	require.Equal(t, "2", u.Query().Get("p"))
	l, err := s.Check("user-service", "abort", u.Query(), now)
	require.NoError(t, err)
	require.Equal(t, 2, l.Step)

	for name, edit := range map[string]func(q url.Values){
		"step removed (the gate)":  func(q url.Values) { q.Del("p") },
		"another step":             func(q url.Values) { q.Set("p", "3") },
		"a step that is no number": func(q url.Values) { q.Set("p", "two") },
	} {
		q := u.Query()
		edit(q)
		_, err := s.Check("user-service", "abort", q, now)
		require.ErrorIs(t, err, approvallink.ErrForged, name)
	}
	gate, err := s.URL("user-service", "user-service-1", 0, spec.ApprovalAbort, now, time.Time{})
	require.NoError(t, err)
	g, _ := url.Parse(gate)
	q := g.Query()
	q.Set("p", "2")
	_, err = s.Check("user-service", "abort", q, now)
	require.ErrorIs(t, err, approvallink.ErrForged, "a gate's link given a step")
}
