// Package approvallink signs and checks the promote and abort links of an
// approval pause (gates.approval), sent in the chat messages that announce
// it. A link is
//
//	{api.externalURL}/approval/{service}/{action}?t={transition}&e={expiry}&n={nonce}&s={signature}
//
// with, for the manual pause of a rollout step (pause: manual), &p={step}
// (from 1; absent for the approval gate),
// where the signature is HMAC-SHA256 (RFC 2104) under the key api.linkKeyEnv
// names, over every other part. It is bound to one service, one action and
// one transition, expires (api.linkTTL, never after the gate's own timeout)
// and carries a random nonce; the server accepts each nonce once, and the
// decision it leads to is journaled with the nonce, which ends the pause,
// so a replay, also after a restart, finds nothing to decide.
package approvallink

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tandemhq/tandem/spec"
)

// PathPrefix is where the links are served.
const PathPrefix = "/approval/"

// Link is what a link carries.
type Link struct {
	Service    string
	Action     spec.ApprovalDecision
	Transition string
	Step       int // the pause: 0 the approval gate, n the manual pause of rollout step n
	Expires    time.Time
	Nonce      string
}

// Signer makes and checks links. The zero value is not usable; see New.
type Signer struct {
	base *url.URL
	key  []byte
	ttl  time.Duration
}

// New returns a signer for links under base with key, valid for ttl.
func New(base string, key []byte, ttl time.Duration) (*Signer, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("api.externalURL: want an http or https URL, got %q", base)
	}
	if len(key) < spec.MinLinkKeyBytes {
		return nil, fmt.Errorf("the approval link key (api.linkKeyEnv) has %d bytes; at least %d are needed", len(key), spec.MinLinkKeyBytes)
	}
	if ttl <= 0 {
		return nil, errors.New("api.linkTTL must be positive")
	}
	u.Path = strings.TrimSuffix(u.Path, "/")
	return &Signer{base: u, key: key, ttl: ttl}, nil
}

// URL returns a new signed link for action on the pause at step (0 the
// approval gate, n rollout step n) of the paused transition of service; it
// expires after the signer's ttl, or at deadline when that is
// sooner (the pause ends then on its own).
func (s *Signer) URL(service, transition string, step int, action spec.ApprovalDecision, now, deadline time.Time) (string, error) {
	exp := now.Add(s.ttl)
	if !deadline.IsZero() && deadline.Before(exp) {
		exp = deadline
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("making a link nonce: %w", err)
	}
	l := Link{Service: service, Action: action, Transition: transition, Step: step, Expires: exp.Truncate(time.Second), Nonce: base64.RawURLEncoding.EncodeToString(b[:])}
	u := *s.base
	u.Path += PathPrefix + url.PathEscape(service) + "/" + string(action)
	u.RawQuery = s.query(l).Encode()
	return u.String(), nil
}

func (s *Signer) query(l Link) url.Values {
	q := url.Values{}
	q.Set("t", l.Transition)
	if l.Step > 0 {
		q.Set("p", strconv.Itoa(l.Step))
	}
	q.Set("e", strconv.FormatInt(l.Expires.Unix(), 10))
	q.Set("n", l.Nonce)
	q.Set("s", s.sign(l))
	return q
}

// sign is the signature over every part of l, each length-prefixed so that
// no two links share a message. The step of a rollout pause is a part of
// its own, so a link of the approval gate never decides a rollout step's
// pause, nor one step's another's.
func (s *Signer) sign(l Link) string {
	m := hmac.New(sha256.New, s.key)
	parts := []string{"tandem-approval-v1", l.Service, string(l.Action), l.Transition, strconv.FormatInt(l.Expires.Unix(), 10), l.Nonce}
	if l.Step > 0 {
		parts = append(parts, "step:"+strconv.Itoa(l.Step))
	}
	for _, part := range parts {
		fmt.Fprintf(m, "%d:%s\n", len(part), part)
	}
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// Errors of Check.
var (
	ErrForged  = errors.New("the link's signature does not match: it was altered or not made by this Tandem")
	ErrExpired = errors.New("the link has expired")
)

// Check verifies a link's parts (the path's service and action, the query)
// at now and returns what it carries.
func (s *Signer) Check(service, action string, q url.Values, now time.Time) (Link, error) {
	var l Link
	switch a := spec.ApprovalDecision(action); a {
	case spec.ApprovalPromote, spec.ApprovalAbort:
		l.Action = a
	default:
		return l, fmt.Errorf("unknown action %q: want promote or abort", action)
	}
	for _, k := range []string{"t", "e", "n", "s"} {
		if len(q[k]) != 1 || q.Get(k) == "" {
			return l, fmt.Errorf("the link lacks its %q part: copy it whole", k)
		}
	}
	exp, err := strconv.ParseInt(q.Get("e"), 10, 64)
	if err != nil {
		return l, ErrForged
	}
	l.Service, l.Transition, l.Expires, l.Nonce = service, q.Get("t"), time.Unix(exp, 0).UTC(), q.Get("n")
	if p, ok := q["p"]; ok {
		step, err := strconv.Atoi(q.Get("p"))
		if len(p) != 1 || err != nil || step < 1 {
			return l, ErrForged
		}
		l.Step = step
	}
	if !hmac.Equal([]byte(s.sign(l)), []byte(q.Get("s"))) {
		return l, ErrForged
	}
	if !now.Before(l.Expires) {
		return l, fmt.Errorf("%w at %s", ErrExpired, l.Expires.UTC().Format(time.RFC3339))
	}
	return l, nil
}
