// Package notify turns reconcile events into chat and webhook messages:
// a generic JSON webhook signed with HMAC-SHA256, DingTalk and Feishu/Lark
// custom robots (signed), WeCom group robots and Slack incoming webhooks.
//
// A Notifier is a reconcile.Recorder. Record never blocks: each sink has a
// bounded queue that drops its oldest message when full (counted). Run
// delivers, retrying failures with capped exponential backoff and jitter,
// and returns when its context ends, after one last attempt at what is
// still queued within a short grace.
//
// By default a sink is told about transitions (started, finished, aborted,
// swapped back, abort and swap-back started), drift (detected, resolved),
// stalls, rejected revisions, drain ceilings and Git outages (the desired
// state cannot be fetched, and again); spec.Notifier.Events
// replaces that set. An event identical to one a sink was told less than
// the dedupe window ago (same service, reason and message) is held back
// rather than sent again. A held event is sent when the window ends only if
// it is still the newest word about its service and differs from the last
// one sent, so flapping does not spam and the last state always arrives.
//
// Every message contains the word "Tandem", so a DingTalk robot secured by
// keyword can use it as its keyword.
//
// # Verifying the generic webhook
//
// The body is the JSON of the event (the fields of reconcile.Event) plus a
// "text" field with a short plain-text summary. When the notifier has a
// secretEnv, two headers are set:
//
//	X-Tandem-Timestamp: <unix seconds at sending time>
//	X-Tandem-Signature: sha256=<lower-case hex of HMAC-SHA256(secret, timestamp + "." + body)>
//
// where body is the exact bytes of the request body. A receiver recomputes
// the HMAC over the timestamp header, a dot and the raw body, compares it
// with the header in constant time, and rejects timestamps too far from its
// own clock (five minutes is a sensible bound) so that a captured request
// cannot be replayed later. A retry is signed afresh with a new timestamp.
package notify
