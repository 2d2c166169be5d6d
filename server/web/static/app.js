// Tandem dashboard. Plain JavaScript: it follows GET api/v1/stream
// (Server-Sent Events: "services", "events", "event") and renders with DOM
// calls only (never innerHTML), so that no status text can become markup.
"use strict";

// The phases of a transition without release gates; the status's phases
// list says which ones a transition goes through (docs/api.md).
const CLASSIC_PHASES = ["prepare", "verify", "enable", "shift", "disable", "drain", "watch"];
const GROUPS = ["A", "B"];
const STALE_AFTER_MS = 15000; // the server sends a snapshot at least every 5 s
const MAX_EVENTS = 200;

let services = [];
let events = [];
let skew = 0; // server clock minus ours, from the last snapshot
let lastMessage = 0;
let connected = false;
// The API token typed for the approval buttons, and each service's last
// answer: kept across re-renders, never stored.
let approvalToken = "";
const approvalResults = new Map();

// el builds an element: el("div", {class: "x", "data-field": "y"}, child, "text", ...)
function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children.flat(Infinity)) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

function now() { return Date.now() + skew; }

function ms(iso) {
  const t = Date.parse(iso);
  return Number.isNaN(t) || t <= 0 ? 0 : t;
}

function duration(msec) {
  const s = Math.max(0, Math.floor(msec / 1000));
  const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), r = s % 60;
  if (h > 0) return `${h}h ${String(m).padStart(2, "0")}m`;
  if (m > 0) return `${m}m ${String(r).padStart(2, "0")}s`;
  return `${r}s`;
}

function short(hash) { return hash ? hash.slice(0, 7) : "—"; }

// bindingKey mirrors spec.Binding.Key.
function bindingKey(b) {
  if (b.alb) return `alb:${b.alb}/${b.serverGroup}`;
  if (b.slb) return `slb:${b.slb}/${b.loadBalancer}/${b.vServerGroup || "default"}`;
  if (b.haproxy) return `haproxy:${b.haproxy}/${b.backend}`;
  return "invalid-binding";
}

function instances(s, g) {
  return (s.groups && s.groups[g] && s.groups[g].instances) || [];
}

function condition(s, type) {
  return (s.conditions || []).find((c) => c.type === type);
}

// state is the one word an operator reads first, and its colour.
function state(s) {
  const stalled = condition(s, "Stalled");
  if (stalled && stalled.status) return ["STALLED", "s-bad"];
  if (s.suspended) return ["SUSPENDED", "s-muted"];
  if (s.transition && s.transition.approval && !s.transition.approval.decision && s.transition.phase === "approval") {
    return ["PAUSED FOR APPROVAL", "s-warn"];
  }
  const r = s.transition && s.transition.rollout;
  if (r && r.pause && !r.pause.decision && s.transition.phase === "shift") {
    return [`PAUSED AT STEP ${r.step + 1} (${r.steps[r.step].share}%) FOR APPROVAL`, "s-warn"];
  }
  if (s.transition) {
    const words = { release: "RELEASING", heal: "HEALING", abort: "ABORTING", "swap-back": "SWAPPING BACK" };
    return [words[s.transition.kind] || s.transition.kind.toUpperCase(), "s-busy"];
  }
  const ready = condition(s, "Ready");
  if (ready && ready.status) return ["READY", "s-ok"];
  if (s.drift && s.drift.length) return ["DRIFT", "s-warn"];
  return ["NOT READY", "s-warn"];
}

// weights of each instance of g on a binding (-1: not a backend of it).
function groupWeights(s, bl, g) {
  return instances(s, g).map((inst) => {
    const b = (bl.backends || []).find((x) => x.id === inst.id);
    return b ? b.weight : -1;
  });
}

function weightLabel(ws) {
  const known = ws.filter((w) => w >= 0);
  if (known.length === 0) return "—";
  const lo = Math.min(...known), hi = Math.max(...known);
  const label = lo === hi ? String(lo) : `${lo}–${hi}`;
  return known.length < ws.length ? `${label} (${ws.length - known.length} missing)` : label;
}

function renderGroup(s, g) {
  const insts = instances(s, g);
  const version = s.versions && s.versions[g];
  const probe = s.probed && s.probed[g]; // last probe, also of the idle group
  const serving = s.liveActive === g || s.liveActive === "both";
  let reg = null;
  if (s.registry) {
    const regs = s.registry.instances || [];
    const vis = s.registry.visible || [];
    const same = (a, i) => a.ip === i.ip && a.port === i.port;
    const enabled = insts.filter((i) => regs.some((r) => same(r, i) && r.enabled)).length;
    const visible = insts.filter((i) => vis.some((v) => same(v, i))).length;
    reg = el("div", { class: "reg", "data-field": "registry" }, `registry: enabled ${enabled}/${insts.length} · visible ${visible}/${insts.length}`);
  }
  return el("div", { class: "group", "data-group": g },
    el("span", { class: "name" }, `Group ${g}`),
    el("span", { class: "ver mono", "data-field": "version" }, version || "unknown"),
    el("span", { class: "role" + (serving ? " serving" : ""), "data-field": "role" }, serving ? "SERVING" : "idle"),
    probe ? el("span", { class: "health" + (probe.healthy ? "" : " bad"), "data-field": "health", title: probe.detail || "" },
      probe.healthy ? "healthy" : "UNHEALTHY") : null,
    el("div", { class: "reg" }, `${insts.length} instance${insts.length === 1 ? "" : "s"}`),
    reg);
}

function renderBinding(s, bl) {
  const wa = groupWeights(s, bl, "A"), wb = groupWeights(s, bl, "B");
  const sum = (ws) => ws.reduce((t, w) => t + Math.max(w, 0), 0);
  const sa = sum(wa), sb = sum(wb), total = sa + sb;
  const key = bindingKey(bl.binding);
  const bar = el("div", { class: "bar", role: "img", "aria-label": `${key}: A ${sa}, B ${sb}` });
  if (total === 0) {
    bar.append(el("span", { class: "zero" }, "NO WEIGHT ON EITHER GROUP"));
  } else {
    for (const [g, w] of [["A", sa], ["B", sb]]) {
      if (w === 0) continue;
      const seg = el("span", { class: `seg seg-${g}` }, `${g} ${Math.round((100 * w) / total)}%`);
      seg.style.width = `${(100 * w) / total}%`;
      bar.append(seg);
    }
  }
  // A preview route: the group it carries, as the server derived it.
  const route = bl.binding.preview ? (s.preview || []).find((r) => r.binding === key) : null;
  const attrs = { class: "binding", "data-binding": key, "data-weight-a": sa, "data-weight-b": sb };
  if (route) attrs["data-preview"] = route.group;
  return el("div", attrs,
    el("span", { class: "key mono" }, key,
      route ? el("span", { class: "preview", "data-field": "preview" }, ` preview route → ${route.group}`) : null),
    bar,
    el("div", { class: "wlabels" },
      el("span", { class: "wa" }, "A weight ", el("b", { "data-field": "weight-A" }, weightLabel(wa))),
      el("span", { class: "wb" }, "B weight ", el("b", { "data-field": "weight-B" }, weightLabel(wb)))));
}

function renderPhase(s) {
  const t = s.transition;
  if (!t) {
    return el("div", { class: "phase" },
      el("span", { class: "what", "data-field": "transition" }, s.suspended ? "suspended" : "no transition"),
      s.summary ? el("span", { "data-field": "summary" }, ` — ${s.summary}`) : null);
  }
  const phases = s.phases || CLASSIC_PHASES;
  const cur = phases.indexOf(t.phase);
  const times = t.phaseTimes || {};
  const steps = el("ol", { class: "steps", "data-field": "phases" }, phases.map((p, i) => {
    const cls = i < cur ? "done" : i === cur ? "current" : "";
    const took = times[p] ? ` (${duration(times[p] / 1e6)})` : "";
    return el("li", { class: cls, title: p + took }, i < cur ? `✓ ${p}` : p);
  }));
  const parts = [
    el("div", {},
      el("span", { class: "what", "data-field": "transition" }, `${t.kind} ${t.version}: group ${t.from} → group ${t.to}`),
      t.reason ? el("span", { class: "reason" }, ` — because ${t.reason}`) : null),
    steps,
    el("div", {}, "phase ", el("b", { "data-field": "phase" }, t.phase), " for ",
      el("b", { "data-field": "elapsed", "data-since": t.phaseSince }, duration(now() - ms(t.phaseSince))),
      " · transition for ", el("span", { "data-since": t.started }, duration(now() - ms(t.started)))),
  ];
  if (t.rollout && t.phase === "shift") {
    // A rollout: the step and the target group's share of every binding.
    const r = t.rollout, st = r.steps[r.step];
    parts.push(el("div", {}, "rollout ",
      el("b", { "data-field": "rollout" }, `step ${r.step + 1}/${r.steps.length} · ${st.share}% to group ${t.to}`),
      r.reached ? ` since ${new Date(ms(r.reached)).toLocaleTimeString()}` : " (setting the weights)"));
  }
  if (s.evidence) {
    parts.push(el("div", { class: "wait" }, el("span", { class: "k" }, "drain evidence: "),
      el("span", { class: "evidence mono", "data-field": "evidence" }, s.evidence)));
  } else if (s.message) {
    parts.push(el("div", { class: "wait" }, el("span", { class: "k" }, "waiting: "), el("span", { "data-field": "message" }, s.message)));
  }
  if (s.step) parts.push(el("div", { class: "wait" }, el("span", { class: "k" }, "next step: "), el("span", { "data-field": "step" }, s.step)));
  return el("div", { class: "phase" }, parts);
}

// renderAnalysis shows the metric analysis of the transition (gates.analysis):
// per query, how many measurements were successful, failed, inconclusive,
// and the last value with what it meant.
function renderAnalysis(s) {
  const a = s.transition && s.transition.analysis;
  if (!a) return null;
  const stage = a.phase === "watch" ? "during the watch" : "before the shift";
  const head = el("div", { class: "wait" }, el("span", { class: "k" }, `${stage}: `),
    `${a.measurements} measurement${a.measurements === 1 ? "" : "s"}`,
    a.lastAt ? [", last ", el("span", { "data-since": a.lastAt }, duration(now() - ms(a.lastAt))), " ago"] : null);
  const rows = (a.queries || []).map((q) => el("tr", { "data-query": q.name, class: `m-${q.last || "none"}` },
    el("td", { class: "mono" }, q.name),
    el("td", { "data-field": "counts" }, `${q.successful} ok · ${q.failed} failed · ${q.inconclusive} inconclusive`),
    el("td", { class: "mono", "data-field": "value" }, q.value || "—"),
    el("td", { "data-field": "detail" }, q.last ? q.last + (q.detail ? `: ${q.detail}` : "") : "")));
  return [el("div", { class: "section-title" }, "Analysis"),
    el("div", { class: "analysis", "data-field": "analysis" }, head, el("table", { class: "queries" }, el("tbody", {}, rows)))];
}

// renderApproval shows a release at its approval gate (gates.approval):
// since when, until when, and who can end the pause; while it lasts,
// Promote and Abort buttons that call the same API as tandem promote|abort
// (POST api/v1/services/NAME/promote|abort with the API token, typed here
// and sent only with that request).
function renderApproval(s) {
  const t = s.transition;
  // The manual pause of a rollout step (pause: manual) is shown, and
  // decided, like the approval gate's; the step binds the decision to it.
  const r = t && t.rollout;
  const a = (r && r.pause) || (t && t.approval);
  if (!a) return null;
  const step = r && r.pause ? r.step + 1 : 0;
  const where = step ? `Paused at step ${step} (share ${r.steps[r.step].share}%) for approval since ` : "Paused since ";
  const box = el("div", { class: "approval", "data-field": "approval" });
  if (a.decision) {
    const d = a.decision;
    box.append(el("p", { "data-field": "approval-decision" },
      `${d.action === "promote" ? "Promoted" : "Aborted"} by ${d.by} at ${new Date(ms(d.at)).toISOString()}`));
    return [el("div", { class: "section-title" }, "Approval"), box];
  }
  const until = a.deadline && ms(a.deadline)
    ? `until ${new Date(ms(a.deadline)).toISOString()}, then ${a.onTimeout}`
    : "until someone decides";
  box.append(
    el("p", { "data-field": "approval-pause" }, `${where}${new Date(ms(a.since)).toISOString()} (`,
      el("span", { "data-since": a.since }, duration(now() - ms(a.since))), ` ago), ${until}.`),
    el("p", { class: "k" }, "Who can promote or abort: a holder of the API token (here, tandem promote|abort, the API) or of a link in the chat message."));
  const token = el("input", { type: "password", autocomplete: "off", placeholder: "API token (api.tokenEnv), if set", "aria-label": "API token", "data-field": "approval-token" });
  token.value = approvalToken;
  token.addEventListener("input", () => { approvalToken = token.value; });
  const result = el("p", { "data-field": "approval-result", role: "status" }, approvalResults.get(s.service) || "");
  const show = (text) => { approvalResults.set(s.service, text); result.textContent = text; };
  const act = (action) => {
    const headers = { "Content-Type": "application/json" };
    if (approvalToken) headers.Authorization = `Bearer ${approvalToken}`;
    show(`${action}…`);
    fetch(`api/v1/services/${encodeURIComponent(s.service)}/${action}`, {
      method: "POST", headers, cache: "no-store",
      body: JSON.stringify({ transition: t.id, step, by: "dashboard" }),
    }).then((r) => r.json().then((b) => {
      show(r.ok ? `${action} accepted (by ${b.by})` : `${action} refused: ${b.error || r.status}`);
    }), (err) => { show(`${action} failed: ${err}`); });
  };
  const promote = el("button", { type: "button", class: "promote", "data-action": "promote" }, "Promote");
  const abort = el("button", { type: "button", class: "abort", "data-action": "abort" }, "Abort");
  promote.addEventListener("click", () => act("promote"));
  abort.addEventListener("click", () => act("abort"));
  box.append(el("div", { class: "approval-actions" }, token, promote, abort), result);
  return [el("div", { class: "section-title" }, "Approval"), box];
}

// renderSmoke shows the smoke tests of the transition, or the last run:
// each check on each instance, with the answer of a failed one.
function renderSmoke(s) {
  const sm = s.smoke;
  if (!sm) return null;
  const results = sm.results || [];
  const failed = results.filter((r) => !r.passed).length;
  let summary = `group ${sm.group} at ${sm.version}: `;
  if (!sm.done) summary += `running (run ${sm.runs})`;
  else if (failed) summary += `${failed} of ${results.length} checks failed`;
  else summary += `all ${results.length} checks passed`;
  return [
    el("div", { class: "section-title" }, "Smoke tests"),
    el("div", { class: "smoke" + (failed ? " bad" : ""), "data-field": "smoke" },
      el("div", { "data-field": "smoke-summary" }, summary),
      results.length ? el("ul", { class: "smoke-results" }, results.map((r) =>
        el("li", { class: r.passed ? "pass" : "fail", "data-smoke": r.check },
          el("span", { class: "mono" }, `${r.passed ? "✓" : "✗"} ${r.check}${r.instance ? " @ " + r.instance : ""}`),
          r.status ? el("span", { class: "dim" }, ` ${r.status}`) : null,
          r.error ? el("div", { class: "smoke-error", "data-field": "smoke-error" }, r.error) : null,
          !r.passed && r.body ? el("pre", { class: "smoke-body mono", "data-field": "smoke-body" }, r.body) : null))) : null),
  ];
}

function renderConditions(s) {
  const chips = [], msgs = [];
  for (const c of s.conditions || []) {
    let cls = "c-quiet";
    if (c.type === "Stalled" && c.status) cls = "c-true-bad";
    else if (c.type === "Ready") cls = c.status ? "c-true-good" : "c-false-bad";
    else if (c.type === "Reconciling" && c.status) cls = "c-true-busy";
    chips.push(el("span", { class: `cond ${cls}`, "data-condition": c.type },
      el("span", { class: "t" }, c.type),
      el("span", { "data-field": "status" }, c.status ? "True" : "False"), " · ",
      el("span", { "data-field": "reason" }, c.reason),
      c.since && ms(c.since) ? [" · ", el("span", { "data-since": c.since, title: `since ${c.since}` }, duration(now() - ms(c.since)))] : null));
    if (c.type === "Stalled" && c.status && c.message) {
      msgs.push(el("p", { class: "cond-msg bad", "data-field": "stalled-message" }, `Stalled: ${c.reason}: ${c.message}`));
    } else if (c.type === "Ready" && !c.status && c.message && !(condition(s, "Stalled") || {}).status && !s.transition) {
      msgs.push(el("p", { class: "cond-msg warn", "data-field": "ready-message" }, `${c.reason}: ${c.message}`));
    }
  }
  return [el("div", { class: "conds" }, chips), msgs];
}

function renderRevision(s) {
  const r = s.revision || {};
  const applied = s.appliedRevision;
  return el("div", { class: "rev", "data-field": "revision" },
    "desired ", el("span", { class: "hash mono", "data-field": "revision-hash", title: r.hash || "" }, short(r.hash)),
    r.author ? [" by ", el("span", { class: "hash", "data-field": "revision-author" }, r.author)] : null,
    r.subject ? [" — ", el("span", { class: "subject", "data-field": "revision-subject" }, `“${r.subject}”`)] : null,
    " · applied ",
    el("span", { class: "hash mono", "data-field": "applied-hash", title: applied || "" },
      !applied ? "none yet" : applied === r.hash ? "same" : short(applied)));
}

function renderService(s) {
  const [word, cls] = state(s);
  const liveMismatch = s.liveActive !== s.desiredActive;
  const desiredVer = s.versions && s.versions[s.desiredActive];
  const card = el("article", { class: `svc ${cls}`, "data-service": s.service },
    el("div", { class: "svc-head" },
      el("h2", {}, s.service),
      el("span", { class: `badge ${cls}`, "data-field": "state" }, word)),
    el("div", { class: "dl" },
      el("span", {}, el("span", { class: "k" }, "desired"),
        el("span", { class: "v mono", "data-field": "desired" }, `${s.desiredActive} @ ${s.desiredVersion}`)),
      el("span", {}, el("span", { class: "k" }, "live"),
        el("span", { class: "v mono" + (liveMismatch ? " mismatch" : ""), "data-field": "live" }, s.liveActive || "unknown"),
        desiredVer && s.liveActive === s.desiredActive && desiredVer !== s.desiredVersion
          ? el("span", { class: "v mismatch" }, ` runs ${desiredVer}`) : null)),
    el("div", { class: "section-title" }, "Groups"),
    el("div", { class: "groups" }, GROUPS.map((g) => renderGroup(s, g))),
    (s.bindings || []).length ? [el("div", { class: "section-title" }, "Traffic"), (s.bindings || []).map((bl) => renderBinding(s, bl))] : null,
    el("div", { class: "section-title" }, "Phase"),
    renderPhase(s),
    renderAnalysis(s),
    renderApproval(s),
    renderSmoke(s),
    el("div", { class: "section-title" }, "Conditions"),
    renderConditions(s),
    (s.drift || []).length ? [el("div", { class: "section-title" }, "Drift"),
      el("ul", { class: "drift", "data-field": "drift" }, s.drift.map((d) => el("li", {}, d)))] : null,
    el("div", { class: "section-title" }, "Revision"),
    renderRevision(s),
    el("div", { class: "foot" }, "last pass ", el("span", { "data-since": s.lastPass }, duration(now() - ms(s.lastPass))), " ago"));
  return card;
}

// renderNotice says what the services alone do not: this daemon does not
// act (a follower names the leader), or Git keeps a newer revision out.
function renderNotice(list) {
  const lines = [];
  if (list.notReady) lines.push(`Not ready: ${list.notReady}`);
  const src = list.source;
  if (src && src.head && src.rejected) lines.push(`Git: head ${short(src.head)} is NOT applied: ${src.rejected}`);
  if (src && src.fetchError) lines.push(`Git: fetching fails (${src.failures} in a row): ${src.fetchError}`);
  const notice = document.getElementById("notice");
  notice.textContent = lines.join("\n");
  notice.hidden = lines.length === 0;
}

function renderServices() {
  const root = document.getElementById("services");
  if (services.length === 0) {
    root.replaceChildren(el("p", { class: "empty" }, "No services in the desired state yet."));
  } else {
    root.replaceChildren(...services.map(renderService));
  }
  const count = (w) => services.filter((s) => state(s)[0] === w).length;
  const stalled = count("STALLED");
  const busy = services.filter((s) => s.transition).length;
  document.getElementById("totals").replaceChildren(...[
    `${services.length} service${services.length === 1 ? "" : "s"}`,
    stalled ? [" · ", el("span", { class: "bad" }, `${stalled} stalled`)] : [],
    busy ? [" · ", el("span", { class: "busy" }, `${busy} in transition`)] : [],
  ].flat());
}

function eventTime(iso) {
  const d = new Date(iso);
  const t = d.toLocaleTimeString([], { hour12: false });
  return d.toDateString() === new Date(now()).toDateString() ? t : `${d.toLocaleDateString()} ${t}`;
}

function renderEvent(e) {
  return el("li", { class: e.type, "data-reason": e.reason, "data-service": e.service || null },
    el("div", {},
      el("span", { class: "when mono", title: e.time }, eventTime(e.time)),
      el("span", { class: "svc-name" }, e.service || "tandem"),
      el("span", { class: "reason" }, e.reason),
      e.phase ? el("span", { class: "when" }, ` · ${e.phase}`) : null,
      e.duration ? el("span", { class: "when" }, ` · ${duration(e.duration / 1e6)}`) : null,
      e.revision ? el("span", { class: "when mono", title: e.subject || "" }, ` · ${short(e.revision)}`) : null),
    el("div", { class: "msg" }, e.message));
}

function renderEvents() {
  document.getElementById("events").replaceChildren(...events.map(renderEvent));
}

// tick refreshes elapsed times and the connection state every second.
function tick() {
  for (const node of document.querySelectorAll("[data-since]")) {
    const t = ms(node.getAttribute("data-since"));
    if (!t) continue;
    node.textContent = duration(now() - t);
  }
  const conn = document.getElementById("conn");
  if (!connected) {
    conn.className = "conn conn-down";
    conn.textContent = "reconnecting";
  } else if (Date.now() - lastMessage > STALE_AFTER_MS) {
    conn.className = "conn conn-down";
    conn.textContent = `stale: no update for ${duration(Date.now() - lastMessage)}`;
  } else {
    conn.className = "conn conn-live";
    conn.textContent = "live";
  }
}

function connect() {
  const src = new EventSource("api/v1/stream");
  src.addEventListener("open", () => { connected = true; tick(); });
  src.addEventListener("error", () => {
    connected = false;
    tick();
    // With a read token, a session that expired makes the stream fail
    // for good: the page itself then shows the login form again.
    fetch("api/v1/events?limit=1", { cache: "no-store" }).then((r) => {
      if (r.status === 401) location.reload();
    }, () => {});
  });
  // "services" is the whole list; "changes" what changed since, or nothing
  // (a heartbeat). Both carry the server's time, the source and notReady.
  const received = (msg, changed) => {
    skew = ms(msg.time) - Date.now();
    lastMessage = Date.now();
    connected = true;
    renderNotice(msg);
    if (changed) renderServices();
    tick();
  };
  src.addEventListener("services", (m) => {
    const list = JSON.parse(m.data);
    services = list.services || [];
    received(list, true);
  });
  src.addEventListener("changes", (m) => {
    const c = JSON.parse(m.data);
    const changed = c.changed || [], removed = c.removed || [];
    if (changed.length || removed.length) {
      const byName = new Map(services.map((s) => [s.service, s]));
      for (const s of changed) byName.set(s.service, s);
      for (const name of removed) byName.delete(name);
      services = [...byName.values()].sort((a, b) => (a.service < b.service ? -1 : a.service > b.service ? 1 : 0));
    }
    received(c, changed.length > 0 || removed.length > 0);
  });
  src.addEventListener("events", (m) => {
    events = (JSON.parse(m.data).events || []).slice(-MAX_EVENTS).reverse();
    lastMessage = Date.now();
    renderEvents();
  });
  src.addEventListener("event", (m) => {
    events.unshift(JSON.parse(m.data));
    events.length = Math.min(events.length, MAX_EVENTS);
    lastMessage = Date.now();
    renderEvents();
  });
}

connect();
setInterval(tick, 1000);
