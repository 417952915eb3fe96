// SPDX-License-Identifier: Apache-2.0
// The mqtt ui page: one event stream from `mqtt ui` (a snapshot, then
// updates every ~200 ms), rendered without any library. Every string
// from the broker goes into the page as text, never as HTML.
"use strict";

(function () {
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  const MAX_CHARTS = 12; // small charts shown; the selected topic always has its own
  const RATE_WINDOW = 10000; // ms

  const st = {
    limits: { topics: 1000, points: 300, payload: 4096, log: 500, logPerPush: 100 },
    topics: new Map(), // id -> topic
    root: newNode(null, ""),
    selected: 0,
    charts: new Map(), // id -> {fig, canvas, cap}
    offset: 0, // server clock - browser clock
    caps: null,
    state: null,
    paused: false,
    pending: [], // log lines held while paused
    heldBack: 0, // lines dropped while paused
    filter: "",
    treeFilter: "",
    dirty: new Set(), // topic ids to re-render
    logQueue: [],
    renderQueued: false,
    connected: false,
  };
  window.mqttui = st; // for tests and curious people

  function newNode(parent, name) {
    return { parent, name, children: new Map(), topic: null, total: 0, li: null, ul: null, row: null };
  }

  // ---------- event stream ----------
  function connect() {
    const es = new EventSource("events");
    es.addEventListener("snapshot", (e) => snapshot(JSON.parse(e.data)));
    es.addEventListener("update", (e) => update(JSON.parse(e.data)));
    es.onopen = () => streamState(true);
    es.onerror = () => streamState(false);
  }

  function streamState(ok) {
    st.connected = ok;
    const s = $("stream");
    s.hidden = ok;
    s.textContent = ok ? "" : "lost contact with mqtt ui: retrying…";
  }

  function snapshot(s) {
    st.offset = s.now - Date.now();
    setCaps(s.caps);
    // Start over: the page may have missed updates.
    st.topics.clear();
    st.root = newNode(null, "");
    $("tree").textContent = "";
    st.charts.forEach((c) => c.fig.remove());
    st.charts.clear();
    for (const t of s.topics || []) addTopic(t, true);
    const tb = $("log").tBodies[0];
    tb.textContent = "";
    st.pending = [];
    st.logQueue = (s.log || []).slice(-st.limits.log);
    setState(s.state);
    selectFromHash();
    schedule();
  }

  // The address can name a topic to show: /#sensor/temp.
  function selectFromHash() {
    let name = "";
    try { name = decodeURIComponent(location.hash.slice(1)); } catch (e) { return; }
    if (!name) return;
    for (const t of st.topics.values()) if (t.name === name) { select(t.id); return; }
  }

  function update(u) {
    st.offset = u.now - Date.now();
    setCaps(u.caps);
    for (const t of u.topics || []) addTopic(t, false);
    if (u.log && u.log.length) {
      if (st.paused) {
        st.pending.push(...u.log);
        if (st.pending.length > st.limits.log) {
          st.heldBack += st.pending.length - st.limits.log;
          st.pending.splice(0, st.pending.length - st.limits.log);
        }
      } else {
        st.logQueue.push(...u.log);
        if (st.logQueue.length > st.limits.log) st.logQueue.splice(0, st.logQueue.length - st.limits.log);
      }
    }
    if (u.state) setState(u.state);
    schedule();
  }

  // addTopic merges a topic from the server: full in a snapshot, with
  // only the new chart points in an update.
  function addTopic(t, full) {
    let cur = st.topics.get(t.id);
    if (!cur) {
      cur = t;
      cur.points = t.points || [];
      // Until the page has watched for a while, the rate is the
      // average since the topic's first message.
      const local = (ms) => ms - st.offset;
      cur.samples = t.count > 1 && t.last > t.first ? [[local(t.first), 1], [local(t.last), t.count]] : [[Date.now(), t.count]];
      st.topics.set(t.id, cur);
      insertNode(cur);
    } else {
      const pts = cur.points;
      const diff = t.count - cur.count;
      Object.assign(cur, t);
      cur.points = full ? (t.points || []) : pts.concat(t.points || []);
      if (diff) addTotal(cur.node, diff);
    }
    if (cur.points.length > st.limits.points) cur.points.splice(0, cur.points.length - st.limits.points);
    st.dirty.add(cur.id);
  }

  function setCaps(c) {
    st.caps = c;
    if (c && c.limits) Object.assign(st.limits, c.limits);
  }

  // ---------- connection state ----------
  function setState(s) {
    st.state = s;
    const e = $("state");
    e.dataset.status = s.status;
    e.textContent = s.status + (s.detail ? ": " + s.detail : "");
    $("broker").textContent = s.broker || "";
    if (s.broker) document.title = "mqtt ui · " + s.broker;
  }

  // ---------- topic tree ----------
  function insertNode(t) {
    let n = st.root;
    t.levels.forEach((level, i) => {
      let key = level;
      // Two topics can show the same name (bad UTF-8 repaired to the same
      // text, or names cut at the limit): each keeps its own row.
      const last = i === t.levels.length - 1;
      if (last && n.children.has(key) && n.children.get(key).topic) key = level + "\u0000" + t.id;
      let c = n.children.get(key);
      if (!c) {
        c = newNode(n, level);
        n.children.set(key, c);
        mountNode(c);
      }
      n = c;
    });
    n.topic = t;
    t.node = n;
    n.li.classList.add("has-topic");
    n.li.dataset.topic = t.name;
    n.li.dataset.id = t.id;
    addTotal(n, t.count);
  }

  function addTotal(n, d) {
    for (; n && n.parent; n = n.parent) {
      n.total += d;
      if (n.row) n.row.querySelector(".count").textContent = countText(n);
    }
  }

  function countText(n) {
    if (n.topic && n.children.size === 0) return n.total + " msg";
    return n.total + " msg" + (n.children.size ? " · " + n.children.size + " sub" : "");
  }

  function mountNode(n) {
    const li = el("li", "node");
    const row = el("div", "row");
    const toggle = el("span", "toggle", "");
    const name = el("span", "name", n.name === "" ? "(empty)" : n.name);
    row.append(toggle, name, el("span", "count", ""), el("span", "qos"), el("span", "retain"),
      el("span", "rate"), el("span", "age"), el("span", "preview"));
    li.append(row);
    n.li = li;
    n.row = row;
    row.addEventListener("click", (ev) => {
      if (ev.target === toggle) {
        li.classList.toggle("collapsed");
        toggle.textContent = li.classList.contains("collapsed") ? "▸" : "▾";
        return;
      }
      if (n.topic) select(n.topic.id);
      else { li.classList.toggle("collapsed"); toggle.textContent = li.classList.contains("collapsed") ? "▸" : "▾"; }
    });
    const p = n.parent;
    if (!p.parent) {
      insertSorted($("tree"), li, n.name);
    } else {
      if (!p.ul) {
        p.ul = el("ul");
        p.li.append(p.ul);
        p.row.querySelector(".toggle").textContent = "▾";
      }
      insertSorted(p.ul, li, n.name);
      p.row.querySelector(".count").textContent = countText(p);
    }
    applyTreeFilter(n);
  }

  function insertSorted(ul, li, name) {
    li.dataset.name = name;
    for (const c of ul.children) {
      if (c.dataset.name > name) { ul.insertBefore(li, c); return; }
    }
    ul.append(li);
  }

  function renderTopicRow(t) {
    const row = t.node.row;
    row.querySelector(".count").textContent = countText(t.node);
    row.querySelector(".qos").textContent = "q" + t.qos;
    row.querySelector(".retain").textContent = t.retain ? "retained" : "";
    const pv = row.querySelector(".preview");
    pv.textContent = t.kind === "binary" ? "binary, " + size(t.size) : t.kind === "empty" ? "(empty)" : oneLine(t.payload);
    pv.title = t.kind;
    renderTimes(t, Date.now());
  }

  function oneLine(s) {
    s = s.replace(/\s+/g, " ");
    return s.length > 80 ? s.slice(0, 80) + "…" : s;
  }

  function applyTreeFilter(n) {
    if (!st.treeFilter) { n.li.classList.remove("hidden"); return; }
    const path = pathOf(n).toLowerCase();
    const match = path.includes(st.treeFilter) || hasMatchingChild(n);
    n.li.classList.toggle("hidden", !match);
  }

  function hasMatchingChild(n) {
    for (const c of n.children.values()) {
      if (pathOf(c).toLowerCase().includes(st.treeFilter) || hasMatchingChild(c)) return true;
    }
    return false;
  }

  function pathOf(n) {
    const parts = [];
    for (; n && n.parent; n = n.parent) parts.unshift(n.name);
    return parts.join("/");
  }

  function refilterTree(n) {
    for (const c of n.children.values()) { applyTreeFilter(c); refilterTree(c); }
  }

  // ---------- rates and ages (local clock, once a second) ----------
  function tick() {
    const now = Date.now();
    for (const t of st.topics.values()) {
      t.samples.push([now, t.count]);
      while (t.samples.length > 2 && t.samples[1][0] <= now - RATE_WINDOW) t.samples.shift();
      renderTimes(t, now);
    }
    if (st.selected) renderDetail();
  }

  // renderTimes shows a topic's rate (messages per second over the last
  // RATE_WINDOW) and the age of its last message.
  function renderTimes(t, now) {
    const [t0, c0] = t.samples[0];
    const span = (now - t0) / 1000;
    t.rate = span >= 1 ? (t.count - c0) / span : null;
    const row = t.node.row;
    row.querySelector(".rate").textContent = t.rate === null ? "" : rateText(t.rate);
    row.querySelector(".age").textContent = ageText(now + st.offset - t.last);
  }

  function rateText(r) {
    if (r === 0) return "0/s";
    return (r >= 10 ? r.toFixed(0) : r >= 1 ? r.toFixed(1) : r.toFixed(2)) + "/s";
  }

  function ageText(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s < 60) return s + "s ago";
    if (s < 3600) return Math.floor(s / 60) + "m ago";
    return Math.floor(s / 3600) + "h ago";
  }

  function size(n) {
    if (n < 1024) return n + " B";
    if (n < 1 << 20) return (n / 1024).toFixed(1) + " KiB";
    return (n / (1 << 20)).toFixed(1) + " MiB";
  }

  // ---------- selected topic ----------
  function select(id) {
    const old = st.topics.get(st.selected);
    if (old) old.node.li.classList.remove("selected");
    st.selected = id;
    const t = st.topics.get(id);
    if (t) {
      t.node.li.classList.add("selected");
      history.replaceState(null, "", "#" + encodeURIComponent(t.name).replace(/%2F/g, "/"));
    }
    $("pub-topic").value = $("pub-topic").value || (t ? t.name : "");
    renderDetail();
  }

  function renderDetail() {
    const t = st.topics.get(st.selected);
    $("detail").hidden = !t;
    if (!t) return;
    $("detail-topic").textContent = t.name;
    const meta = [t.count + " messages", "QoS " + t.qos, t.retain ? "retained" : "live", t.kind + ", " + size(t.size)];
    if (t.rate != null) meta.push(rateText(t.rate));
    meta.push("last " + ageText(Date.now() + st.offset - t.last));
    $("detail-meta").textContent = meta.join(" · ");
    const pre = $("detail-payload");
    if (pre.textContent !== t.payload) pre.textContent = t.payload;
    pre.dataset.kind = t.kind;
    const cut = $("detail-cut");
    cut.hidden = !t.cut;
    cut.textContent = t.cut ? "Payload of " + size(t.size) + ": only the first " + size(st.limits.payload) + " of its " + (t.kind === "binary" ? "hex dump" : t.kind) + " are kept." : "";
    const fig = $("detail-chart");
    fig.hidden = !t.hasNum;
    if (t.hasNum) drawChart(fig.querySelector("canvas"), t, fig.querySelector("figcaption"));
  }

  // ---------- charts ----------
  function chartFor(t) {
    let c = st.charts.get(t.id);
    if (c) return c;
    if (st.charts.size >= MAX_CHARTS) return null;
    const fig = el("figure", "chart");
    fig.dataset.topic = t.name;
    const canvas = el("canvas");
    canvas.width = 300; canvas.height = 100;
    const cap = el("figcaption");
    fig.append(canvas, cap);
    fig.addEventListener("click", () => select(t.id));
    $("charts").append(fig);
    c = { fig, canvas, cap };
    st.charts.set(t.id, c);
    return c;
  }

  function fmt(v) {
    const a = Math.abs(v);
    if (a !== 0 && (a >= 1e6 || a < 1e-3)) return v.toExponential(3);
    return String(Math.round(v * 1000) / 1000);
  }

  function drawChart(canvas, t, cap) {
    const fig = canvas.parentElement;
    fig.dataset.points = t.points.length;
    fig.dataset.last = t.value;
    cap.textContent = "";
    if (fig.classList.contains("chart") && !fig.classList.contains("big")) cap.append(el("span", "ctopic", t.name));
    cap.append(el("span", "last", "last " + fmt(t.value)), el("span", "min", "min " + fmt(t.min)),
      el("span", "max", "max " + fmt(t.max)));
    if (t.field) cap.append(el("span", "field muted", t.field));
    if (!t.numOK) cap.append(el("span", "muted", "last payload had no number"));

    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || canvas.width, h = canvas.clientHeight || canvas.height;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const pts = t.points;
    if (!pts.length) return;
    let lo = Infinity, hi = -Infinity;
    for (const p of pts) { if (p[1] < lo) lo = p[1]; if (p[1] > hi) hi = p[1]; }
    if (lo === hi) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.1;
    lo -= pad; hi += pad;
    const t0 = pts[0][0], t1 = Math.max(pts[pts.length - 1][0], t0 + 1);
    const left = 44, right = w - 6, top = 6, bottom = h - 14;
    const x = (ts) => left + (ts - t0) / (t1 - t0) * (right - left);
    const y = (v) => bottom - (v - lo) / (hi - lo) * (bottom - top);
    const css = getComputedStyle(document.documentElement);
    g.strokeStyle = css.getPropertyValue("--line").trim() || "#ddd";
    g.fillStyle = css.getPropertyValue("--muted").trim() || "#666";
    g.lineWidth = 1;
    g.font = "10px sans-serif";
    g.beginPath();
    g.moveTo(left, top); g.lineTo(left, bottom); g.lineTo(right, bottom);
    g.stroke();
    g.textAlign = "right";
    g.fillText(fmt(hi), left - 3, top + 8);
    g.fillText(fmt(lo), left - 3, bottom);
    g.textAlign = "left";
    g.fillText(new Date(t0).toLocaleTimeString(), left, h - 2);
    g.textAlign = "right";
    g.fillText(new Date(t1).toLocaleTimeString(), right, h - 2);
    g.strokeStyle = css.getPropertyValue("--accent").trim() || "#2563eb";
    g.lineWidth = 1.5;
    g.beginPath();
    pts.forEach((p, i) => (i ? g.lineTo(x(p[0]), y(p[1])) : g.moveTo(x(p[0]), y(p[1]))));
    g.stroke();
    const lp = pts[pts.length - 1];
    g.fillStyle = g.strokeStyle;
    g.beginPath();
    g.arc(x(lp[0]), y(lp[1]), 2.5, 0, 2 * Math.PI);
    g.fill();
  }

  // ---------- message log ----------
  function logRow(l) {
    const tr = el("tr");
    if (l.retain) tr.className = "retained";
    tr.dataset.topic = l.topic;
    const time = new Date(l.time).toLocaleTimeString();
    tr.append(el("td", "", time), el("td", "", l.topic), el("td", "", String(l.qos)), el("td", "", l.preview));
    tr.title = l.topic + " · " + size(l.size);
    if (st.filter && !matches(l)) tr.classList.add("hidden");
    tr._line = l;
    return tr;
  }

  function matches(l) {
    return l.topic.toLowerCase().includes(st.filter) || l.preview.toLowerCase().includes(st.filter);
  }

  function renderLog() {
    if (!st.logQueue.length) return;
    const tb = $("log").tBodies[0];
    const frag = document.createDocumentFragment();
    for (let i = st.logQueue.length - 1; i >= 0; i--) frag.append(logRow(st.logQueue[i]));
    st.logQueue = [];
    tb.insertBefore(frag, tb.firstChild);
    while (tb.rows.length > st.limits.log) tb.deleteRow(-1);
  }

  function logStatus() {
    const parts = [];
    if (st.paused) parts.push("paused, " + st.pending.length + " new" + (st.heldBack ? " (" + st.heldBack + " older dropped)" : ""));
    parts.push("last " + st.limits.log + " kept");
    $("log-status").textContent = parts.join(" · ");
  }

  // ---------- notices about limits ----------
  function renderNotices() {
    const c = st.caps;
    if (!c) return;
    const l = c.limits;
    const notes = [];
    if (c.topicsFull) notes.push(["topics", "Topic limit reached: " + l.topics + " topics are tracked; " + c.untracked + " messages on other topics appear only in the message log."]);
    if (c.logDropped) notes.push(["log", "Messages arrived faster than the log lists them (" + l.logPerPush + " per update): " + c.logDropped + " were counted but not listed."]);
    if (c.payloadsCut) notes.push(["payload", c.payloadsCut + " payloads were longer than shown: each topic keeps the first " + size(l.payload) + " of its last payload (largest so far " + size(c.largestPayload) + ")."]);
    if (c.pointsTrimmed) notes.push(["points", "Charts keep the last " + l.points + " readings of each topic."]);
    if (c.invalidUTF8Seen) notes.push(["utf8", "Some topic names are not valid UTF-8: the bad bytes are shown as �."]);
    const box = $("notices");
    const keys = notes.map((n) => n[0]).join(",");
    if (box.dataset.keys === keys && keys !== "") {
      notes.forEach((n, i) => { if (box.children[i].textContent !== n[1]) box.children[i].textContent = n[1]; });
    } else {
      box.textContent = "";
      for (const [k, text] of notes) { const p = el("p", "notice", text); p.dataset.cap = k; box.append(p); }
      box.dataset.keys = keys;
    }
    $("totals").textContent = c.messages + " messages · " + c.trackedTopics + " topics";
    $("topic-count").textContent = c.trackedTopics ? "(" + c.trackedTopics + (c.topicsFull ? ", limit reached" : "") + ")" : "";
    $("tree-empty").hidden = c.trackedTopics > 0;
  }

  // ---------- rendering ----------
  function schedule() {
    if (st.renderQueued) return;
    st.renderQueued = true;
    // requestAnimationFrame does not run in a hidden tab: the timer does.
    const run = () => { if (st.renderQueued) { st.renderQueued = false; render(); } };
    requestAnimationFrame(run);
    setTimeout(run, 250);
  }

  function render() {
    let shown = 0;
    for (const id of st.dirty) {
      const t = st.topics.get(id);
      if (!t) continue;
      renderTopicRow(t);
      if (t.hasNum) {
        const c = chartFor(t);
        if (c) drawChart(c.canvas, t, c.cap);
      }
    }
    if (st.dirty.has(st.selected)) renderDetail();
    st.dirty.clear();
    for (const t of st.topics.values()) if (t.hasNum) shown++;
    $("charts-empty").hidden = shown > 0;
    const more = $("charts-more");
    more.hidden = shown <= MAX_CHARTS;
    more.textContent = shown > MAX_CHARTS ? (shown - MAX_CHARTS) + " more topics carry numbers: select one in the tree to see its chart." : "";
    renderLog();
    logStatus();
    renderNotices();
  }

  // ---------- controls ----------
  function setup() {
    $("log-pause").addEventListener("click", () => {
      st.paused = !st.paused;
      $("log-pause").setAttribute("aria-pressed", String(st.paused));
      $("log-pause").textContent = st.paused ? "Resume" : "Pause";
      if (!st.paused) {
        st.logQueue.push(...st.pending);
        st.pending = [];
        st.heldBack = 0;
      }
      schedule();
    });
    $("log-filter").addEventListener("input", (e) => {
      st.filter = e.target.value.toLowerCase();
      for (const tr of $("log").tBodies[0].rows) tr.classList.toggle("hidden", !!st.filter && !matches(tr._line));
    });
    $("log-clear").addEventListener("click", () => { $("log").tBodies[0].textContent = ""; });
    $("tree-filter").addEventListener("input", (e) => {
      st.treeFilter = e.target.value.toLowerCase();
      refilterTree(st.root);
    });
    $("publish").addEventListener("submit", async (e) => {
      e.preventDefault();
      const res = $("pub-result");
      const body = {
        topic: $("pub-topic").value,
        payload: $("pub-payload").value,
        qos: Number($("pub-qos").value),
        retain: $("pub-retain").checked,
      };
      res.className = "";
      res.textContent = "publishing…";
      try {
        const r = await fetch("api/publish", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
        const j = await r.json().catch(() => ({}));
        if (!r.ok) throw new Error(j.error || r.statusText);
        res.className = "ok";
        res.textContent = "published to " + body.topic + " at " + new Date().toLocaleTimeString();
      } catch (err) {
        res.className = "err";
        res.textContent = "not published: " + err.message;
      }
    });
    window.addEventListener("hashchange", selectFromHash);
    setInterval(tick, 1000);
    connect();
  }

  setup();
})();
