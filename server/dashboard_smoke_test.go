package server_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tandemhq/tandem/reconcile"
	"github.com/tandemhq/tandem/server"
)

// readSmoke is what the dashboard shows of the smoke tests.
const readSmoke = `(() => {
  const a = document.querySelector("article[data-service=user-service]");
  const txt = (root, sel) => { const e = root.querySelector(sel); return e ? e.textContent.trim() : null; };
  return {
    summary: txt(a, "[data-field=smoke-summary]"),
    results: [...a.querySelectorAll("[data-smoke]")].map((li) => li.className + " " + txt(li, ".mono") +
      " | " + (txt(li, "[data-field=smoke-error]") || "") + " | " + (txt(li, "[data-field=smoke-body]") || "")),
    markup: a.querySelectorAll("[data-field=smoke-body] *").length,
  };
})()`

// TestDashboardSmokeResults: the card of a service whose release smoke
// tests aborted lists each check on each instance, and the answer of a
// failed one as text.
func TestDashboardSmokeResults(t *testing.T) {
	e := start(t, server.Options{})
	st := smokeFixture()
	st.LastPass, st.Conditions = t0, conds(false, "ReleaseFailed", "", false, "Idle", "", true, "ReleaseFailed", "smoke check failed")
	e.status.set([]reconcile.Status{st})
	b := startBrowser(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	require.NoError(t, b.navigate(ctx, e.url+"/"))
	b.waitFor(ctx, t, "the smoke tests", `document.querySelector("[data-field=smoke-summary]") !== null`)
	var got struct {
		Summary string   `json:"summary"`
		Results []string `json:"results"`
		Markup  int      `json:"markup"`
	}
	require.NoError(t, b.eval(ctx, readSmoke, &got))
	require.Equal(t, "group B at 2.5.0: 2 of 3 checks failed", got.Summary)
	require.Equal(t, []string{
		"pass ✓ user @ 10.0.2.11:8080 |  | ",
		"fail ✗ user @ 10.0.2.12:8080 | GET http://10.0.2.12:8080/api/users/1: status 500 (want status 200) | NullPointerException <b>at</b> UserController.java:42",
		"fail ✗ exec | smoke tests of user-service group B at 2.5.0: ./smoke.sh: exit status 1: orders API answered 503 | ",
	}, got.Results)
	require.Zero(t, got.Markup, "an answer is shown as text, never as markup")
	require.Empty(t, b.pageErrors())
}
