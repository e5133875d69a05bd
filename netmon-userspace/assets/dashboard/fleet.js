// netmon fleet view: the Hosts page (/hosts), from /api/v1/fleet/*, which
// the daemon answers from the configured Prometheus. On the main page it
// only shows the "Hosts" link when the fleet view is configured.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const { bytes, rate } = window.netmonFormat; // format.js
  class AuthNeeded extends Error {}
  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) throw new AuthNeeded("login needed");
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) {
      const e = new Error((body && body.error ? body.error.message : r.statusText));
      e.kind = body && body.error ? body.error.kind : "";
      throw e;
    }
    return body;
  }
  function showError(msg) { const e = $("#error"); if (!e) return; e.textContent = msg; e.hidden = !msg; }
  function cell(text, cls) { const td = document.createElement("td"); td.textContent = text == null ? "–" : text; if (cls) td.className = cls; return td; }
  function num(text, value) { const td = cell(text, "num"); td.dataset.value = String(value); return td; }
  function tr(cells) { const r = document.createElement("tr"); r.append(...cells); return r; }

  // The main page: reveal the link.
  if (!$("#hosts-table")) {
    const check = async () => {
      const link = $("#hosts-link");
      if (!link) return;
      try { const f = await api("/api/v1/fleet"); link.hidden = !f.configured; } catch (_) { /* not logged in yet */ }
    };
    document.addEventListener("DOMContentLoaded", () => {
      check();
      // Checked again when the login form closes (a login on this page).
      const login = $("#login");
      if (login) new MutationObserver(() => { if (login.hidden) check(); }).observe(login, { attributes: true, attributeFilter: ["hidden"] });
    });
    return;
  }

  let chart = null, open = null;
  const hostName = (h) => h.host || h.instance;

  async function refreshHosts() {
    const doc = await api("/api/v1/fleet/hosts");
    $("#fleet-note").textContent = doc.hosts.length + " host" + (doc.hosts.length === 1 ? "" : "s") +
      " from " + doc.prometheus + "; today since " + new Date(doc.today_start * 1000).toLocaleString() + ".";
    const body = $("#hosts-table tbody");
    body.textContent = "";
    for (const h of doc.hosts) {
      const b = document.createElement("button");
      b.type = "button"; b.className = "open"; b.textContent = hostName(h);
      b.title = h.job + " / " + h.instance;
      b.addEventListener("click", () => openHost(h));
      const name = document.createElement("td"); name.append(b);
      const status = cell(h.up ? "up" : "down", h.up ? "up" : "down");
      status.dataset.value = h.up ? "up" : "down";
      const apps = cell(h.top_apps.map((a) => a.name + " " + bytes(a.today.tx + a.today.rx)).join(", ") || "–");
      apps.dataset.apps = h.top_apps.map((a) => a.name).join(",");
      const row = tr([name, status, num(rate(h.rate.tx), h.rate.tx), num(rate(h.rate.rx), h.rate.rx),
        num(bytes(h.today.tx), h.today.tx), num(bytes(h.today.rx), h.today.rx), apps]);
      row.dataset.job = h.job; row.dataset.instance = h.instance; row.dataset.host = hostName(h);
      body.append(row);
    }
    if (!doc.hosts.length) body.append(tr([cell("No host has exported netmon metrics to this Prometheus in the last day.")]));
    const t = $("#hosts-table"); t.dataset.loads = String(Number(t.dataset.loads || 0) + 1);
  }

  async function openHost(h) {
    open = h;
    const d = $("#host-detail");
    d.hidden = false; d.dataset.key = "";
    $("#host-h").textContent = hostName(h) + " (" + h.job + ", " + h.instance + ")";
    const doc = await api("/api/v1/fleet/host?" + new URLSearchParams({ job: h.job, instance: h.instance }).toString());
    const el = $("#host-chart");
    if (chart) chart.destroy();
    el.textContent = "";
    chart = new uPlot({
      width: Math.max(280, el.clientWidth || 600), height: 240,
      series: [{ label: "time" }, { label: "sent", stroke: "#1f5fbf", points: { show: true, size: 4 }, value: (u, v) => rate(v) },
        { label: "received", stroke: "#d1495b", dash: [6, 3], points: { show: true, size: 4 }, value: (u, v) => rate(v) }],
      axes: [{}, { label: "bytes/s (24 h)", size: 80, values: (u, ticks) => ticks.map(rate) }],
      scales: { x: { time: true } },
    }, [doc.t, doc.tx, doc.rx], el);
    el.dataset.points = String(doc.t.length);
    const last = doc.tx.filter((v) => v != null);
    el.dataset.lastTx = last.length ? String(last[last.length - 1]) : "";
    const fill = (sel, rows, rates) => {
      const b = $(sel + " tbody"); b.textContent = "";
      for (const r of rows) {
        const cells = [cell(r.name), num(bytes(r.today.tx), r.today.tx), num(bytes(r.today.rx), r.today.rx)];
        if (rates) cells.push(num(rate(r.rate.tx), r.rate.tx), num(rate(r.rate.rx), r.rate.rx));
        const row = tr(cells); row.dataset.key = r.name; b.append(row);
      }
    };
    fill("#host-apps", doc.apps, true);
    fill("#host-classes", doc.classes, false);
    d.dataset.key = h.job + "/" + h.instance;
    d.focus();
  }

  async function refresh() {
    try {
      await refreshHosts();
      if (open) await openHost(open);
      showError("");
    } catch (e) {
      if (e instanceof AuthNeeded) { $("#login-needed").hidden = false; }
      else showError(e.kind === "fleet_off" ? e.message : "Hosts: " + e.message);
    }
    document.body.dataset.ready = "true";
  }
  document.addEventListener("DOMContentLoaded", () => {
    $("#host-close").addEventListener("click", () => { open = null; $("#host-detail").hidden = true; });
    refresh();
    setInterval(refresh, 30000);
  });
})();
