// sparkamp serve: the page over the HTTP API (no framework, nothing loaded from elsewhere).
"use strict";

const $ = (sel) => document.querySelector(sel);
const state = { info: null, offset: 0, pageSize: 48, labelsTimer: null, lastQuery: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child);
  return node;
}

// ids become one path segment: slashes and dots encoded so that no browser collapses `..`
const idPath = (id) => encodeURIComponent(id).replace(/\./g, "%2E");

async function api(path, options = {}) {
  const response = await fetch(path, options);
  const type = response.headers.get("content-type") || "";
  const body = type.includes("json") ? await response.json() : { detail: await response.text() };
  if (!response.ok) {
    let detail = typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
    if (response.status === 413 && !type.includes("json") && state.info) {  // refused before it was read
      detail = `the request is over the server's limit of ${state.info.max_upload_bytes} bytes (max_upload_bytes)`;
    }
    const error = new Error(`${response.status}: ${detail}`);
    error.status = response.status;
    throw error;
  }
  return body;
}

function say(target, text, isError = false) {
  const node = $(target);
  node.textContent = text;
  node.classList.toggle("error", isError);
}

function showTab(name) {
  document.querySelectorAll(".tab").forEach((b) => b.classList.toggle("on", b.dataset.tab === name));
  document.querySelectorAll(".panel").forEach((p) => p.classList.toggle("on", p.id === `tab-${name}`));
  if (name === "explore" && !$("#items").childElementCount) loadItems(0);
  if (name === "map" && !$("#map").childElementCount) drawMap("#map", "index");
}

// ---- cards ---------------------------------------------------------------------------------
function card(item, onClick) {
  const cls = ["card", item.hit === true ? "hit" : item.hit === false ? "miss" : "",
               item.status && item.status !== "ok" ? "bad" : ""].join(" ").trim();
  const figure = el("figure", { class: cls, "data-id": item.id, title: item.id });
  if (state.info.kind === "image" && state.info.tables.embeddings && (!item.status || item.status === "ok")) {
    const img = el("img", { src: `/api/thumbnails/${idPath(item.id)}`, alt: item.id, loading: "lazy" });
    img.addEventListener("error", () => img.replaceWith(el("div", { class: "ph" }, "no thumbnail")));
    figure.append(img);
  } else {
    figure.append(el("div", { class: "ph" }, item.status && item.status !== "ok" ? `${item.status}: ${item.error || ""}` : item.id));
  }
  const bits = [];
  if (item.rank !== undefined) bits.push(`#${item.rank}`);
  if (item.score !== undefined && item.score !== null) bits.push(Number(item.score).toFixed(3));
  if (item.label) bits.push(item.label);
  figure.append(el("figcaption", {}, `${bits.join(" · ")} ${bits.length ? "·" : ""} ${item.id}`));
  if (onClick && (!item.status || item.status === "ok")) figure.addEventListener("click", () => onClick(item.id));
  return figure;
}

function fill(target, items, onClick) {
  const node = $(target);
  node.replaceChildren(...items.map((item) => card(item, onClick)));
}

// ---- search ----------------------------------------------------------------------------------
function showAnswer(answer, title) {
  $("#query-title").textContent = title;
  const t = answer.timings_ms;
  $("#search-timings").textContent = `embed ${t.embed.toFixed(1)} ms · search ${t.search.toFixed(1)} ms`;
  fill("#results", answer.neighbours, searchById);
  state.lastQuery = answer.map;
  if ($("#map").childElementCount) placeStar("#map", answer.map);
}

async function searchWith(form, title) {
  form.append("k", $("#k").value || state.info.k);
  say("#search-status", "searching…");
  try {
    const answer = await api("/api/search", { method: "POST", body: form });
    say("#search-status", `${answer.neighbours.length} results`);
    showAnswer(answer, title);
  } catch (error) {
    say("#search-status", error.message, true);
  }
}

function searchImage(file) {
  if (!file) return;
  if (file.size > state.info.max_upload_bytes) {
    say("#search-status", `${file.name} is ${file.size} bytes; the limit is ${state.info.max_upload_bytes}`, true);
    return;
  }
  const form = new FormData();
  form.append("image", file, file.name || "pasted image");
  searchWith(form, `nearest to ${file.name || "the pasted image"}`);
}

async function searchById(id) {
  showTab("search");
  say("#search-status", `searching by ${id}…`);
  const k = $("#k").value || state.info.k;
  try {
    const answer = await api(`/api/items/${idPath(id)}/neighbours?source=index&k=${k}`);
    say("#search-status", `${answer.neighbours.length} results`);
    showAnswer(answer, `nearest to ${id}${answer.label ? ` (${answer.label})` : ""}`);
  } catch (error) {
    say("#search-status", error.message, true);
  }
}

function setUpSearch() {
  $("#k").value = state.info.k;
  if (state.info.kind === "image") {
    $("#image-query").hidden = false;
    const drop = $("#drop");
    $("#file").addEventListener("change", (e) => searchImage(e.target.files[0]));
    drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
    drop.addEventListener("dragleave", () => drop.classList.remove("over"));
    drop.addEventListener("drop", (e) => {
      e.preventDefault();
      drop.classList.remove("over");
      searchImage(e.dataTransfer.files[0]);
    });
    document.addEventListener("paste", (e) => {
      const file = [...(e.clipboardData || { files: [] }).files].find((f) => f.type.startsWith("image/"));
      if (file && $("#tab-search").classList.contains("on")) searchImage(file);
    });
  } else {
    $("#text-query").hidden = false;
    $("#text-query").addEventListener("submit", (e) => {
      e.preventDefault();
      const form = new FormData();
      form.append("text", $("#query-text").value);
      searchWith(form, "nearest to the text");
    });
  }
}

// ---- explore ---------------------------------------------------------------------------------
async function loadItems(offset) {
  const page = await api(`/api/items?offset=${offset}&limit=${state.pageSize}`);
  state.offset = offset;
  $("#items-range").textContent = `${offset + 1}–${offset + page.items.length} of ${page.total}`;
  $("#items-prev").disabled = offset === 0;
  $("#items-next").disabled = offset + page.items.length >= page.total;
  fill("#items", page.items, showItem);
}

async function showItem(id) {
  $("#item-panel").hidden = false;
  $("#item-title").textContent = `${id}: its neighbours`;
  $("#item-panel").scrollIntoView({ behavior: "smooth" });
  try {
    const answer = await api(`/api/items/${idPath(id)}/neighbours`);
    say("#item-status", `${answer.label ? `gold ${answer.label} · ` : ""}from the ${answer.source}`);
    fill("#item-neighbours", answer.neighbours, showItem);
  } catch (error) {
    say("#item-status", error.message, true);
  }
  if (state.info.compare) showComparison(id);
}

async function showComparison(id) {
  const result = await api(`/api/items/${idPath(id)}/compare`);
  $("#compare").replaceChildren(...result.indexes.map((side, i) => {
    const m = side.metrics;
    const score = m ? `rank-weighted precision@${result.k} ${m.rank_weighted_precision.toFixed(3)} · ` +
      `precision@${result.k} ${m.precision.toFixed(3)}` : side.error || "no gold label: hits unknown";
    const grid = el("div", { class: "grid small", id: `compare-${i}` });
    grid.replaceChildren(...side.neighbours.map((n) => card(n, showItem)));
    return el("div", {}, el("h2", {}, side.index), el("p", { class: "muted" }, score), grid);
  }));
}

async function measureComparison() {
  say("#compare-overall", "measuring…");
  const result = await api("/api/compare");
  const rows = result.indexes.map((side) => el("tr", {}, el("td", {}, side.index), el("td", {}, String(side.queries)),
    el("td", {}, side.metrics.rank_weighted_precision?.toFixed(3) ?? "–"),
    el("td", {}, side.metrics.precision?.toFixed(3) ?? "–")));
  const head = el("tr", {}, el("th", {}, "index"), el("th", {}, "queries"),
    el("th", {}, `rank-weighted precision@${result.k}`), el("th", {}, `precision@${result.k}`));
  $("#compare-overall").replaceChildren(el("table", {}, head, ...rows));
}

async function loadGroupsAndUnique() {
  if (state.info.tables.duplicates) {
    $("#groups-box").hidden = false;
    const found = await api("/api/duplicates?limit=12");
    $("#groups-total").textContent = `${found.total} groups; the largest`;
    $("#groups").replaceChildren(...found.groups.map((g) => el("div", { class: "group" },
      ...g.members.map((m) => card({ id: m.id, score: m.score }, showItem)))));
  }
  if (state.info.tables.uniqueness) {
    $("#unique-box").hidden = false;
    const found = await api("/api/unique?limit=24");
    fill("#unique", found.items.map((r) => ({ ...r, score: r.nearest_score })), showItem);
  }
}

// ---- maps ------------------------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  return node;
}

function toView(target, point) {
  const [, , w, h] = $(target).getAttribute("viewBox").split(" ").map(Number);
  return [12 + point.x * (w - 24), 12 + (1 - point.y) * (h - 24)];
}

async function drawMap(target, which) {
  const map = await api(`/api/map/${which}`);
  const node = $(target);
  node.replaceChildren(...map.points.map((p) => {
    const [x, y] = toView(target, p);
    const dot = svg("circle", { cx: x.toFixed(1), cy: y.toFixed(1), r: 3.5, fill: map.colours[p.label] || "#bbb" });
    dot.append(svg("title", {}));
    dot.firstChild.textContent = `${p.id}${p.label ? ` (${p.label})` : ""}`;
    dot.addEventListener("click", () => searchById(p.id));
    return dot;
  }));
  const legend = el("p", { class: "legend" }, ...Object.entries(map.colours).map(([label, colour]) => {
    const swatch = el("span", { class: "swatch" });
    swatch.style.background = colour;
    return el("span", {}, swatch, label);
  }));
  if (node.nextElementSibling?.classList.contains("legend")) node.nextElementSibling.remove();
  node.after(legend);
  if (target === "#map") {
    $("#map-about").textContent = `${map.method.toUpperCase()} of ${map.source}; the last query is the star`;
    if (state.lastQuery) placeStar("#map", state.lastQuery);
  }
}

function placeStar(target, point) {
  if (!point) return;
  const node = $(target);
  node.querySelector(".star")?.remove();
  const [x, y] = toView(target, point);
  const arms = [...Array(10).keys()].map((i) => {
    const r = i % 2 ? 5 : 12, a = Math.PI / 5 * i - Math.PI / 2;
    return `${(x + r * Math.cos(a)).toFixed(1)},${(y + r * Math.sin(a)).toFixed(1)}`;
  });
  node.append(svg("polygon", { class: "star", points: arms.join(" ") }));
}

// ---- labels ----------------------------------------------------------------------------------
function labelList() {
  return $("#label-list").value.split("\n").map((line) => line.trim()).filter(Boolean).map((line) => {
    const at = line.indexOf(":");
    return at > 0 ? { name: line.slice(0, at).trim(), description: line.slice(at + 1).trim() } : line;
  });
}

async function scoreLabels() {
  const text = $("#label-text").value;
  if (!text.trim()) { say("#label-status", "type a text first"); return; }
  const method = $("#label-method").value;
  say("#label-status", "scoring…");
  try {
    const result = await api("/api/labels", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ text, labels: method === "head" ? null : labelList(), method }) });
    const top = Math.max(...result.scores.map((s) => s.score), 1e-9);
    $("#bars").replaceChildren(...result.scores.map((s) => {
      const bar = el("div", { class: "bar-fill" });
      bar.style.width = `${Math.max(0, s.score / top) * 100}%`;
      return el("div", { class: "bar", "data-label": s.label }, el("span", { class: "bar-label" }, s.label),
        el("div", { class: "bar-track" }, bar), el("span", { class: "bar-value" }, s.score.toFixed(3)));
    }));
    $("#label-timings").textContent = `embed ${result.timings_ms.embed.toFixed(1)} ms · score ${result.timings_ms.score.toFixed(2)} ms`;
    say("#label-status", `${result.method}: ${result.scores[0].label} first`);
    if (result.map) placeStar("#label-map", result.map);
  } catch (error) {
    say("#label-status", error.message, true);
    if (error.status === 503) setTimeout(scoreLabels, 3000);  // Zmap is being fitted: try again
  }
}

async function applyLabels() {
  const method = $("#label-method").value;
  $("#apply-box").hidden = false;
  try {
    let task = await api("/api/labels/apply", { method: "POST", headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ labels: method === "head" ? null : labelList(), method }) });
    while (task.state === "running") {
      $("#apply-progress").value = task.progress;
      say("#apply-status", `${task.stage}… ${(task.progress * 100).toFixed(0)} % (${task.seconds} s)`);
      await new Promise((done) => setTimeout(done, 1000));
      task = await api(`/api/tasks/${task.task}`);
    }
    $("#apply-progress").value = task.state === "done" ? 1 : 0;
    if (task.state !== "done") { say("#apply-status", `${task.stage}: ${task.errors.join(" ")}`, true); return; }
    say("#apply-status", `done in ${task.seconds} s: ${task.output}`);
    const rows = (await api(`/api/tasks/${task.task}/rows`)).rows;
    $("#apply-rows").replaceChildren(el("table", {}, el("tr", {}, ...["id", "label", "score", "rank"].map((h) => el("th", {}, h))),
      ...rows.map((r) => el("tr", {}, el("td", {}, r.id), el("td", {}, r.label), el("td", {}, r.score?.toFixed(3) ?? ""),
        el("td", {}, String(r.rank))))));
  } catch (error) {
    say("#apply-status", error.message, true);
  }
}

function setUpLabels() {
  const labels = state.info.labels;
  if (!labels) {
    $("#labels-off").hidden = false;
    say("#labels-off", "No label playground: start the server with --label-set, --labels-head or --label-embeddings.");
    return;
  }
  $("#labels-on").hidden = false;
  $("#label-list").value = labels.labels.map((l) => l.description ? `${l.name}: ${l.description}` : l.name).join("\n");
  $("#label-method").replaceChildren(...labels.methods.map((m) => el("option", { value: m }, m)));
  $("#label-go").addEventListener("click", scoreLabels);
  const later = () => { clearTimeout(state.labelsTimer); state.labelsTimer = setTimeout(scoreLabels, 500); };
  $("#label-list").addEventListener("input", later);
  $("#label-method").addEventListener("change", later);
  if (labels.apply) {
    $("#apply-go").hidden = false;
    $("#apply-go").title = `label every row of ${labels.apply} with these labels (a Spark job)`;
    $("#apply-go").addEventListener("click", applyLabels);
  }
  if (labels.map) { $("#label-map").hidden = false; drawMap("#label-map", "labels"); }
}

async function start() {
  state.info = await api("/api/info");
  const i = state.info;
  $("#about").textContent = `${i.model} · ${i.ntotal} ${i.kind}s indexed (${i.factory})${i.gold ? " · gold labels" : ""}`;
  document.querySelectorAll(".tab").forEach((b) => b.addEventListener("click", () => showTab(b.dataset.tab)));
  $("#items-prev").addEventListener("click", () => loadItems(Math.max(0, state.offset - state.pageSize)));
  $("#items-next").addEventListener("click", () => loadItems(state.offset + state.pageSize));
  if (i.compare) { $("#compare-box").hidden = false; $("#compare-go").addEventListener("click", measureComparison); }
  setUpSearch();
  setUpLabels();
  loadGroupsAndUnique();
  document.body.dataset.ready = "1";
}

start().catch((error) => { $("#about").textContent = `cannot start: ${error.message}`; });
