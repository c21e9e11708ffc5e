// The alphagrad page: the runs table and one run's live loss chart (from /api/runs and the
// /api/runs/live event stream), and a playground that streams from the OpenAI-style API.
"use strict";

const $ = (selector) => document.querySelector(selector);
const state = { runs: new Map(), selected: null, train: [], val: [], chat: [], abort: null };

// ---- talking to the server -------------------------------------------------------------------

function headers() {
  const key = localStorage.getItem("alphagrad-api-key");
  const h = { "Content-Type": "application/json" };
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

async function failure(response) {
  try { return new Error((await response.json()).error.message); }
  catch { return new Error(response.status + " " + response.statusText); }
}

async function api(path) {
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) throw await failure(response);
  return response.json();
}

// Server-sent events read through fetch, so that the API key header goes along.
async function* events(path, options = {}) {
  const response = await fetch(path, { ...options, headers: headers() });
  if (!response.ok) throw await failure(response);
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event: ")) event = line.slice(7);
        else if (line.startsWith("data: ")) data.push(line.slice(6));
      }
      if (data.length) yield { event, data: data.join("\n") };
    }
  }
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// ---- formatting ------------------------------------------------------------------------------

function number(x, digits = 4) {
  return x === null || x === undefined ? "–" : Number(x).toFixed(digits);
}

function rate(x) {
  if (x === null || x === undefined) return "–";
  return x >= 1000 ? (x / 1000).toFixed(1) + "k" : x.toFixed(0);
}

function duration(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s < 60) return s + "s";
  if (s < 3600) return Math.floor(s / 60) + "m" + String(s % 60).padStart(2, "0") + "s";
  return Math.floor(s / 3600) + "h" + String(Math.floor(s / 60) % 60).padStart(2, "0") + "m";
}

function bytes(n) {
  return n >= 1 << 20 ? (n / (1 << 20)).toFixed(1) + " MB" : (n / 1024).toFixed(0) + " kB";
}

function element(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  Object.assign(node, attributes);
  node.append(...children);
  return node;
}

// ---- the runs table --------------------------------------------------------------------------

function renderRuns() {
  const body = $("#runs tbody");
  const rows = [...state.runs.values()].sort((a, b) => (b.created || "").localeCompare(a.created || ""));
  body.replaceChildren(...rows.map((run) => {
    const tr = element("tr", { className: run.id === state.selected ? "selected" : "" },
      element("td", {}, run.name),
      element("td", {}, element("span", { className: "status " + run.status }, run.status || "?")),
      element("td", { className: "num" }, run.step + (run.max_iters ? " / " + run.max_iters : "")),
      element("td", { className: "num" }, number(run.train_loss)),
      element("td", { className: "num" }, number(run.val_loss)),
      element("td", { className: "num" }, number(run.best_val_loss)),
      element("td", { className: "num" }, rate(run.tokens_per_sec)),
      element("td", { className: "num" }, run.status === "running" ? duration(run.eta_seconds) : "–"));
    tr.dataset.id = run.id;
    tr.addEventListener("click", () => selectRun(run.id));
    return tr;
  }));
  $("#no-runs").hidden = rows.length > 0;
}

function applyRecords(id, records) {
  const run = state.runs.get(id);
  for (const r of records) {
    if (run && typeof r.step === "number") run.step = Math.max(run.step || 0, r.step);
    if (r.kind === "step") {
      if (run) Object.assign(run, { train_loss: r.loss, tokens_per_sec: r.tokens_per_sec, eta_seconds: r.eta_seconds });
      if (id === state.selected) state.train.push([r.step, r.loss]);
    } else if (r.kind === "eval") {
      if (run) {
        run.val_loss = r.val_loss;
        run.best_val_loss = run.best_val_loss === null || run.best_val_loss === undefined
          ? r.val_loss : Math.min(run.best_val_loss, r.val_loss);
      }
      if (id === state.selected) state.val.push([r.step, r.val_loss]);
    }
  }
  renderRuns();
  if (id === state.selected) drawChart();
}

async function watchRuns() {
  for (;;) {
    try {
      for await (const { event, data } of events("/api/runs/live")) {
        $("#live-dot").classList.add("on");
        const payload = JSON.parse(data);
        if (event === "snapshot") {
          state.runs = new Map(payload.runs.map((run) => [run.id, run]));
          renderRuns();
          const newest = [...state.runs.values()].sort((a, b) => (b.created || "").localeCompare(a.created || ""))[0];
          if (!state.selected && newest) selectRun(newest.id);
        } else if (event === "metrics") {
          applyRecords(payload.id, payload.records);
        } else {
          state.runs.set(payload.id, payload);
          renderRuns();
          if (event === "run_finished" && payload.id === state.selected) showRun(payload.id);
        }
      }
    } catch (error) {
      $("#server-status").textContent = "runs: " + error.message;
    }
    $("#live-dot").classList.remove("on");
    await sleep(2000);
  }
}

// ---- one run ---------------------------------------------------------------------------------

async function selectRun(id) {
  state.selected = id;
  renderRuns();
  const page = await api("/api/runs/" + encodeURI(id) + "/metrics");
  state.train = page.records.filter((r) => r.kind === "step").map((r) => [r.step, r.loss]);
  state.val = page.records.filter((r) => r.kind === "eval").map((r) => [r.step, r.val_loss]);
  await showRun(id);
}

async function showRun(id) {
  const run = await api("/api/runs/" + encodeURI(id));
  $("#run-card").hidden = false;
  $("#run-title").textContent = run.name + (run.parameters ? " · " + run.parameters.toLocaleString() + " parameters" : "");
  const keys = ["preset", "n_layer", "n_head", "n_embd", "block_size", "batch_size", "max_iters",
    "learning_rate", "min_lr", "warmup_iters", "weight_decay", "dropout", "seed", "data_dir"];
  $("#settings").replaceChildren(...keys.filter((k) => run.config[k] !== undefined && run.config[k] !== null)
    .flatMap((k) => [element("dt", {}, k), element("dd", {}, String(run.config[k]))]));
  $("#checkpoints tbody").replaceChildren(...run.checkpoints.map((c) => element("tr", {},
    element("td", {}, c.file + (c.is_best ? " ★" : "")), element("td", { className: "num" }, c.step ?? "–"),
    element("td", { className: "num" }, number(c.val_loss)), element("td", { className: "num" }, bytes(c.bytes)))));
  const samples = run.samples.slice(-4).reverse();
  $("#samples").replaceChildren(...(samples.length ? samples.map((s) => element("div", { className: "sample" },
    element("span", { className: "prompt" }, s.prompt), s.text.slice(s.prompt.length)))
    : [element("p", { className: "muted" }, "No samples yet.")]));
  drawChart();
}

function ticks(lo, hi, count) {
  const raw = (hi - lo) / count;
  const power = Math.pow(10, Math.floor(Math.log10(raw)));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= raw);
  const out = [];
  for (let t = Math.ceil(lo / step) * step; t <= hi + 1e-9; t += step) out.push(t);
  return out;
}

function drawChart() {
  const canvas = $("#chart");
  const ratio = window.devicePixelRatio || 1;
  const width = canvas.clientWidth, height = canvas.clientHeight;
  canvas.width = width * ratio;
  canvas.height = height * ratio;
  const g = canvas.getContext("2d");
  g.scale(ratio, ratio);
  g.clearRect(0, 0, width, height);
  const points = [...state.train, ...state.val].filter(([, y]) => y !== null && isFinite(y));
  const style = getComputedStyle(document.documentElement);
  g.font = "11px system-ui, sans-serif";
  if (!points.length) {
    g.fillStyle = style.getPropertyValue("--muted");
    g.fillText("No metrics yet.", 52, 30);
    return;
  }
  const pad = { left: 48, right: 12, top: 10, bottom: 24 };
  const run = state.runs.get(state.selected);
  const xMax = Math.max(...points.map(([x]) => x), run && run.max_iters ? run.max_iters : 1);
  let yMin = Math.min(...points.map(([, y]) => y)), yMax = Math.max(...points.map(([, y]) => y));
  const margin = (yMax - yMin || 1) * 0.06;
  yMin -= margin; yMax += margin;
  const X = (x) => pad.left + (x / xMax) * (width - pad.left - pad.right);
  const Y = (y) => height - pad.bottom - ((y - yMin) / (yMax - yMin)) * (height - pad.top - pad.bottom);
  g.strokeStyle = style.getPropertyValue("--line");
  g.fillStyle = style.getPropertyValue("--muted");
  g.lineWidth = 1;
  g.textAlign = "right";
  for (const t of ticks(yMin, yMax, 5)) {
    g.beginPath(); g.moveTo(pad.left, Y(t)); g.lineTo(width - pad.right, Y(t)); g.stroke();
    g.fillText(t.toFixed(2), pad.left - 6, Y(t) + 4);
  }
  g.textAlign = "center";
  for (const t of ticks(0, xMax, 6)) g.fillText(String(Math.round(t)), X(t), height - 6);
  const line = (series, color, dots) => {
    const valid = series.filter(([, y]) => y !== null && isFinite(y));
    g.strokeStyle = color; g.fillStyle = color; g.lineWidth = 1.6;
    g.beginPath();
    valid.forEach(([x, y], i) => (i ? g.lineTo(X(x), Y(y)) : g.moveTo(X(x), Y(y))));
    g.stroke();
    if (dots) for (const [x, y] of valid) { g.beginPath(); g.arc(X(x), Y(y), 3, 0, 2 * Math.PI); g.fill(); }
  };
  line(state.train, style.getPropertyValue("--train"), state.train.length < 3);
  line(state.val, style.getPropertyValue("--val"), true);
}

// ---- the playground --------------------------------------------------------------------------

async function loadModels() {
  try {
    const models = (await api("/v1/models")).data;
    $("#model").replaceChildren(...models.map((m) => element("option", { value: m.id },
      m.id + " (" + m.kind + ", " + m.context_length + " tokens)")));
    $("#server-status").textContent = models.length ? "serving " + models.map((m) => m.id).join(", ") : "no models loaded";
    $("#send").disabled = !models.length;
    if (!models.length) $("#play-status").textContent = "Start the server with a checkpoint to talk to a model: alphagrad serve runs/RUN";
  } catch (error) {
    $("#server-status").textContent = error.message;
  }
}

function renderChat() {
  $("#chat-log").replaceChildren(...state.chat.map((m) => element("div", { className: "msg " + m.role },
    element("span", { className: "role" }, m.role), m.content)));
}

async function play(event) {
  event.preventDefault();
  const prompt = $("#prompt").value;
  const chat = $("#mode").value === "chat";
  const body = { model: $("#model").value, stream: true, temperature: Number($("#temperature").value) };
  if ($("#seed").value !== "") body.seed = Number($("#seed").value);
  body.max_tokens = $("#max-tokens").value === "" ? null : Number($("#max-tokens").value);
  let reply;
  if (chat) {
    state.chat.push({ role: "user", content: prompt });
    body.messages = state.chat.slice();
    reply = { role: "assistant", content: "" };
    state.chat.push(reply);
    renderChat();
    $("#prompt").value = "";
  } else {
    body.prompt = prompt;
    $("#output").textContent = prompt;
  }
  state.abort = new AbortController();
  $("#send").disabled = true; $("#stop").disabled = false;
  $("#play-status").textContent = "streaming…";
  const started = performance.now();
  let tokens = 0, finish = null;
  try {
    const path = chat ? "/v1/chat/completions" : "/v1/completions";
    for await (const { data } of events(path, { method: "POST", body: JSON.stringify(body), signal: state.abort.signal })) {
      if (data === "[DONE]") break;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message);
      for (const choice of chunk.choices) {
        const text = chat ? choice.delta.content || "" : choice.text;
        if (text) tokens += 1;
        if (chat) { reply.content += text; renderChat(); } else $("#output").textContent += text;
        finish = choice.finish_reason || finish;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    $("#play-status").textContent = tokens + " tokens in " + seconds.toFixed(2) + " s" + (finish ? " · " + finish : "");
  } catch (error) {
    $("#play-status").textContent = error.name === "AbortError" ? "stopped" : "error: " + error.message;
    if (chat && !reply.content) { state.chat.pop(); renderChat(); }
  } finally {
    $("#send").disabled = false; $("#stop").disabled = true;
  }
}

function setMode() {
  const chat = $("#mode").value === "chat";
  $("#chat-log").hidden = !chat;
  $("#output").hidden = chat;
  $("#prompt").placeholder = chat ? "Say something to the model…" : "Text for the model to continue…";
}

// ---- start -----------------------------------------------------------------------------------

$("#api-key").value = localStorage.getItem("alphagrad-api-key") || "";
$("#api-key").addEventListener("change", (e) => {
  localStorage.setItem("alphagrad-api-key", e.target.value);
  location.reload();
});
$("#play-form").addEventListener("submit", play);
$("#stop").addEventListener("click", () => state.abort && state.abort.abort());
$("#clear").addEventListener("click", () => { state.chat = []; renderChat(); $("#output").textContent = ""; });
$("#mode").addEventListener("change", setMode);
window.addEventListener("resize", drawChart);
setMode();
loadModels();
watchRuns();
