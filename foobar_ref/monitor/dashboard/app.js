// The live dashboard: asks the monitor's Prometheus-compatible API every few seconds and draws
// tables and uPlot charts.  No framework, no network beyond the monitor.
"use strict";

const REFRESH_MS = 5000;
const WINDOW = "1m"; // rate() window of the tables and charts
const CHART_SECONDS = 15 * 60;
const MAX_POINTS = 180; // steps per chart: 5 s steps over 15 minutes
const FULL_RELOAD_MS = 5 * 60 * 1000;
const OVERLAP_STEPS = 2;
const COLORS = ["#2563eb", "#d97706", "#059669", "#dc2626", "#7c3aed", "#0891b2", "#db2777", "#65a30d",
                "#9333ea", "#ea580c", "#0d9488", "#4b5563"];

// user QPS where a hop counts HTTP requests apart from health checks, every request elsewhere
const QPS = `sum by (hop, host) (rate(foobar_http_requests_total[${WINDOW}]))
  or sum by (hop, host) (rate(foobar_requests_total[${WINDOW}]))`;
const quantile = (q) => `histogram_quantile(${q}, sum by (hop, host, le) (rate(foobar_http_request_duration_seconds_bucket[${WINDOW}])))
  or histogram_quantile(${q}, sum by (hop, host, le) (rate(foobar_request_seconds_bucket[${WINDOW}])))`;
const ERRORS = `sum by (hop, host) (rate(foobar_http_requests_total{code=~"5.."}[${WINDOW}]))
    / sum by (hop, host) (rate(foobar_http_requests_total[${WINDOW}]))
  or sum by (hop, host) (rate(foobar_http_requests_total[${WINDOW}])) * 0`;
// the monitor has no client of its own: its job's `up` and its process figures stand for it
const asMonitor = (expr) => `label_replace(${expr}, "hop", "monitor", "job", "monitor")`;
const QUERIES = {
  up: `max by (hop, host) (foobar_hop_up) or max by (hop, host) (${asMonitor('up{job="monitor"}')})`,
  qps: QPS,
  p50: quantile(0.5),
  p99: quantile(0.99),
  errors: ERRORS,
  cpu: `sum by (hop, host) (rate(foobar_process_cpu_seconds_total[${WINDOW}]))
    or sum by (hop, host) (${asMonitor(`rate(process_cpu_seconds_total{job="monitor"}[${WINDOW}])`)})`,
  rss: `sum by (hop, host) (foobar_process_resident_memory_bytes)
    or sum by (hop, host) (${asMonitor('process_resident_memory_bytes{job="monitor"}')})`,
  backendUp: "max by (hop, backend) (foobar_balancer_backend_up)",
  backendQps: `sum by (hop, backend) (rate(foobar_balancer_upstream_requests_total[${WINDOW}]))`,
  backendFailures: "sum by (hop, backend) (increase(foobar_balancer_backend_failures_total[5m]))",
  mysqlUp: "max by (hop, host) (mysql_up)",
  lag: "max by (hop, host) (mysql_slave_status_seconds_behind_master)",
  ioRunning: "max by (hop, host) (mysql_slave_status_slave_io_running)",
  sqlRunning: "max by (hop, host) (mysql_slave_status_slave_sql_running)",
  ruleRecent: "sum by (hop, handle, rule) (increase(foobar_firewall_rule_connections_total[5m]))",
  ruleTotal: "sum by (hop, handle, rule) (foobar_firewall_rule_connections_total)",
  fwActions: "sum by (hop, action) (increase(foobar_firewall_connections_total[5m]))",
  hostCpu: `1 - avg by (host) (rate(node_cpu_seconds_total{mode="idle"}[${WINDOW}]))`,
  hostMemory: "1 - sum by (host) (node_memory_MemAvailable_bytes) / sum by (host) (node_memory_MemTotal_bytes)",
  hostLoad: "max by (host) (node_load1)",
  hostDisk: "min by (host) (node_filesystem_avail_bytes / node_filesystem_size_bytes)",
};
const CHARTS = {
  "chart-qps": { query: `sum by (hop) (rate(foobar_http_requests_total[${WINDOW}])) or sum by (hop) (rate(foobar_requests_total[${WINDOW}]))`, key: "hop", scale: 1, unit: "/s" },
  "chart-p99": { query: quantile(0.99).replaceAll("hop, host", "hop"), key: "hop", scale: 1000, unit: " ms" },
  "chart-errors": { query: ERRORS.replaceAll("hop, host", "hop"), key: "hop", scale: 100, unit: " %" },
  "chart-cpu": { query: QUERIES.cpu.replaceAll("hop, host", "hop"), key: "hop", scale: 100, unit: " %" },
  "chart-host-cpu": { query: QUERIES.hostCpu, key: "host", scale: 100, unit: " %" },
};

let scrapeIntervalS = 5;
const charts = {};

// --- the API ---------------------------------------------------------------------------------------

async function api(path, params) {
  const url = params ? `${path}?${new URLSearchParams(params)}` : path;
  const answer = await fetch(url, { cache: "no-store" });
  const body = await answer.json();
  if (body.status !== "success") throw new Error(`${path}: ${body.errorType}: ${body.error}`);
  return body.data;
}

const instant = async (query) => (await api("/api/v1/query", { query })).result;

function keyed(result, ...labels) {
  const out = new Map();
  for (const item of result) out.set(labels.map((l) => item.metric[l] || "").join("\u0000"), Number(item.value[1]));
  return out;
}

// --- small DOM helpers -----------------------------------------------------------------------------

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value !== undefined && value !== null) node.setAttribute(name, value);
  }
  for (const child of children.flat()) {
    if (child !== undefined && child !== null) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const pill = (word, kind) => el("span", { class: `pill ${kind || word}` }, word);
const cell = (value, text) => el("td", { class: "num", "data-value": Number.isFinite(value) ? value : "" }, text);

function fill(table, head, rows, empty) {
  const body = rows.length ? rows : [el("tr", {}, el("td", { class: "empty", colspan: head.length || 1 }, empty))];
  table.replaceChildren(
    ...(head.length ? [el("thead", {}, el("tr", {}, head.map((h) => el("th", { class: h.num ? "num" : "" }, h.text || h))))] : []),
    el("tbody", {}, body),
  );
}

const finite = (v) => v !== undefined && Number.isFinite(v);
const fmt = {
  qps: (v) => (finite(v) ? (v >= 100 ? v.toFixed(0) : v.toFixed(v >= 10 ? 1 : 2)) : "—"),
  ms: (v) => (finite(v) ? `${(v * 1000).toFixed(v < 0.01 ? 2 : 1)} ms` : "—"),
  pct: (v) => (finite(v) ? `${(v * 100).toFixed(v < 0.1 ? 2 : 1)} %` : "—"),
  bytes: (v) => {
    if (!finite(v)) return "—";
    const units = ["B", "KiB", "MiB", "GiB", "TiB"];
    let i = 0;
    while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
    return `${v.toFixed(i ? 1 : 0)} ${units[i]}`;
  },
  count: (v) => (finite(v) ? Math.round(v).toLocaleString("en") : "—"),
  seconds: (v) => (finite(v) ? `${v.toFixed(0)} s` : "—"),
};

function since(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (!Number.isFinite(seconds)) return "";
  if (seconds < 90) return `${seconds.toFixed(0)} s ago`;
  if (seconds < 5400) return `${(seconds / 60).toFixed(0)} min ago`;
  return `${(seconds / 3600).toFixed(1)} h ago`;
}

// --- panels ----------------------------------------------------------------------------------------

async function hopsPanel() {
  const names = ["up", "qps", "p50", "p99", "errors", "cpu", "rss"];
  const results = await Promise.all(names.map((n) => instant(QUERIES[n])));
  const by = Object.fromEntries(names.map((n, i) => [n, keyed(results[i], "hop", "host")]));
  const keys = new Set(results.flat().filter((r) => r.metric.hop).map((r) => `${r.metric.hop}\u0000${r.metric.host || ""}`));
  const rows = [...keys].sort().map((key) => {
    const [hop, host] = key.split("\u0000");
    const up = by.up.get(key);
    const qps = by.qps.get(key);
    return el("tr", { "data-hop": hop, "data-qps": finite(qps) ? qps : "" },
      el("td", {}, el("strong", {}, hop)), el("td", {}, host),
      el("td", {}, up === undefined ? pill("unknown") : up === 1 ? pill("up") : pill("down")),
      cell(qps, fmt.qps(qps)), cell(by.p50.get(key), fmt.ms(by.p50.get(key))),
      cell(by.p99.get(key), fmt.ms(by.p99.get(key))), cell(by.errors.get(key), fmt.pct(by.errors.get(key))),
      cell(by.cpu.get(key), fmt.pct(by.cpu.get(key))), cell(by.rss.get(key), fmt.bytes(by.rss.get(key))));
  });
  const table = document.getElementById("hops");
  table.tBodies[0].replaceChildren(...(rows.length ? rows : [el("tr", {}, el("td", { colspan: 9, class: "empty" }, "no hop reported yet"))]));
}

async function alertsPanel() {
  const [{ alerts }, { groups }] = await Promise.all([api("/api/v1/alerts"), api("/api/v1/rules")]);
  const order = { firing: 0, pending: 1 };
  alerts.sort((a, b) => (order[a.state] ?? 2) - (order[b.state] ?? 2) || a.labels.alertname.localeCompare(b.labels.alertname));
  const rules = groups.flatMap((g) => g.rules).filter((r) => r.type === "alerting");
  const quiet = rules.filter((r) => r.state === "inactive").map((r) => r.name);
  const firing = alerts.filter((a) => a.state === "firing").length;
  document.getElementById("alert-count").textContent =
    `${firing} firing, ${alerts.length - firing} pending, ${rules.length} rules`;
  const box = document.getElementById("alerts");
  const table = el("table", {});
  fill(table, ["alert", "state", "since", "labels", "summary"], alerts.map((a) => {
    const labels = Object.entries(a.labels).filter(([k]) => k !== "alertname").map(([k, v]) => `${k}=${v}`).join(" ");
    return el("tr", { "data-alert": a.labels.alertname, "data-state": a.state },
      el("td", {}, el("strong", {}, a.labels.alertname)), el("td", {}, pill(a.state)),
      el("td", {}, a.activeAt ? since(a.activeAt) : ""), el("td", { class: "labels" }, labels),
      el("td", {}, (a.annotations && (a.annotations.summary || a.annotations.description)) || ""));
  }), "no alert is pending or firing");
  const rest = quiet.length ? el("p", { class: "note" }, `inactive: ${quiet.join(", ")}`) : null;
  box.replaceChildren(table, ...(rest ? [rest] : []));
}

async function backendsPanel() {
  const [up, qps, failures] = await Promise.all(["backendUp", "backendQps", "backendFailures"].map((n) => instant(QUERIES[n])));
  const q = keyed(qps, "hop", "backend");
  const f = keyed(failures, "hop", "backend");
  const rows = up.map((r) => {
    const key = `${r.metric.hop}\u0000${r.metric.backend}`;
    return el("tr", { "data-backend": r.metric.backend },
      el("td", {}, r.metric.hop), el("td", {}, el("strong", {}, r.metric.backend)),
      el("td", {}, Number(r.value[1]) === 1 ? pill("up") : pill("down")),
      cell(q.get(key), `${fmt.qps(q.get(key))}/s`), cell(f.get(key), fmt.count(f.get(key))));
  });
  fill(document.getElementById("backends"),
    ["balancer", "backend", "state", { text: "requests", num: true }, { text: "failures 5 min", num: true }],
    rows, "no balancer reported yet");
}

async function replicationPanel() {
  const names = ["mysqlUp", "lag", "ioRunning", "sqlRunning"];
  const results = await Promise.all(names.map((n) => instant(QUERIES[n])));
  const by = Object.fromEntries(names.map((n, i) => [n, keyed(results[i], "hop", "host")]));
  const keys = [...new Set(results.flat().map((r) => `${r.metric.hop}\u0000${r.metric.host || ""}`))].sort();
  const flag = (v) => (v === undefined ? "—" : v === 1 ? pill("yes", "ok") : pill("no", "down"));
  const rows = keys.map((key) => {
    const [hop, host] = key.split("\u0000");
    const replica = by.ioRunning.has(key) || by.lag.has(key);
    return el("tr", { "data-db": hop },
      el("td", {}, el("strong", {}, hop)), el("td", {}, host), el("td", {}, flag(by.mysqlUp.get(key))),
      el("td", {}, replica ? "replica" : "primary"), cell(by.lag.get(key), replica ? fmt.seconds(by.lag.get(key)) : "—"),
      el("td", {}, replica ? flag(by.ioRunning.get(key)) : "—"), el("td", {}, replica ? flag(by.sqlRunning.get(key)) : "—"));
  });
  fill(document.getElementById("replication"),
    ["database", "host", "up", "role", { text: "lag", num: true }, "IO thread", "SQL thread"], rows,
    "no database reported yet");
}

function verdict(rule) {
  const words = rule.replace(/"[^"]*"/g, "").match(/\b(accept|drop|reject)\b/g);
  return words ? words[words.length - 1] : "";
}

async function firewallsPanel() {
  const [recent, total, actions] = await Promise.all(["ruleRecent", "ruleTotal", "fwActions"].map((n) => instant(QUERIES[n])));
  const totals = keyed(total, "hop", "handle");
  const perAction = keyed(actions, "hop", "action");
  const hops = [...new Set([...total, ...actions].map((r) => r.metric.hop))].sort();
  const rows = [];
  for (const hop of hops) {
    const summary = ["accept", "reject", "drop"].map((a) => `${a} ${fmt.count(perAction.get(`${hop}\u0000${a}`) || 0)}`).join(" · ");
    rows.push(el("tr", {}, el("td", { colspan: 4 }, el("strong", {}, hop), el("span", { class: "labels" }, `  last 5 min: ${summary}`))));
    const order = (r) => (/^\d+$/.test(r.metric.handle) ? Number(r.metric.handle) : Infinity); // "policy" last
    const own = recent.filter((r) => r.metric.hop === hop).sort((a, b) => order(a) - order(b) || 0);
    for (const r of own) {
      const word = verdict(r.metric.rule || "");
      const value = Number(r.value[1]);
      rows.push(el("tr", { "data-firewall": hop, "data-handle": r.metric.handle },
        el("td", {}, word ? pill(word) : ""), el("td", { class: "rule" }, r.metric.rule || `rule ${r.metric.handle}`),
        cell(value, fmt.count(value)), cell(totals.get(`${hop}\u0000${r.metric.handle}`), fmt.count(totals.get(`${hop}\u0000${r.metric.handle}`)))));
    }
  }
  fill(document.getElementById("firewalls"),
    ["verdict", "rule", { text: "last 5 min", num: true }, { text: "since start", num: true }], rows,
    "no firewall reported yet");
}

async function hostsPanel() {
  const names = ["hostCpu", "hostMemory", "hostLoad", "hostDisk"];
  const results = await Promise.all(names.map((n) => instant(QUERIES[n])));
  const by = Object.fromEntries(names.map((n, i) => [n, keyed(results[i], "host")]));
  const hosts = [...new Set(results.flat().map((r) => r.metric.host || ""))].sort();
  const rows = hosts.map((h) => el("tr", { "data-host": h }, el("td", {}, el("strong", {}, h)),
    cell(by.hostCpu.get(h), fmt.pct(by.hostCpu.get(h))), cell(by.hostMemory.get(h), fmt.pct(by.hostMemory.get(h))),
    cell(by.hostLoad.get(h), finite(by.hostLoad.get(h)) ? by.hostLoad.get(h).toFixed(2) : "—"),
    cell(by.hostDisk.get(h), fmt.pct(by.hostDisk.get(h)))));
  fill(document.getElementById("hosts"),
    ["host", { text: "CPU busy", num: true }, { text: "memory used", num: true }, { text: "load 1 min", num: true },
      { text: "disk free", num: true }], rows, "no host reported yet");
}

function parseDuration(text) {
  const match = /^(?:(\d+)h)?(?:(\d+)m(?!s))?(?:(\d+)s)?(?:(\d+)ms)?$/.exec(text || "");
  if (!match) return 5;
  const [h, m, s, ms] = match.slice(1).map((g) => Number(g || 0));
  return h * 3600 + m * 60 + s + ms / 1000 || 5;
}

async function targetsPanel() {
  const { activeTargets } = await api("/api/v1/targets");
  if (activeTargets.length) scrapeIntervalS = parseDuration(activeTargets[0].scrapeInterval);
  const rows = activeTargets.map((t) => el("tr", { "data-target": t.labels.instance, "data-health": t.health },
    el("td", {}, el("strong", {}, t.labels.host || ""), el("div", { class: "labels" }, t.scrapeUrl)),
    el("td", {}, t.labels.job), el("td", {}, pill(t.health)),
    el("td", {}, t.lastScrape.startsWith("0001") ? "never" : since(t.lastScrape),
      t.lastError ? el("div", { class: "error" }, t.lastError) : null),
    cell(t.lastScrapeDuration, `${(t.lastScrapeDuration * 1000).toFixed(1)} ms`)));
  fill(document.getElementById("targets"), ["target", "job", "health", "last scrape", { text: "took", num: true }], rows,
    "no target");
}

// --- charts ----------------------------------------------------------------------------------------

// A chart keeps its points between refreshes and asks only for the steps since the last one (and
// a few before, which a scrape still in flight may have changed): a refresh costs the monitor a few
// steps of each query instead of the whole window.  Everything is asked again now and then.
const points = {}; // chart id -> { step, fullAt, bySeries: Map(name -> Map(t -> value)) }

async function fetchPoints(id, spec, start, end, step) {
  let kept = points[id];
  const full = !kept || kept.step !== step || Date.now() - kept.fullAt > FULL_RELOAD_MS;
  if (full) kept = points[id] = { step, fullAt: Date.now(), bySeries: new Map(), last: start - step };
  const from = full ? start : Math.max(start, kept.last - OVERLAP_STEPS * step);
  const data = await api("/api/v1/query_range", { query: spec.query, start: from, end, step });
  for (const values of kept.bySeries.values()) {
    for (const t of [...values.keys()]) if (t < start || t >= from) values.delete(t);
  }
  for (const r of data.result) {
    const name = r.metric[spec.key];
    if (name === undefined) continue;
    if (!kept.bySeries.has(name)) kept.bySeries.set(name, new Map());
    const values = kept.bySeries.get(name);
    for (const [t, v] of r.values) {
      const value = Number(v) * spec.scale;
      if (Number.isFinite(value)) values.set(Math.round(Number(t)), value);
    }
  }
  for (const [name, values] of kept.bySeries) if (!values.size) kept.bySeries.delete(name);
  kept.last = end;
  return kept.bySeries;
}

async function drawChart(id, spec, start, end, step) {
  const bySeries = await fetchPoints(id, spec, start, end, step);
  const names = [...bySeries.keys()].sort((a, b) => a.localeCompare(b));
  const xs = [];
  for (let t = start; t <= end; t += step) xs.push(t);
  const columns = names.map((name) => xs.map((t) => (bySeries.get(name).has(t) ? bySeries.get(name).get(t) : null)));
  const box = document.getElementById(id);
  box.dataset.points = JSON.stringify(Object.fromEntries(names.map((name, i) => [name, pointsAndGaps(columns[i])])));
  const width = Math.max(300, box.clientWidth);
  const existing = charts[id];
  if (existing && existing.names.join() === names.join()) {
    existing.plot.setData([xs, ...columns]);
    if (Math.abs(existing.plot.width - width) > 4) existing.plot.setSize({ width, height: 220 });
    showLatest(existing.plot, xs.length);
    return;
  }
  if (existing) existing.plot.destroy();
  box.replaceChildren();
  if (!names.length) {
    box.append(el("p", { class: "empty" }, "no data yet"));
    delete charts[id];
    return;
  }
  const unit = spec.unit;
  const opts = {
    width, height: 220,
    scales: { x: { time: true }, y: { range: (u, min, max) => [0, Math.max(max * 1.1, spec.scale === 1 ? 1 : 0.01)] } },
    axes: [{ stroke: "#667085" }, { stroke: "#667085", size: 56, values: (u, vals) => vals.map((v) => `${+v.toPrecision(3)}`) }],
    series: [{}, ...names.map((name, i) => ({
      label: name, stroke: COLORS[i % COLORS.length], width: 1.6, spanGaps: false,
      value: (u, v) => (v === null || v === undefined ? "—" : `${+v.toFixed(2)}${unit}`),
    }))],
    legend: { live: true },
  };
  charts[id] = { names, plot: new uPlot(opts, [xs, ...columns], box) };
  showLatest(charts[id].plot, xs.length);
}

// [points, gaps]: how many steps have a value, and how many lack one between the first and the last
function pointsAndGaps(column) {
  const filled = column.map((v, i) => (v === null ? -1 : i)).filter((i) => i >= 0);
  if (!filled.length) return [0, 0];
  return [filled.length, filled[filled.length - 1] - filled[0] + 1 - filled.length];
}

// the legend shows the latest values until the pointer hovers the chart
function showLatest(plot, length) {
  if (plot.cursor.left === undefined || plot.cursor.left < 0) plot.setLegend({ idx: length - 1 });
}

async function chartsPanel() {
  const step = Math.max(Math.ceil(scrapeIntervalS), Math.ceil(CHART_SECONDS / MAX_POINTS));
  const end = Math.floor(Date.now() / 1000 / step) * step;
  const start = end - CHART_SECONDS;
  await Promise.all(Object.entries(CHARTS).map(([id, spec]) => drawChart(id, spec, start, end, step)));
}

// --- the refresh loop ------------------------------------------------------------------------------

async function refresh() {
  const panels = [targetsPanel, hopsPanel, alertsPanel, backendsPanel, replicationPanel, firewallsPanel, hostsPanel, chartsPanel];
  const outcomes = await Promise.allSettled(panels.map((panel) => panel()));
  const problems = outcomes.filter((o) => o.status === "rejected").map((o) => String(o.reason && o.reason.message || o.reason));
  const banner = document.getElementById("banner");
  banner.hidden = problems.length === 0;
  banner.textContent = problems.length ? `Some panels could not be refreshed: ${problems.join("; ")}` : "";
  document.getElementById("clock").textContent = `updated ${new Date().toLocaleTimeString("en-GB")}`;
  document.body.dataset.refreshed = String(Number(document.body.dataset.refreshed || 0) + 1);
}

async function loop() {
  await refresh();
  setTimeout(loop, REFRESH_MS);
}

loop();
