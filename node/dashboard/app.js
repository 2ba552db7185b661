"use strict";
// The swarmtrain dashboard: polls the coordinator's API every POLL_MS and
// redraws. Every figure drawn carries its value in data-* attributes, so a
// test (node's TestDashboardInChromium) compares what the page shows with
// what the API says. Text from the API is set as text, never as HTML.
const POLL_MS = 2000;
const SVG_TAGS = new Set(["svg", "circle", "polyline", "line", "text", "title", "g"]);
let picked = null; // the round the ledger browser shows
let polls = 0; // polls that rendered, in body's data-polls (tests wait on it)
let rounds = []; // every sealed round so far: each poll asks only for newer ones
let swarmID = null; // the swarm those rounds are of
const LEDGER_ROWS = 100; // the ledger table shows the newest rounds

function h(tag, attrs, ...kids) {
  const el = SVG_TAGS.has(tag) ? document.createElementNS("http://www.w3.org/2000/svg", tag) : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v);
  }
  for (const kid of kids.flat()) {
    if (kid !== null && kid !== undefined) el.append(kid instanceof Node ? kid : String(kid));
  }
  return el;
}

async function getJSON(path) {
  const resp = await fetch(path, { cache: "no-store" });
  if (!resp.ok) throw new Error(`${path}: ${resp.status} ${(await resp.text()).trim()}`);
  return resp.json();
}

const short = (s) => (s && s.length > 16 ? `${s.slice(0, 8)}…${s.slice(-6)}` : s || "");
const pct = (v) => `${(v * 100).toFixed(2)} %`;
function bytes(n) {
  const units = ["B", "kB", "MB", "GB"];
  let i = 0;
  while (n >= 1000 && i < units.length - 1) { n /= 1000; i++; }
  return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
}
const cidCell = (cid, href) => h("td", { class: "cid", title: cid }, href ? h("a", { href }, short(cid)) : short(cid));
const modelFile = (cid) => `/v1/models/${cid}/file`;

// chart draws series of {x: round, y: value} points as lines with a dot
// per point, y linear or log10.
function chart(svg, series, { log = false, fmt = String } = {}) {
  const W = 480, H = 220, L = 58, R = 12, T = 22, B = 30;
  svg.replaceChildren();
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) {
    svg.append(h("text", { x: W / 2, y: H / 2, "text-anchor": "middle" }, "no round sealed yet"));
    return;
  }
  const f = log ? (v) => Math.log10(Math.max(v, 1)) : (v) => v;
  const inv = log ? (v) => 10 ** v : (v) => v;
  let x0 = Math.min(...pts.map((p) => p.x)), x1 = Math.max(...pts.map((p) => p.x));
  if (x0 === x1) { x0 -= 1; x1 += 1; }
  let y0 = Math.min(...pts.map((p) => f(p.y))), y1 = Math.max(...pts.map((p) => f(p.y)));
  const pad = y0 === y1 ? 0.5 : (y1 - y0) * 0.08;
  y0 -= pad; y1 += pad;
  const X = (x) => L + ((x - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => T + (1 - (f(v) - y0) / (y1 - y0)) * (H - T - B);
  svg.append(h("line", { class: "axis", x1: L, y1: T, x2: L, y2: H - B }), h("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
  for (const t of [y0 + pad, (y0 + y1) / 2, y1 - pad]) {
    const v = inv(t);
    svg.append(h("text", { x: L - 4, y: Y(v) + 3, "text-anchor": "end" }, fmt(v)));
    svg.append(h("line", { class: "axis", x1: L, y1: Y(v), x2: W - R, y2: Y(v), "stroke-dasharray": "2 3" }));
  }
  const xs = [...new Set(pts.map((p) => p.x))].sort((a, b) => a - b);
  const every = Math.ceil(xs.length / 10);
  xs.forEach((x, i) => {
    if (i % every === 0 || i === xs.length - 1) svg.append(h("text", { x: X(x), y: H - B + 14, "text-anchor": "middle" }, x));
  });
  svg.append(h("text", { x: (L + W - R) / 2, y: H - 2, "text-anchor": "middle" }, "round"));
  series.forEach((s, i) => {
    const g = h("g", { class: `s${i}`, "data-series": s.key });
    g.append(h("polyline", { points: s.points.map((p) => `${X(p.x)},${Y(p.y)}`).join(" ") }));
    for (const p of s.points) {
      g.append(h("circle", { cx: X(p.x), cy: Y(p.y), r: 3, "data-round": p.x, "data-value": String(p.y) },
        h("title", {}, `round ${p.x}: ${s.name} ${fmt(p.y)}`)));
    }
    svg.append(g, h("text", { class: `s${i}`, x: W - R - 150 * (series.length - 1 - i), y: 12, "text-anchor": "end", stroke: "none" }, `● ${s.name}`));
  });
}

function renderCharts(rounds) {
  const measured = rounds.filter((r) => !r.restored);
  const evaluated = rounds.filter((r) => r.evaluated);
  chart(document.getElementById("chart-accuracy"),
    [{ key: "test_accuracy", name: "test accuracy", points: evaluated.map((r) => ({ x: r.round, y: r.test_accuracy })) }],
    { fmt: pct });
  chart(document.getElementById("chart-loss"), [
    { key: "test_loss", name: "test loss", points: evaluated.map((r) => ({ x: r.round, y: r.test_loss })) },
    { key: "train_loss", name: "train loss (accepted)", points: measured.filter((r) => r.accepted > 0).map((r) => ({ x: r.round, y: r.train_loss })) },
  ], { fmt: (v) => v.toFixed(3) });
  chart(document.getElementById("chart-bytes"), [
    { key: "bytes_in", name: "received", points: measured.map((r) => ({ x: r.round, y: r.bytes_in })) },
    { key: "dense_bytes", name: "as dense fp32", points: measured.map((r) => ({ x: r.round, y: r.dense_bytes })) },
  ], { log: true, fmt: bytes });
}

function renderCards(swarm, rs, peers) {
  const rounds = rs.rounds;
  const total = swarm.config && swarm.config.train ? swarm.config.train.rounds : "?";
  document.getElementById("card-round").textContent = `${rounds.length} / ${total} sealed`;
  const ev = rounds.filter((r) => r.evaluated);
  document.getElementById("card-accuracy").textContent = ev.length ? pct(ev[ev.length - 1].test_accuracy) : "–";
  const m = rounds.filter((r) => !r.restored);
  const got = m.reduce((a, r) => a + r.bytes_in, 0), dense = m.reduce((a, r) => a + r.dense_bytes, 0);
  document.getElementById("card-bytes").textContent = got > 0 ? `${bytes(got)}, ${(dense / got).toFixed(1)}× less` : "–";
  document.getElementById("card-peers").textContent = peers.filter((p) => p.connection !== "none").length;
}

function renderScores(scores, peers) {
  const conn = new Map(peers.map((p) => [p.peer, p.connection]));
  const rows = [...scores].sort((a, b) => b.score - a.score || a.peer.localeCompare(b.peer)).map((s) => {
    const reasons = (s.rejections || []).map((rc) => `${rc.reason} ×${rc.count}`).join(", ");
    const c = conn.get(s.peer) || "none";
    return h("tr", { "data-peer": s.peer },
      h("td", { class: "peer", title: s.peer }, short(s.peer)),
      h("td", { class: `num score${s.score < 0 ? " neg" : ""}`, "data-value": String(s.score) }, s.score.toFixed(3)),
      h("td", { class: "num accepted" }, s.accepted),
      h("td", { class: "num rejected" }, s.rejected),
      h("td", { class: "reasons" }, reasons),
      h("td", { class: "num" }, s.last_round),
      h("td", {}, h("span", { class: `badge ${c}` }, c)));
  });
  document.querySelector("#scores tbody").replaceChildren(...rows);
}

function renderPeers(peers) {
  const rows = peers.filter((p) => p.connection !== "none").map((p) =>
    h("tr", { "data-peer": p.peer },
      h("td", { class: "peer", title: p.peer }, short(p.peer)),
      h("td", { class: "connection" }, h("span", { class: `badge ${p.connection}` }, p.connection)),
      h("td", { class: "mono" }, p.connections.map((c) => `${c.addr} (${c.kind}, ${c.direction})`).join("\n"))));
  document.querySelector("#peers tbody").replaceChildren(...rows);
}

function renderLedger(rs) {
  const rows = rs.rounds.slice(-LEDGER_ROWS).reverse().map((r) =>
    h("tr", { "data-round": r.round, class: r.round === picked ? "picked" : null, onclick: () => pickRound(r.round) },
      h("td", { class: "num" }, r.round),
      h("td", {}, r.sealed_by || (r.restored ? "(restored)" : "")),
      h("td", { class: "num" }, r.accepted),
      h("td", { class: `num${r.rejected ? " neg" : ""}` }, r.rejected),
      h("td", { class: "num" }, r.evaluated ? pct(r.test_accuracy) : ""),
      cidCell(r.record),
      cidCell(r.model, modelFile(r.model))));
  if (rs.rounds.length > LEDGER_ROWS) {
    rows.push(h("tr", {}, h("td", { colspan: 7, class: "hint" }, `${rs.rounds.length - LEDGER_ROWS} older rounds: `, h("a", { href: "/v1/rounds" }, "/v1/rounds"))));
  }
  if (rs.initial_model) {
    rows.push(h("tr", { "data-round": "initial" }, h("td", {}, "initial"), h("td", { colspan: 5 }, ""), cidCell(rs.initial_model, modelFile(rs.initial_model))));
  }
  document.querySelector("#rounds tbody").replaceChildren(...rows);
}

async function pickRound(n) {
  picked = n;
  document.querySelectorAll("#rounds tbody tr").forEach((tr) => tr.classList.toggle("picked", tr.dataset.round === String(n)));
  const box = document.getElementById("round-detail");
  try {
    const { cid, record: rec } = await getJSON(`/v1/rounds/${n}`);
    const dl = h("dl", {},
      h("dt", {}, "record"), h("dd", { class: "mono" }, cid, " ", h("a", { href: `/v1/rounds/${n}` }, "JSON")),
      h("dt", {}, "previous"), h("dd", { class: "mono" }, rec.prev ? h("a", { href: "#", onclick: (e) => { e.preventDefault(); pickRound(n - 1); } }, cidOf(rec.prev)) : "none (round 0)"),
      h("dt", {}, "base model"), h("dd", { class: "mono" }, h("a", { href: modelFile(cidOf(rec.base)) }, cidOf(rec.base))),
      h("dt", {}, "model"), h("dd", { class: "mono" }, h("a", { href: modelFile(cidOf(rec.model)) }, cidOf(rec.model))),
      h("dt", {}, "sealed"), h("dd", {}, new Date(rec.sealed).toISOString()),
      // Not the sample seed: an int64 loses digits as a JavaScript number
      // (the record's JSON link has it exactly).
      h("dt", {}, "tier-2 sample"), h("dd", {}, rec.sample_size != null ? `${rec.sample_size} peers` : "none"));
    const entries = (rec.entries || []).map((e) =>
      h("tr", { "data-peer": e.peer, "data-verdict": e.verdict },
        h("td", { class: "peer", title: e.peer }, short(e.peer)),
        h("td", {}, h("span", { class: `badge ${e.verdict}` }, e.verdict)),
        h("td", { class: "reason" }, e.reason),
        h("td", { class: "evidence" }, e.evidence),
        h("td", { class: `num${e.score < 0 ? " neg" : ""}` }, e.score.toFixed(3)),
        cidCell(cidOf(e.contribution))));
    box.replaceChildren(h("h2", {}, `Round ${n}`), dl,
      h("table", { id: "entries" }, h("thead", {}, h("tr", {}, ["peer", "verdict", "reason", "evidence", "score", "contribution"].map((t) => h("th", {}, t)))),
        h("tbody", {}, entries)));
  } catch (err) {
    box.replaceChildren(h("p", { class: "neg" }, err.message));
  }
}

// cidOf reads a CID however the record's JSON spells it: a string, or an
// IPLD link {"/": "..."}.
const cidOf = (c) => (c && typeof c === "object" ? c["/"] : c);

async function poll() {
  const status = document.getElementById("status");
  try {
    let [swarm, rs, peers, scores] = await Promise.all(["/v1/swarm", `/v1/rounds?from=${rounds.length}`, "/v1/peers", "/v1/scores"].map(getJSON));
    if (swarmID === null) {
      swarmID = rs.swarm;
    } else if (rs.swarm !== swarmID || (rs.rounds.length && rs.rounds[0].round !== rounds.length)) {
      // Another swarm on this address, or a ledger that does not go on
      // from what the page holds: read it all again.
      rs = await getJSON("/v1/rounds");
      swarmID = rs.swarm;
      rounds = [];
    }
    rounds = rounds.concat(rs.rounds);
    rs.rounds = rounds;
    document.getElementById("name").textContent = swarm.manifest ? swarm.manifest.name : "";
    document.getElementById("swarm").textContent = `swarm ${swarm.swarm}`;
    renderCards(swarm, rs, peers.peers);
    renderCharts(rs.rounds);
    renderScores(scores.scores, peers.peers);
    renderPeers(peers.peers);
    renderLedger(rs);
    document.body.dataset.rounds = rs.rounds.length;
    document.body.dataset.polls = ++polls;
    status.className = "";
    status.textContent = `live · updated ${new Date().toLocaleTimeString()}`;
  } catch (err) {
    status.className = "error";
    status.textContent = `not updating: ${err.message}`;
  } finally {
    setTimeout(poll, POLL_MS);
  }
}

poll();
