// The crdgate admin dashboard: polls /dashboard.json and renders it (gateway/dashboard.py).
// Everything is built with DOM calls and textContent: object names and messages are data, never markup.
"use strict";

const POLL_MS = 2000;

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "class") node.className = v; else node.setAttribute(k, v === true ? "" : String(v));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function fill(tbody, rows, empty, columns) {
  tbody.replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", {class: "muted", colspan: columns}, empty))]));
}

function pill(text, tone) {
  return el("span", {class: "pill " + tone}, text);
}

const STATE_TONE = {Ready: "ok", Pending: "warn", Error: "bad"};

function num(v, digits) {
  return v === null || v === undefined ? "–" : v.toFixed(digits);
}

function ms(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const v = seconds * 1000;
  return (v < 10 ? v.toFixed(2) : v < 100 ? v.toFixed(1) : v.toFixed(0)) + " ms";
}

function ago(unixSeconds, now) {
  if (!unixSeconds) return "never";
  const s = Math.max(0, Math.round(now - unixSeconds));
  if (s < 60) return s + " s ago";
  if (s < 3600) return Math.floor(s / 60) + " min ago";
  if (s < 86400) return Math.floor(s / 3600) + " h ago";
  return Math.floor(s / 86400) + " d ago";
}

function facts(dl, pairs) {
  dl.replaceChildren(...pairs.flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));
}

function renderHeader(d) {
  const ready = document.getElementById("ready");
  ready.replaceWith(Object.assign(
    pill(d.draining ? "draining" : d.ready ? "ready" : "not ready", d.ready ? "ok" : "bad"), {id: "ready"}));
  document.getElementById("generation").textContent = d.table.generation ?? "–";
  document.getElementById("route-count").textContent = d.table.routes;
  const swapped = document.getElementById("swapped");
  swapped.textContent = ago(d.table.swappedAt, d.now);
  if (d.table.swappedAt) swapped.title = new Date(d.table.swappedAt * 1000).toISOString();
  const counts = (d.controller && d.controller.objectCounts) || {};
  document.getElementById("object-counts").textContent =
    ["Ready", "Pending", "Error"].map((s) => (counts[s] || 0) + " " + s).join(" · ");
  if (d.workers) {
    // --workers: traffic is added up over the workers; the table and objects are the first worker's.
    document.getElementById("workers-label").hidden = false;
    const w = document.getElementById("workers");
    w.hidden = false;
    w.textContent = d.workers.answered + " of " + d.workers.total + " answering";
  }
  const updated = document.getElementById("updated");
  updated.textContent = "updated " + new Date(d.now * 1000).toLocaleTimeString();
  updated.className = "muted";
}

function renderProblems(d) {
  const items = d.loadErrors.map((e) => el("li", {class: "mono"}, e.text || e.message));
  const c = d.controller || {};
  if (c.compileFailures) items.push(el("li", {}, c.compileFailures + " compile(s) failed: the last good table keeps serving (see the log)"));
  if (d.certificates) for (const e of d.certificates.errors) items.push(el("li", {}, "TLS " + e.host + ": " + e.error));
  document.getElementById("problems").replaceChildren(...items);
  document.getElementById("problems-section").hidden = items.length === 0;
}

function renderRoutes(d) {
  const rows = d.routes.shown.map((r) => {
    const backends = r.backends.map((b) => el("div", {},
      el("span", {class: "mono"}, b.backend), " ",
      pill(b.state + (b.state === "Ready" ? " · " + b.endpoints : ""), b.state === "Ready" ? "ok" : "bad"),
      b.weight !== 1 ? el("span", {class: "muted"}, " weight " + b.weight) : null));
    const policies = Object.keys(r.policies).filter((k) => k !== "timeouts");
    return el("tr", {"data-route": r.name, "data-path": r.path},
      el("td", {class: "num"}, r.fallback ? "default" : r.priority),
      el("td", {class: "mono"}, r.hosts.length ? r.hosts.join(", ") : "*"),
      el("td", {class: "mono"}, r.methods ? r.methods.join(", ") : "any"),
      el("td", {}, el("span", {class: "mono"}, r.path), " ", el("span", {class: "muted"}, r.pathType)),
      el("td", {}, el("span", {class: "muted"}, r.kind + " "), el("span", {class: "mono"}, r.name),
        r.rule ? el("span", {class: "muted"}, " " + r.rule) : null),
      el("td", {}, backends.length ? backends : el("span", {class: "muted"}, "none")),
      el("td", {class: "muted"}, policies.join(", ")));
  });
  fill(document.querySelector("#routes tbody"), rows, "no routes", 7);
  const more = document.getElementById("routes-more");
  more.hidden = !d.routes.more;
  more.textContent = d.routes.more ? "… and " + d.routes.more + " more (all of them at /routes)" : "";
}

function renderTraffic(d) {
  const t = d.traffic;
  document.getElementById("window").textContent = "by route (source object)" +
    (t.windowSeconds ? ", over the last " + Math.round(t.windowSeconds) + " s" : ", rates after the next poll");
  const rows = t.routes.map((r) => el("tr", {"data-route": r.route},
    el("td", {class: "mono"}, r.route === "-" ? "- (no route matched)" : r.route),
    el("td", {class: "num"}, num(r.rate, 2)),
    el("td", {class: "num"}, num(r.errorRate, 2)),
    el("td", {class: "num" + (r.errorRatio > 0.01 ? " problem" : "")}, r.errorRatio === null ? "–" : (r.errorRatio * 100).toFixed(1)),
    el("td", {class: "num"}, ms(r.latency.p50)),
    el("td", {class: "num"}, ms(r.latency.p95)),
    el("td", {class: "num"}, ms(r.latency.p99)),
    el("td", {class: "num"}, r.requests)));
  fill(document.querySelector("#traffic tbody"), rows, "no requests yet", 8);
}

function renderObjects(d) {
  const rows = d.objects.map((o) => el("tr", {"data-object": o.kind + ":" + o.namespace + "/" + o.name},
    el("td", {class: "muted"}, o.kind),
    el("td", {}, el("span", {class: "mono"}, (o.namespace ? o.namespace + "/" : "") + o.name),
      o.origin ? el("div", {class: "muted mono"}, o.origin) : null),
    el("td", {}, pill(o.state, STATE_TONE[o.state] || "none")),
    el("td", {}, o.reason),
    el("td", {}, o.message),
    el("td", {}, o.conditions.map((c) => el("span", {class: "cond"},
      pill(c.type, c.status === "True" ? "ok" : c.status === "False" ? "bad" : "none"), " ", c.reason)))));
  fill(document.querySelector("#objects tbody"), rows, "no objects (or no controller in this process)", 6);
}

function renderUpstreams(d) {
  const rows = [];
  for (const b of d.upstreams.backends) {
    const tone = b.state === "Ready" ? "ok" : "bad";
    if (!b.endpoints.length) {
      rows.push(el("tr", {}, el("td", {class: "mono"}, b.backend), el("td", {}, pill(b.state, tone)),
        el("td", {class: "muted", colspan: 6}, "no endpoints")));
    }
    b.endpoints.forEach((e, i) => rows.push(el("tr", {"data-endpoint": e.address},
      el("td", {class: "mono"}, i === 0 ? b.backend : ""),
      el("td", {}, i === 0 ? pill(b.state, tone) : ""),
      el("td", {class: "mono"}, (e.tls ? "https://" : "") + e.address),
      el("td", {}, e.ejected ? pill("ejected, " + Math.ceil(e.ejectedForSeconds) + " s left", "bad") : pill("in rotation", "ok")),
      el("td", {class: "num"}, e.failures), el("td", {class: "num"}, e.ejections),
      el("td", {class: "num"}, e.active), el("td", {class: "num"}, e.idle))));
  }
  if (d.upstreams.more) rows.push(el("tr", {}, el("td", {class: "muted", colspan: 8}, "… and " + d.upstreams.more + " more rows not shown")));
  fill(document.querySelector("#upstreams tbody"), rows, "no backends", 8);
}

function renderFacts(d) {
  const rl = d.rateLimit;
  facts(document.getElementById("ratelimit"), rl ? [
    ["local keys", rl.localKeys + (rl.maxKeys ? " of " + rl.maxKeys : "")],
    ["evicted (store full)", rl.evictions],
  ] : [["store", "none"]]);
  const c = d.controller || {};
  facts(document.getElementById("controller"), [
    ["full/incremental compiles", c.compiles ?? "–"],
    ["endpoint-only updates", c.endpointUpdates ?? "–"],
    ["failed compiles", c.compileFailures ?? "–"],
    ["load errors", d.loadErrors.length],
  ]);
}

function renderCertificates(d) {
  const certs = d.certificates;
  if (!certs) {
    fill(document.querySelector("#certificates tbody"), [], "no TLS listener (--listen-tls)", 5);
    return;
  }
  const rows = certs.serving.map((c) => {
    let expiry = el("span", {class: "problem"}, c.error || "unknown");
    if (c.notAfterUnix) {
      const days = Math.floor((c.notAfterUnix - d.now) / 86400);
      const tone = days < 0 ? "bad" : days < 14 ? "warn" : "ok";
      expiry = el("span", {}, c.notAfter.slice(0, 10) + " ", pill(days < 0 ? "expired" : days + " days left", tone));
    }
    return el("tr", {}, el("td", {class: "mono"}, c.host === "*" ? "* (default)" : c.host),
      el("td", {}, c.source), el("td", {class: "mono"}, (c.dnsNames || []).join(", ")),
      el("td", {class: "muted"}, c.issuer || ""), el("td", {}, expiry));
  });
  fill(document.querySelector("#certificates tbody"), rows, "no certificates", 5);
}

async function poll() {
  try {
    const response = await fetch("/dashboard.json", {cache: "no-store"});
    if (!response.ok) throw new Error("HTTP " + response.status);
    const d = await response.json();
    for (const render of [renderHeader, renderProblems, renderRoutes, renderTraffic, renderObjects,
      renderUpstreams, renderFacts, renderCertificates]) render(d);
    document.body.dataset.generation = String(d.table.generation);
  } catch (err) {
    const updated = document.getElementById("updated");
    updated.textContent = "gateway unreachable (" + err.message + "), retrying";
    updated.className = "problem";
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
