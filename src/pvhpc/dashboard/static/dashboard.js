// The pvhpc dashboard page: rows, loss check, charts (uPlot), thumbnail, controls.
// Everything arrives over one WebSocket (/ws): a "hello" with the history, then a
// "snapshot" per second and a "thumbnail" whenever the watched channel has a new one.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const FIELDS = ["received", "processed", "missed", "rejected", "errors", "overruns",
    "rate", "queue", "p50", "p99", "published"];
  const LOSS = new Set(["missed", "rejected", "errors", "overruns"]);
  const SERIES = ["rate", "queued", "p50", "p99"];
  const MAX_POINTS = 2000;
  const PALETTE = ["#0969da", "#cf222e", "#1a7f37", "#8250df", "#bf8700", "#1b7c83",
    "#e16f24", "#6e7781", "#a475f9", "#2da44e"];

  const page = {
    readOnly: true, ended: false, snapshot: null, times: [], series: {},
    charts: {}, watch: "", ws: null, frames: "", thumbSeq: 0,
  };
  SERIES.forEach((s) => { page.series[s] = {}; });
  window.pvhpc = page; // for tests, and for whoever opens the console

  // -- token -----------------------------------------------------------------------
  function initToken() {
    const m = location.hash.match(/token=([^&]+)/);
    if (m) {
      sessionStorage.setItem("pvhpcToken", decodeURIComponent(m[1]));
      history.replaceState(null, "", location.pathname + location.search);
    }
    $("token").value = sessionStorage.getItem("pvhpcToken") || "";
    $("token").addEventListener("change", () => sessionStorage.setItem("pvhpcToken", $("token").value));
  }

  async function post(path, body) {
    const headers = { "Content-Type": "application/json" };
    const token = $("token").value.trim();
    if (token) headers["X-Pvhpc-Token"] = token;
    try {
      const r = await fetch(path, { method: "POST", headers, body: JSON.stringify(body) });
      return await r.json();
    } catch (e) {
      return { ok: false, message: "no answer from the dashboard: " + e };
    }
  }

  function say(answer) {
    const el = $("answer");
    el.textContent = (answer.key ? answer.key + ": " : "") + answer.message;
    el.className = answer.ok ? "" : "refused";
    el.dataset.ok = answer.ok ? "1" : "0";
    el.dataset.seq = String(Number(el.dataset.seq || 0) + 1);
  }

  async function command(key, cmd, args) {
    $("answer").textContent = key + ": " + cmd + " …";
    say(await post("/api/control", { key, command: cmd, args: args || "" }));
  }

  // -- rows --------------------------------------------------------------------------
  function fmt(field, v) {
    if (v === null || v === undefined) return "-";
    if (field === "rate" || field === "p50" || field === "p99") return Number(v).toFixed(1);
    return String(v);
  }

  function controlCell(row) {
    const td = document.createElement("td");
    td.className = "ctl";
    if (!row.control || page.readOnly) return td;
    const input = document.createElement("input");
    input.placeholder = '{"key": value}';
    input.className = "config";
    const mk = (label, cmd, cls) => {
      const b = document.createElement("button");
      b.textContent = label;
      b.dataset.command = cmd;
      if (cls) b.className = cls;
      b.addEventListener("click", () => command(row.key, cmd, cmd === "configure" ? input.value : ""));
      return b;
    };
    td.append(input, mk("configure", "configure"), mk("reset", "reset_stats"), mk("stop", "stop", "danger"));
    return td;
  }

  function renderRows(stages) {
    const body = document.querySelector("#stages tbody");
    const seen = new Set();
    stages.forEach((row) => {
      seen.add(row.key);
      let tr = body.querySelector(`tr[data-key="${CSS.escape(row.key)}"]`);
      if (!tr) {
        tr = document.createElement("tr");
        tr.dataset.key = row.key;
        const cells = ["stage", "id", "state", ...FIELDS];
        cells.forEach((f) => { const td = document.createElement("td"); td.dataset.field = f; tr.append(td); });
        tr.append(controlCell(row));
        body.append(tr);
      }
      tr.querySelector('[data-field="stage"]').textContent = row.stage;
      tr.querySelector('[data-field="id"]').textContent = row.id;
      const state = tr.querySelector('[data-field="state"]');
      state.textContent = row.state || "-";
      state.className = "state-" + (row.state || "none").replace(/ /g, "-");
      FIELDS.forEach((f) => {
        const td = tr.querySelector(`[data-field="${f}"]`);
        td.textContent = fmt(f, row[f]);
        td.dataset.value = row[f] === null || row[f] === undefined ? "" : String(row[f]);
        td.classList.toggle("loss", LOSS.has(f) && row[f] > 0);
        if (f === "queue") td.classList.toggle("queue-high", row.queueFill >= 0.8);
      });
    });
    body.querySelectorAll("tr").forEach((tr) => { if (!seen.has(tr.dataset.key)) tr.remove(); });
  }

  function renderSets(snap) {
    const ul = $("sets");
    ul.textContent = "";
    if (!snap.sets.length) {
      const li = document.createElement("li");
      li.textContent = snap.workflow ? "no consumer sets" :
        "no consumer sets known: attach with --workflow FILE for the loss check";
      ul.append(li);
    }
    snap.sets.forEach((s) => {
      const li = document.createElement("li");
      li.dataset.label = s.label;
      li.dataset.verdict = s.verdict;
      const v = document.createElement("span");
      v.className = "verdict verdict-" + s.verdict.replace(/ /g, "-");
      v.textContent = s.verdict;
      const name = document.createElement("span");
      name.textContent = " " + s.label + " ← " + s.channels.join(", ");
      const f = document.createElement("div");
      f.className = "formula";
      let text = `${s.published === null ? "?" : s.published} published = ${s.processed} processed + ` +
        `${s.missed} missed + ${s.rejected} rejected + ${s.errors} errors`;
      if (s.skipped) text += ` + ${s.skipped} skipped`;
      if (s.lostWithDead) text += ` + ${s.lostWithDead} lost with dead consumers`;
      if (s.verdict === "in flight") {
        text += s.accounted < s.published ? `  (${s.published - s.accounted} on the way)`
          : "  (the source's count lags)";
      }
      f.textContent = text;
      li.append(v, name, f);
      ul.append(li);
    });
    const result = $("result");
    result.hidden = !(snap.result && snap.result.length);
    result.textContent = (snap.result || []).join("\n");
  }

  // -- charts ------------------------------------------------------------------------
  function loadHistory(history) {
    const ts = new Set();
    Object.values(history).forEach((h) => h.t.forEach((t) => ts.add(t)));
    page.times = Array.from(ts).sort((a, b) => a - b);
    const index = new Map(page.times.map((t, i) => [t, i]));
    SERIES.forEach((s) => {
      page.series[s] = {};
      Object.entries(history).forEach(([key, h]) => {
        const values = new Array(page.times.length).fill(null);
        h.t.forEach((t, i) => { values[index.get(t)] = h[s][i]; });
        page.series[s][key] = values;
      });
    });
  }

  function addPoint(snap) {
    const n = page.times.length;
    if (!(snap.t > 0) || (n && snap.t <= page.times[n - 1])) return;
    page.times.push(snap.t);
    const rows = new Map(snap.stages.map((r) => [r.key, r]));
    SERIES.forEach((s) => {
      const d = page.series[s];
      rows.forEach((_, key) => { if (!d[key]) d[key] = new Array(n).fill(null); });
      Object.keys(d).forEach((key) => {
        const row = rows.get(key);
        d[key].push(row && row[s] !== undefined ? row[s] : null);
      });
    });
    if (page.times.length > MAX_POINTS) {
      const keep = (_, i, a) => i % 2 === 1 || i === a.length - 1;
      page.times = page.times.filter(keep);
      SERIES.forEach((s) => Object.keys(page.series[s]).forEach((k) => {
        page.series[s][k] = page.series[s][k].filter(keep);
      }));
    }
  }

  const CHARTS = { rate: ["chart-rate", ["rate"]], queued: ["chart-queued", ["queued"]],
    latency: ["chart-latency", ["p50", "p99"]] };

  function chartLines(names) {
    // A line per stage and series that has a number at all (a source has no queue).
    const keys = Object.keys(page.series.rate);
    const lines = [];
    keys.forEach((key, i) => names.forEach((name, j) => {
      if (!page.series[name][key].some((v) => v !== null)) return;
      lines.push({
        key, name, label: names.length > 1 ? `${key} ${name}` : key,
        stroke: PALETTE[i % PALETTE.length], dash: j ? [5, 4] : undefined,
      });
    }));
    return lines;
  }

  function makeChart(id, lines) {
    const el = $(id);
    el.textContent = "";
    const opts = {
      width: Math.max(240, el.clientWidth || 300), height: 170,
      scales: { x: { time: true } },
      legend: { live: false },
      series: [{}, ...lines.map((l) => ({ label: l.label, stroke: l.stroke, dash: l.dash, width: 1.5 }))],
      axes: [{}, { size: 48 }],
    };
    const chart = new uPlot(opts, chartData(lines), el);
    chart.pvhpcLines = lines;
    chart.pvhpcSig = lines.map((l) => l.label).join("|");
    return chart;
  }

  function chartData(lines) {
    return [page.times.slice(), ...lines.map((l) => page.series[l.name][l.key].slice())];
  }

  function updateCharts() {
    Object.entries(CHARTS).forEach(([name, [id, series]]) => {
      const lines = chartLines(series);
      const chart = page.charts[name];
      if (!chart || chart.pvhpcSig !== lines.map((l) => l.label).join("|")) {
        if (chart) chart.destroy();
        page.charts[name] = makeChart(id, lines);
      } else {
        chart.setData(chartData(lines));
      }
    });
  }

  // -- thumbnail ---------------------------------------------------------------------
  function renderFrames(frames) {
    const sig = frames.join("|");
    if (sig === page.frames) return;
    page.frames = sig;
    const sel = $("thumb-channel");
    const current = sel.value;
    sel.textContent = "";
    ["", ...frames].forEach((f) => {
      const o = document.createElement("option");
      o.value = f;
      o.textContent = f || "(none)";
      sel.append(o);
    });
    sel.value = frames.includes(current) ? current : "";
  }

  function watch(channel) {
    page.watch = channel;
    $("thumb-caption").textContent = channel ? "waiting for a frame of " + channel : "";
    if (page.ws && page.ws.readyState === 1) page.ws.send(JSON.stringify({ type: "watch", channel }));
  }

  async function showThumbnail(meta) {
    if (meta.channel !== page.watch || meta.seq <= page.thumbSeq) return;
    page.thumbSeq = meta.seq;
    const caption = $("thumb-caption");
    if (meta.error) { caption.textContent = meta.error; return; }
    const r = await fetch("/api/thumbnail.png?channel=" + encodeURIComponent(meta.channel) + "&seq=" + meta.seq);
    if (!r.ok) return;
    const uid = r.headers.get("X-Unique-Id");
    const bitmap = await createImageBitmap(await r.blob());
    const canvas = $("thumb");
    canvas.width = bitmap.width;
    canvas.height = bitmap.height;
    canvas.getContext("2d").drawImage(bitmap, 0, 0);
    canvas.dataset.uniqueId = uid;
    canvas.dataset.channel = meta.channel;
    canvas.dataset.seq = String(meta.seq);
    const [ny, nx] = meta.sourceShape;
    caption.textContent = `${meta.channel}  uniqueId ${uid}  ${nx}x${ny} ${meta.dtype}` +
      ` → ${bitmap.width}x${bitmap.height} (1/${meta.factor})` +
      (meta.dtype === "uint8" ? "" : `  range ${meta.range[0]}..${meta.range[1]}`);
  }

  // -- the socket --------------------------------------------------------------------
  function onSnapshot(snap) {
    page.snapshot = snap;
    $("title").textContent = snap.workflow ? "pvhpc · " + snap.workflow : snap.title;
    document.title = $("title").textContent;
    $("elapsed").textContent = Math.round(snap.elapsed || 0) + " s";
    $("stop-reason").textContent = snap.stopReason ? "stopping: " + snap.stopReason : "";
    page.ended = !!snap.ended;
    if (page.ended) {
      $("stop-reason").textContent = "ended: " + (snap.stopReason || "");
      $("link").textContent = "ended";
      $("link").className = "badge ended";
    }
    renderRows(snap.stages);
    renderSets(snap);
    renderFrames(snap.frames || []);
    addPoint(snap);
    updateCharts();
  }

  function connect() {
    const ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    page.ws = ws;
    ws.onopen = () => {
      $("link").textContent = "live";
      $("link").className = "badge live";
      if (page.watch) watch(page.watch);
    };
    ws.onmessage = (ev) => {
      const msg = JSON.parse(ev.data);
      if (msg.type === "hello") {
        page.readOnly = msg.readOnly;
        $("control-box").hidden = msg.readOnly;
        $("read-only").hidden = !msg.readOnly;
        loadHistory(msg.history);
        if (msg.snapshot && msg.snapshot.t > 0) onSnapshot(msg.snapshot);
      } else if (msg.type === "snapshot") {
        onSnapshot(msg.snapshot);
      } else if (msg.type === "thumbnail") {
        showThumbnail(msg.thumbnail);
      }
    };
    ws.onclose = () => {
      if (page.ended) return;
      $("link").textContent = "disconnected";
      $("link").className = "badge wait";
      setTimeout(connect, 2000);
    };
  }

  initToken();
  $("stop-all").addEventListener("click", async () => {
    $("answer").textContent = "stopping the workflow …";
    say(await post("/api/stop-all", {}));
  });
  $("thumb-channel").addEventListener("change", (e) => watch(e.target.value));
  $("thumb-show").addEventListener("click", () => {
    const name = $("thumb-other").value.trim();
    if (name) watch(name);
  });
  connect();
})();
