package notify_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/notify"
	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/redact"
	"github.com/tandemhq/tandem/spec"
)

func TestNotificationsCarryNoSecret(t *testing.T) {
	const planted = "planted-deploy-tok-9Qx"
	rc := newReceiver(t, func(*http.Request, []byte) error { return nil }, always(http.StatusNoContent, ""))
	n, err := notify.New([]spec.Notifier{{Type: "webhook", URL: rc.srv.URL}}, nil, notify.WithRedactor(redact.New(planted)))
	require.NoError(t, err)
	run(t, n)
	n.Record(event("gateway", reconcile.ReasonTransitionAborted, "deploy of 2.4.1 failed: exit status 1\n"+
		"echo "+planted+"\nAuthorization: Bearer eyJhbGciOiJIUzI1NiJ9.e30"))
	h := rc.next(t)
	require.NotContains(t, string(h.body), planted)
	require.NotContains(t, string(h.body), "eyJhbGciOiJIUzI1NiJ9")
	require.Contains(t, string(h.body), `echo \u003credacted\u003e`, "JSON escapes the mask")
}
