// netmon dashboard. Reads only the JSON API (/api/v1/*) and the live
// stream; renders with uPlot (vendored, MIT). No framework, no build step.
"use strict";
(function () {
  const $ = (sel) => document.querySelector(sel);
  const COLORS = ["#1f5fbf", "#d1495b", "#2a9d8f", "#e9a23b", "#6a4c93", "#6c757d", "#3d8b37"];
  const DASHES = [[], [6, 3], [2, 2], [8, 3, 2, 3], [1, 3], [10, 4], [4, 4]];
  const state = { range: { since: "1h", until: null, label: "1 h" }, topRows: [], sort: { col: "share", dir: -1 }, charts: {}, live: null,
    lan: [], devRows: [], devSort: { col: "total", dir: -1 }, device: null };

  // ---- formatting (binary units) ----
  const { bytes, rate } = window.netmonFormat; // format.js
  const pct = (f) => (100 * f).toFixed(1) + " %";
  function localAndUtc(sec) {
    const d = new Date(sec * 1000);
    return d.toLocaleString() + " (" + d.toISOString().replace("T", " ").slice(0, 19) + " UTC)";
  }
  function ago(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 90) return s + " s";
    if (s < 5400) return Math.round(s / 60) + " min";
    if (s < 172800) return Math.round(s / 3600) + " h";
    return Math.round(s / 86400) + " d";
  }

  // ---- errors and API ----
  function showError(msg) {
    const e = $("#error");
    e.textContent = msg;
    e.hidden = !msg;
  }
  class AuthNeeded extends Error {}
  async function api(path) {
    const r = await fetch(path, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (r.status === 401) { showLogin(true); throw new AuthNeeded("login needed"); }
    let body = null;
    try { body = await r.json(); } catch (_) { body = null; }
    if (!r.ok) {
      const m = body && body.error ? body.error.message : r.statusText;
      throw new Error(path.split("?")[0] + ": " + m);
    }
    return body;
  }
  function q(params) {
    const u = new URLSearchParams();
    for (const [k, v] of params) if (v != null && v !== "") u.append(k, v);
    return u.toString();
  }
  function windowParams() {
    const p = [["since", state.range.since]];
    if (state.range.until) p.push(["until", state.range.until]);
    return p;
  }
  function guard(p) {
    return p.catch((e) => { if (!(e instanceof AuthNeeded)) showError(e.message); });
  }

  // ---- login ----
  function showLogin(on) {
    $("#login").hidden = !on;
    if (on) $("#token").focus();
  }
  $("#login-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const r = await fetch("/api/v1/login", {
      method: "POST", credentials: "same-origin",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ token: $("#token").value }),
    });
    if (r.ok) {
      $("#token").value = "";
      showLogin(false);
      showError("");
      $("#logout").hidden = false;
      start();
    } else {
      let m = r.statusText;
      try { m = (await r.json()).error.message; } catch (_) { /* keep the status text */ }
      showError("Login failed: " + m);
    }
  });
  $("#logout").addEventListener("click", async () => {
    await fetch("/api/v1/logout", { method: "POST", credentials: "same-origin" });
    location.reload();
  });

  // ---- charts ----
  function width(el) { return Math.max(280, el.clientWidth || 600); }
  function axes(label) {
    return [
      {},
      { label, size: 80, values: (u, ticks) => ticks.map(rate) },
    ];
  }
  function chart(key, el, seriesDefs, data, label) {
    if (state.charts[key]) { state.charts[key].destroy(); }
    const opts = {
      width: width(el), height: 240,
      series: [{ label: "time", value: (u, v) => (v == null ? "–" : localAndUtc(v)) }].concat(seriesDefs),
      axes: axes(label),
      scales: { x: { time: true } },
      legend: { live: true },
    };
    el.textContent = "";
    state.charts[key] = new uPlot(opts, data, el);
    return state.charts[key];
  }
  window.addEventListener("resize", () => {
    for (const [key, c] of Object.entries(state.charts)) {
      const el = document.getElementById(key);
      if (el) c.setSize({ width: width(el), height: 240 });
    }
  });

  // ---- header ----
  async function refreshStatus() {
    const s = await api("/api/v1/status");
    $("#host").textContent = "on " + s.host;
    state.lan = s.lan_interfaces || [];
    const last = s.latest_sample_unix_ms ? "last drain " + ago(Date.now() - s.latest_sample_unix_ms) + " ago" : "no drain yet";
    $("#daemon").textContent = "v" + s.version + ", " + s.source + ", up " + ago(s.uptime_ms) + ", every " + (s.interval_ms / 1000) + " s, " + last;
    if (s.kernel) {
      const fill = Math.max(0, ...s.kernel.maps.map((m) => m.fill));
      $("#kernel").textContent = (s.kernel.loaded ? "loaded" : "NOT loaded") + ", maps " + pct(fill) + " full, " + s.kernel.overflow.failed_inserts + " drops";
    } else {
      $("#kernel").textContent = s.kernel_error ? "unreadable: " + s.kernel_error : s.source + " source (no kernel maps)";
    }
    const midnight = new Date(); midnight.setHours(0, 0, 0, 0);
    const u = await api("/api/v1/usage?" + q([["since", midnight.toISOString()], ["by", "class"]]));
    $("#today").textContent = u.rows.length === 0 ? "nothing yet" :
      u.rows.map((r) => r.class + " ↑" + bytes(r.tx.payload_bytes) + " ↓" + bytes(r.rx.payload_bytes)).join(" · ");
  }

  // ---- live ----
  const LIVE_POINTS = 300, LIVE_SERIES = 5;
  function startLive() {
    if (state.live) state.live.close();
    const el = $("#live-chart");
    const times = [], per = new Map();
    let names = [];
    let updates = 0;
    const es = new EventSource("/api/v1/live?by=app");
    state.live = es;
    function build() {
      const defs = [], data = [times];
      names.forEach((n, i) => {
        const c = COLORS[i % COLORS.length];
        defs.push({ label: n + " sent", stroke: c, width: 2, value: (u, v) => (v == null ? "–" : rate(v)) });
        defs.push({ label: n + " received", stroke: c, width: 2, dash: [6, 4], value: (u, v) => (v == null ? "–" : rate(v)) });
        const s = per.get(n);
        data.push(s.tx, s.rx);
      });
      chart("live-chart", el, defs, data, "bytes/s (binary units)");
    }
    es.onmessage = (ev) => {
      const doc = JSON.parse(ev.data);
      updates++;
      times.push(doc.taken_at_unix_ms / 1000);
      let totTx = 0, totRx = 0;
      const seen = new Set();
      for (const r of doc.rows) {
        totTx += r.tx_bytes_per_sec; totRx += r.rx_bytes_per_sec;
        if (!per.has(r.key)) per.set(r.key, { tx: new Array(times.length - 1).fill(null), rx: new Array(times.length - 1).fill(null) });
        const s = per.get(r.key);
        s.tx.push(r.tx_bytes_per_sec); s.rx.push(r.rx_bytes_per_sec);
        seen.add(r.key);
      }
      for (const [k, s] of per) if (!seen.has(k)) { s.tx.push(0); s.rx.push(0); }
      if (times.length > LIVE_POINTS) { times.shift(); for (const s of per.values()) { s.tx.shift(); s.rx.shift(); } }
      const top = doc.rows.slice(0, LIVE_SERIES).map((r) => r.key);
      const want = names.filter((n) => per.has(n)).concat(top.filter((n) => !names.includes(n))).slice(0, Math.max(LIVE_SERIES, names.length));
      if (!state.charts["live-chart"] || want.join("\u0000") !== names.join("\u0000")) { names = want; build(); }
      else state.charts["live-chart"].setData([times].concat(names.flatMap((n) => [per.get(n).tx, per.get(n).rx])));
      $("#rate-now").textContent = "↑ " + rate(totTx) + "  ↓ " + rate(totRx);
      el.dataset.updates = String(updates);
      el.dataset.lastRate = String(totTx + totRx);
      const body = $("#live-table tbody");
      body.textContent = "";
      for (const r of doc.rows.slice(0, 20)) {
        body.append(tr([cell(r.key), num(rate(r.tx_bytes_per_sec), r.tx_bytes_per_sec), num(rate(r.rx_bytes_per_sec), r.rx_bytes_per_sec)]));
      }
    };
    es.onerror = () => {
      if (es.readyState === EventSource.CLOSED) showError("The live stream closed; reload the page to reconnect.");
    };
  }

  // ---- tables ----
  function cell(text, cls) { const td = document.createElement("td"); td.textContent = text == null ? "–" : text; if (cls) td.className = cls; return td; }
  function num(text, value) { const td = cell(text, "num"); td.dataset.value = String(value); return td; }
  function tr(cells) { const r = document.createElement("tr"); r.append(...cells); return r; }
  function fillPairs(sel, rows, label) {
    const body = $(sel + " tbody");
    body.textContent = "";
    for (const r of rows) body.append(tr([cell(label(r)), num(bytes(r.tx.payload_bytes), r.tx.payload_bytes), num(bytes(r.rx.payload_bytes), r.rx.payload_bytes)]));
    if (rows.length === 0) body.append(tr([cell("nothing in this window")]));
  }

  // ---- history (stacked) ----
  async function refreshHistory() {
    const by = $("#history-by").value, dir = $("#history-dir").value;
    const groups = await api("/api/v1/usage?" + q(windowParams().concat([["by", by], ["limit", "6"]])));
    const names = groups.rows.map((r) => (by === "app" ? r.app : r.class));
    const total = await api("/api/v1/history?" + q(windowParams()));
    const parts = await Promise.all(names.map((n) => api("/api/v1/history?" + q(windowParams().concat([[by, n]])))));
    const stepS = total.step_ms / 1000;
    // A step with no data is null in the document: it adds nothing to a stack.
    const pb = (c) => (c ? c.payload_bytes : 0);
    const val = (p) => (dir === "tx" ? pb(p.tx) : dir === "rx" ? pb(p.rx) : pb(p.tx) + pb(p.rx));
    const times = total.points.map((p) => p.time_unix_ms / 1000);
    const series = parts.map((h, i) => ({ name: names[i], values: h.points.map(val) }));
    const other = total.points.map((p, j) => val(p) - series.reduce((a, s) => a + (s.values[j] || 0), 0));
    if (other.some((v) => v > 0)) series.push({ name: "other", values: other });
    // Stack: each band is drawn from zero to its cumulative sum, the tallest first.
    const cum = [];
    let run = times.map(() => 0);
    for (const s of series) { run = run.map((v, j) => v + (s.values[j] || 0)); cum.push(run); }
    const defs = [], data = [times];
    for (let i = series.length - 1; i >= 0; i--) {
      const c = COLORS[i % COLORS.length];
      const raw = series[i].values;
      defs.push({ label: series[i].name, stroke: c, fill: c, width: 1, dash: DASHES[i % DASHES.length],
        value: (u, v, si, idx) => (idx == null ? "–" : rate(raw[idx] / stepS)) });
      data.push(cum[i].map((v) => v / stepS));
    }
    chart("history-chart", $("#history-chart"), defs, data, "bytes/s (binary units)");
    $("#history-note").textContent = "Window " + state.range.label + ", one point per " + (stepS >= 60 ? stepS / 60 + " min" : stepS + " s") + " (" + total.tier + " tier), stacked by " + (by === "app" ? "application" : "class") + ". Total ↑" + bytes(total.total.tx.payload_bytes) + " ↓" + bytes(total.total.rx.payload_bytes) + ".";
    const head = $("#history-table thead"), body = $("#history-table tbody");
    head.textContent = ""; body.textContent = "";
    head.append(tr(["Group", "Bytes in window"].map((t) => { const th = document.createElement("th"); th.scope = "col"; th.textContent = t; return th; })));
    for (const s of series) { const b = s.values.reduce((a, v) => a + v, 0); body.append(tr([cell(s.name), num(bytes(b), b)])); }
  }

  // ---- top table ----
  function rowName(r) { return r.comm != null ? r.comm : r.app != null ? r.app : r.key; }
  function sortValue(r, col) {
    switch (col) {
      case "name": return rowName(r).toLowerCase();
      case "pid": return r.pid == null ? -1 : r.pid;
      case "exe": return r.exe || "";
      case "user": return r.user || "";
      case "container": return r.container || "";
      case "tx": return r.tx.payload_bytes;
      case "rx": return r.rx.payload_bytes;
      default: return r.share;
    }
  }
  function renderTop() {
    const f = $("#top-filter").value.trim().toLowerCase();
    const { col, dir } = state.sort;
    const rows = state.topRows
      .filter((r) => !f || [rowName(r), r.exe, r.user, r.container, r.app, String(r.pid == null ? "" : r.pid)].some((v) => v && String(v).toLowerCase().includes(f)))
      .sort((a, b) => { const x = sortValue(a, col), y = sortValue(b, col); return (x < y ? -1 : x > y ? 1 : 0) * dir; });
    for (const th of document.querySelectorAll("#top-table th")) th.setAttribute("aria-sort", th.dataset.col === col ? (dir > 0 ? "ascending" : "descending") : "none");
    const body = $("#top-table tbody");
    body.textContent = "";
    for (const r of rows) {
      const open = document.createElement("button");
      open.type = "button"; open.className = "open"; open.textContent = rowName(r);
      open.setAttribute("aria-label", "Details of " + rowName(r));
      open.addEventListener("click", () => guard(drill(r)));
      const name = document.createElement("td"); name.append(open);
      const row = tr([name, cell(r.pid), cell(r.exe, "exe"), cell(r.user), cell(r.container, "container"),
        num(bytes(r.tx.payload_bytes), r.tx.payload_bytes), num(bytes(r.rx.payload_bytes), r.rx.payload_bytes), num(pct(r.share), r.share)]);
      row.dataset.key = r.key;
      body.append(row);
    }
    $("#top-count").textContent = rows.length + " of " + state.topRows.length + " shown";
  }
  async function refreshTop() {
    const u = await api("/api/v1/usage?" + q(windowParams().concat([["by", $("#top-by").value], ["limit", "500"]])));
    state.topRows = u.rows;
    const t = $("#top-table");
    t.dataset.by = u.by;
    t.dataset.loads = String(Number(t.dataset.loads || 0) + 1);
    renderTop();
  }
  for (const th of document.querySelectorAll("#top-table th")) {
    th.querySelector("button").addEventListener("click", () => {
      const col = th.dataset.col;
      state.sort = { col, dir: state.sort.col === col ? -state.sort.dir : (["tx", "rx", "share", "pid"].includes(col) ? -1 : 1) };
      renderTop();
    });
  }
  $("#top-filter").addEventListener("input", renderTop);
  $("#top-by").addEventListener("change", () => guard(refreshTop()));

  // ---- drill-down ----
  async function drill(r) {
    const sel = r.pid != null ? ["pid", r.pid + ":" + r.start_ticks] : ["app", r.app != null ? r.app : r.key];
    const title = r.pid != null ? rowName(r) + " (pid " + r.pid + ")" : "app " + sel[1];
    const d = $("#drill");
    d.hidden = false;
    $("#drill-h").textContent = "Details: " + title;
    const filter = ["filter", sel[0] + "=" + sel[1]];
    const [h, remotes, ports, domains, services] = await Promise.all([
      api("/api/v1/history?" + q(windowParams().concat([sel]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "remote"], filter, ["limit", "20"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "port"], filter, ["limit", "20"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "domain"], filter, ["limit", "20"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "service"], filter, ["limit", "20"]]))),
    ]);
    const stepS = h.step_ms / 1000;
    chart("drill-chart", $("#drill-chart"), [
      { label: "sent", stroke: COLORS[0], width: 2, value: (u, v) => (v == null ? "–" : rate(v)) },
      { label: "received", stroke: COLORS[1], width: 2, dash: [6, 4], value: (u, v) => (v == null ? "–" : rate(v)) },
    ], [h.points.map((p) => p.time_unix_ms / 1000), h.points.map((p) => (p.tx ? p.tx.payload_bytes / stepS : null)), h.points.map((p) => (p.rx ? p.rx.payload_bytes / stepS : null))], "bytes/s (binary units)");
    fillPairs("#drill-remotes", remotes.rows, remoteName);
    fillPairs("#drill-ports", ports.rows, (x) => x.protocol + "/" + (x.service_port ?? x.remote_port) + (x.direction ? " " + x.direction : ""));
    fillPairs("#drill-domains", domains.rows, (x) => x.domain ?? x.comm ?? "[no name]");
    fillPairs("#drill-services", services.rows, (x) => x.service ?? x.comm ?? "[no name]");
    d.dataset.key = r.key;
    d.focus();
    // Sockets now: a process's live sockets (apps have no single owner).
    $("#drill-sockets-wrap").hidden = r.pid == null;
    state.drillPid = r.pid != null ? r.pid + ":" + r.start_ticks : null;
    if (state.drillPid) await refreshSockets(state.drillPid, r.key);
  }
  // A remote host with its busiest server name, if it has one.
  function remoteName(x) { return x.remote_addr != null && x.server_name ? x.remote_addr + " (" + x.server_name + ")" : x.remote_addr; }
  function endpoint(addr, port) { return (String(addr).includes(":") ? "[" + addr + "]" : addr) + ":" + port; }
  async function refreshSockets(pid, key) {
    const s = await api("/api/v1/sockets?" + q([["pid", pid], ["limit", "50"]]));
    if ($("#drill").dataset.key !== key) return; // another drill-down opened meanwhile
    const body = $("#drill-sockets tbody");
    body.textContent = "";
    for (const x of s.rows) {
      const rtt = x.tcp && x.tcp.srtt_us != null ? (x.tcp.srtt_us / 1000).toFixed(2) + " ms" : "–";
      const state = (x.closed ? "closed" : "open") + (x.tcp ? ", " + x.tcp.retrans_segs + " retrans" : "");
      const row = tr([cell(x.protocol), cell(endpoint(x.local_addr, x.local_port)), cell(endpoint(x.remote_addr, x.remote_port) + (x.server_name ? " (" + x.server_name + ")" : "")), cell(state),
        num(rtt, x.tcp && x.tcp.srtt_us != null ? x.tcp.srtt_us : ""), num(bytes(x.tx.payload_bytes), x.tx.payload_bytes), num(bytes(x.rx.payload_bytes), x.rx.payload_bytes)]);
      row.dataset.cookie = String(x.cookie);
      body.append(row);
    }
    if (s.rows.length === 0) body.append(tr([cell("no sockets now")]));
    $("#drill-sockets-note").textContent = "(" + s.sockets_total + " at " + new Date(s.taken_at_unix_ms).toLocaleTimeString() + (s.sockets_total > s.rows.length ? ", busiest " + s.rows.length + " shown" : "") + ")";
    $("#drill-sockets").dataset.takenAt = String(s.taken_at_unix_ms);
  }
  $("#drill-close").addEventListener("click", () => { $("#drill").hidden = true; $("#top-section").focus(); });

  // ---- where ----
  async function refreshWhere() {
    const [cls, remotes, ports, domains, services] = await Promise.all([
      api("/api/v1/usage?" + q(windowParams().concat([["by", "class"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "remote"], ["limit", "20"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "port"], ["limit", "20"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "domain"], ["limit", "20"]]))),
      api("/api/v1/usage?" + q(windowParams().concat([["by", "service"], ["limit", "20"]]))),
    ]);
    const body = $("#class-table tbody");
    body.textContent = "";
    for (const r of cls.rows) {
      const share = document.createElement("td");
      const wrap = document.createElement("span"); wrap.className = "share";
      const fill = document.createElement("span"); fill.className = "fill"; fill.style.width = Math.round(r.share * 60) + "px";
      const txt = document.createElement("span"); txt.textContent = pct(r.share);
      wrap.append(fill, txt); share.append(wrap);
      body.append(tr([cell(r.class), num(bytes(r.tx.payload_bytes), r.tx.payload_bytes), num(bytes(r.rx.payload_bytes), r.rx.payload_bytes), share]));
    }
    fillPairs("#remotes-table", remotes.rows, remoteName);
    fillPairs("#ports-table", ports.rows, (x) => x.protocol + "/" + (x.service_port ?? x.remote_port) + (x.direction ? " " + x.direction : ""));
    fillPairs("#domains-table", domains.rows, (x) => x.domain ?? x.comm ?? "[no name]");
    fillPairs("#services-table", services.rows, (x) => x.service ?? x.comm ?? "[no name]");
  }

  // ---- devices (LAN interfaces) ----
  const DEV_CLASSES = ["host", "forwarded_local", "forwarded_internet", "not_ip", "total"];
  function devName(r) { return r.device === "overflow" ? "overflow (devices the full map could not hold)" : (r.name || r.device); }
  function devTotal(r) { return r.tx.total.frame_bytes + r.rx.total.frame_bytes; }
  function devSortValue(r, col) {
    if (col === "name") return devName(r).toLowerCase();
    if (col === "mac") return r.macs.join(",");
    if (col === "addr") return r.addresses.join(",");
    if (col === "total") return devTotal(r);
    const [dir, cls] = col.split(".");
    return r[dir][cls].frame_bytes;
  }
  function renderDevices() {
    const { col, dir } = state.devSort;
    const rows = state.devRows.slice().sort((a, b) => {
      const x = devSortValue(a, col), y = devSortValue(b, col);
      return (x < y ? -1 : x > y ? 1 : 0) * dir || (a.device < b.device ? -1 : 1);
    });
    for (const th of document.querySelectorAll("#devices-table th[data-col]")) th.setAttribute("aria-sort", th.dataset.col === col ? (dir > 0 ? "ascending" : "descending") : "none");
    const body = $("#devices-table tbody");
    body.textContent = "";
    for (const r of rows) {
      const name = document.createElement("td");
      if (r.device === "overflow") {
        name.textContent = devName(r);
      } else {
        const open = document.createElement("button");
        open.type = "button"; open.className = "open"; open.textContent = devName(r);
        open.setAttribute("aria-label", "History of " + devName(r));
        open.addEventListener("click", () => guard(deviceHistory(r)));
        name.append(open);
      }
      if (r.group) { const t = document.createElement("span"); t.className = "tag"; t.textContent = "broadcast/multicast"; name.append(t); }
      const mac = cell(r.macs.length ? r.macs.join(", ") : "–", "mac");
      if (r.randomised) { const t = document.createElement("span"); t.className = "tag"; t.textContent = "randomised"; t.title = "locally administered address"; mac.append(t); }
      const cells = [name, mac, cell(r.addresses.length ? r.addresses.join(", ") : "–", "addr")];
      for (const d of ["tx", "rx"]) for (const c of DEV_CLASSES) cells.push(num(bytes(r[d][c].frame_bytes), r[d][c].frame_bytes));
      const row = tr(cells);
      row.dataset.device = r.device;
      row.dataset.randomised = String(r.randomised);
      body.append(row);
    }
  }
  async function refreshDevices() {
    const d = await api("/api/v1/devices?" + q(windowParams()));
    state.devRows = d.devices;
    const off = state.lan.length === 0 && d.devices.length === 0;
    $("#devices-off").hidden = !off;
    $("#devices-wrap").hidden = off;
    $("#devices-note").textContent = (state.lan.length ? "LAN interfaces: " + state.lan.join(", ") : "No LAN interface is configured now; these devices are from the history") +
      ". Window " + state.range.label + ": " + d.devices.length + " device row" + (d.devices.length === 1 ? "" : "s") + (d.exact ? "." : " (the rows read cover a wider window than asked).");
    renderDevices();
    const t = $("#devices-table");
    t.dataset.loads = String(Number(t.dataset.loads || 0) + 1);
    if (state.device && !$("#device-detail").hidden) {
      const again = d.devices.find((r) => r.device === state.device);
      if (again) await deviceHistory(again);
    }
  }
  for (const th of document.querySelectorAll("#devices-table th[data-col]")) {
    th.querySelector("button").addEventListener("click", () => {
      const col = th.dataset.col;
      const numeric = !["name", "mac", "addr"].includes(col);
      state.devSort = { col, dir: state.devSort.col === col ? -state.devSort.dir : (numeric ? -1 : 1) };
      renderDevices();
    });
  }
  async function deviceHistory(r) {
    state.device = r.device;
    const box = $("#device-detail");
    box.hidden = false;
    $("#device-h").textContent = "History: " + devName(r);
    const h = await api("/api/v1/devices/history?" + q(windowParams().concat([["device", r.device]])));
    if (state.device !== r.device) return; // another device opened meanwhile
    const stepS = h.step_ms / 1000;
    // Every step of the window, zero where the device moved nothing.
    const at = new Map(h.points.map((p) => [p.start_unix_ms, p]));
    const times = [], tx = [], rx = [];
    for (let t = h.from_unix_ms; t < h.until_unix_ms; t += h.step_ms) {
      const p = at.get(t);
      times.push(t / 1000);
      tx.push(p ? p.tx.total.frame_bytes / stepS : 0);
      rx.push(p ? p.rx.total.frame_bytes / stepS : 0);
    }
    chart("device-chart", $("#device-chart"), [
      { label: "sent", stroke: COLORS[0], width: 2, value: (u, v) => (v == null ? "–" : rate(v)) },
      { label: "received", stroke: COLORS[1], width: 2, dash: [6, 4], value: (u, v) => (v == null ? "–" : rate(v)) },
    ], [times, tx, rx], "bytes/s (binary units)");
    const el = $("#device-chart");
    el.dataset.device = r.device;
    el.dataset.txBytes = String(h.points.reduce((a, p) => a + p.tx.total.frame_bytes, 0));
    el.dataset.rxBytes = String(h.points.reduce((a, p) => a + p.rx.total.frame_bytes, 0));
    el.dataset.points = String(times.length);
  }
  $("#device-close").addEventListener("click", () => { $("#device-detail").hidden = true; state.device = null; });

  // ---- window controls ----
  function refreshWindow() {
    showError("");
    return Promise.all([guard(refreshHistory()), guard(refreshTop()), guard(refreshWhere()), guard(refreshDevices())]);
  }
  for (const b of document.querySelectorAll("#ranges button")) {
    b.addEventListener("click", () => {
      for (const o of document.querySelectorAll("#ranges button")) o.setAttribute("aria-pressed", String(o === b));
      state.range = { since: b.dataset.range, until: null, label: b.textContent };
      refreshWindow();
    });
  }
  $("#custom-apply").addEventListener("click", () => {
    const from = $("#custom-from").value, to = $("#custom-to").value;
    if (!from) { showError("Choose a start for the custom range."); return; }
    for (const o of document.querySelectorAll("#ranges button")) o.setAttribute("aria-pressed", "false");
    const since = new Date(from).toISOString(), until = to ? new Date(to).toISOString() : null;
    state.range = { since, until, label: new Date(from).toLocaleString() + " – " + (to ? new Date(to).toLocaleString() : "now") };
    refreshWindow();
  });
  $("#history-by").addEventListener("change", () => guard(refreshHistory()));
  $("#history-dir").addEventListener("change", () => guard(refreshHistory()));

  // ---- start ----
  let timers = [];
  async function start() {
    for (const t of timers) clearInterval(t);
    timers = [];
    try {
      await refreshStatus();
    } catch (e) {
      if (!(e instanceof AuthNeeded)) showError(e.message);
      return;
    }
    startLive();
    await refreshWindow();
    // Time from navigation start to every view drawn (the render benchmark reads it).
    if (!document.body.dataset.readyMs) document.body.dataset.readyMs = String(Math.round(performance.now()));
    document.body.dataset.ready = "true";
    timers.push(setInterval(() => guard(refreshStatus()), 10000));
    timers.push(setInterval(() => { if (!$("#drill").hidden && state.drillPid) guard(refreshSockets(state.drillPid, $("#drill").dataset.key)); }, 5000));
    timers.push(setInterval(() => { if (!state.range.until) refreshWindow(); }, 60000));
  }
  start();
})();
