/* saerec feature browser. Plain JavaScript, no libraries: it must open from file:// with no network.
   Data comes as data/<name>.js files that assign SAEREC.data[name] (a <script> tag loads from file://,
   fetch() does not). The playground calls the JSON API of `saerec browse` (POST /saerec/v1/recommend). */
"use strict";
const S = window.SAEREC = window.SAEREC || {};
S.data = S.data || {};
const COLORS = ["#2463b5", "#c8451e", "#2f9160", "#8a4fb8", "#b08a12", "#3aa0b8"];

function load(name) {
  if (S.data[name]) return Promise.resolve(S.data[name]);
  return new Promise((ok, fail) => {
    const s = document.createElement("script");
    s.src = "data/" + name + ".js";
    s.onload = () => (S.data[name] ? ok(S.data[name]) : fail(new Error("data/" + name + ".js has no data")));
    s.onerror = () => fail(new Error("cannot load data/" + name + ".js"));
    document.head.appendChild(s);
  });
}

function el(tag, attrs, ...kids) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (k === "text") e.textContent = v;
    else if (k.startsWith("on")) e.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) e.setAttribute(k, v === true ? "" : v);
  }
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const svgNS = "http://www.w3.org/2000/svg";
function sv(tag, attrs, ...kids) {
  const e = document.createElementNS(svgNS, tag);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, v);
  for (const k of kids.flat()) if (k !== null && k !== undefined) e.append(k instanceof Node ? k : String(k));
  return e;
}
const fmt = (x, d = 3) => (x === null || x === undefined || Number.isNaN(Number(x)) ? "–" : Number(x).toFixed(d));
const pct = (x) => (x === null || x === undefined ? "–" : (100 * x).toFixed(2) + "%");
const param = (name) => new URLSearchParams(location.search).get(name);
const title = (id) => ((S.data.items || {})[String(id)] || ["item " + id])[0];
const genresOf = (id) => ((S.data.items || {})[String(id)] || [null, []])[1];
const featureLink = (j, text) => el("a", {href: "feature.html?id=" + j, text: text || "#" + j});

function nav(page) {
  const links = [["index.html", "Features", "index"], ["attribute.html", "Attributes", "attribute"],
                 ["user.html", "Users", "user"], ["playground.html", "Playground", "playground"],
                 ["evaluation.html", "SAE evaluation", "evaluation"]];
  const m = S.data.meta;
  return el("header", {}, el("span", {class: "brand", text: "saerec"}),
            links.map(([h, t, p]) => el("a", {href: h, class: p === page ? "here" : null, text: t})),
            el("span", {class: "muted", text: m ? `${m.run}: ${m.model}, layer ${m.layer}, ${m.features} features` : ""}));
}

function itemChip(id, extra) {
  return el("span", Object.assign({class: "chip", title: title(id) + " (" + genresOf(id).join("|") + ")",
                                   "data-item": id}, extra || {}), title(id));
}

/* ---------------------------------------------------------------- charts (inline SVG) */
function barChart(labels, values, opts = {}) {
  const W = opts.width || 520, row = 16, left = opts.left || 150, H = labels.length * row + 24;
  const lo = Math.min(0, ...values.map((v) => v || 0)), hi = Math.max(1e-9, ...values.map((v) => v || 0));
  const x = (v) => left + ((v - lo) / (hi - lo)) * (W - left - 50);
  const g = sv("svg", {width: W, height: H, role: "img"});
  g.append(sv("line", {x1: x(0), x2: x(0), y1: 0, y2: H - 20, stroke: "#999"}));
  labels.forEach((lab, i) => {
    const v = values[i] || 0, y = i * row + 2;
    g.append(sv("text", {x: left - 6, y: y + 11, "text-anchor": "end"}, lab));
    g.append(sv("rect", {x: Math.min(x(0), x(v)), y, width: Math.abs(x(v) - x(0)), height: row - 4,
                         fill: (opts.highlight || []).includes(lab) ? "#c8451e" : (v < 0 ? "#9db3d6" : "#2463b5")}));
    g.append(sv("text", {x: Math.max(x(0), x(v)) + 4, y: y + 11}, fmt(values[i], opts.digits ?? 3)));
  });
  g.append(sv("text", {x: left, y: H - 4}, opts.xlabel || ""));
  return g;
}

function lineChart(series, opts = {}) {
  // opts.zero === false: the y axis spans the data only (AUCs near 0.8 would sit flat on a 0-1 axis)
  const W = opts.width || 420, H = opts.height || 230, L = 46, B = 34, T = opts.ylabel ? 24 : 10, R = 18;
  const xs = series.flatMap((s) => s.x), ys = series.flatMap((s) => s.y).filter((v) => v !== null);
  if (!xs.length || !ys.length) return el("p", {class: "muted", text: "no data"});
  const x0 = Math.min(...xs), x1 = Math.max(...xs), y1 = Math.max(...ys, 1e-9);
  const y0 = opts.zero === false ? Math.min(...ys) : Math.min(0, ...ys);
  const px = (v) => L + ((v - x0) / (x1 - x0 || 1)) * (W - L - R), py = (v) => H - B - ((v - y0) / (y1 - y0 || 1)) * (H - B - T);
  const g = sv("svg", {width: W, height: H, role: "img"});
  g.append(sv("line", {x1: L, x2: W - R, y1: H - B, y2: H - B, stroke: "#999"}), sv("line", {x1: L, x2: L, y1: T, y2: H - B, stroke: "#999"}));
  for (const t of [y0, (y0 + y1) / 2, y1]) g.append(sv("text", {x: L - 4, y: py(t) + 4, "text-anchor": "end"}, fmt(t, 2)));
  for (const t of [x0, (x0 + x1) / 2, x1]) g.append(sv("text", {x: px(t), y: H - B + 14, "text-anchor": "middle"}, fmt(t, 1)));
  g.append(sv("text", {x: (L + W) / 2, y: H - 4, "text-anchor": "middle"}, opts.xlabel || ""));
  g.append(sv("text", {x: 4, y: 12}, opts.ylabel || ""));
  series.forEach((s, i) => {
    const pts = s.x.map((v, k) => (s.y[k] === null ? null : px(v) + "," + py(s.y[k]))).filter(Boolean).join(" ");
    g.append(sv("polyline", {points: pts, fill: "none", stroke: COLORS[i % COLORS.length], "stroke-width": 2}));
  });
  const legend = el("div", {class: "legend"}, series.map((s, i) =>
    el("span", {}, el("span", {class: "sw", style: "background:" + COLORS[i % COLORS.length]}), s.name)));
  return el("div", {}, g, legend);
}

/* Figure 5: activation histogram, positions whose item has the label attribute vs not (share of each group, log scale). */
function histogram(h, label) {
  const W = 520, H = 220, L = 46, B = 34, T = 8, n = h.bins;
  const totP = h.present.reduce((a, b) => a + b, 0) + h.zero_present, totA = h.absent.reduce((a, b) => a + b, 0) + h.zero_absent;
  const P = h.present.map((c) => (totP ? c / totP : 0)), A = h.absent.map((c) => (totA ? c / totA : 0));
  const nz = [...P, ...A].filter((v) => v > 0), lo = Math.log10(Math.min(...nz, 1) / 2), hi = Math.log10(Math.max(...nz, 1e-9));
  const py = (v) => (v > 0 ? H - B - ((Math.log10(v) - lo) / (hi - lo || 1)) * (H - B - T) : H - B);
  const bw = (W - L - 10) / n, g = sv("svg", {width: W, height: H, role: "img"});
  g.append(sv("line", {x1: L, x2: W - 10, y1: H - B, y2: H - B, stroke: "#999"}));
  for (let i = 0; i < n; i++) {
    g.append(sv("rect", {x: L + i * bw, y: py(A[i]), width: bw / 2, height: H - B - py(A[i]), fill: "#9db3d6"}));
    g.append(sv("rect", {x: L + i * bw + bw / 2, y: py(P[i]), width: bw / 2, height: H - B - py(P[i]), fill: "#c8451e"}));
  }
  g.append(sv("text", {x: L, y: H - B + 14}, "0"), sv("text", {x: W - 10, y: H - B + 14, "text-anchor": "end"}, fmt(h.max, 2)));
  g.append(sv("text", {x: (L + W) / 2, y: H - 4, "text-anchor": "middle"}, "activation (when active)"));
  g.append(sv("text", {x: 4, y: T + 8}, "share (log)"));
  return el("div", {}, g, el("div", {class: "legend"},
    el("span", {}, el("span", {class: "sw", style: "background:#c8451e"}), `${label} present (${pct(totP ? 1 - h.zero_present / totP : 0)} active)`),
    el("span", {}, el("span", {class: "sw", style: "background:#9db3d6"}), `absent (${pct(totA ? 1 - h.zero_absent / totA : 0)} active)`)));
}

function itemTable(rows, scoreName) {
  return el("table", {}, el("tr", {}, el("th", {text: "#"}), el("th", {text: "item"}), el("th", {text: "genres"}),
                                      el("th", {class: "num", text: scoreName})),
            rows.map(([id, v], i) => el("tr", {"data-item": id}, el("td", {text: i + 1}), el("td", {text: title(id)}),
                                        el("td", {class: "muted", text: genresOf(id).join(", ")}), el("td", {class: "num", text: fmt(v, 3)}))));
}

function curveCharts(curves, metricLabel) {
  const names = Object.keys(curves || {});
  if (!names.length) return null;
  const series = (key) => names.map((n) => ({name: n, x: curves[n].values, y: curves[n][key]}));
  return el("div", {class: "grid2"}, lineChart(series("share"), {xlabel: "steering value", ylabel: metricLabel}),
            lineChart(series("ndcg"), {xlabel: "steering value", ylabel: "NDCG@10"}));
}

/* ---------------------------------------------------------------- pages */
const PAGES = {};

PAGES.index = function (root) {
  const idx = S.data.index, meta = S.data.meta, col = Object.fromEntries(idx.columns.map((c, i) => [c, i]));
  const rows = idx.rows.map((r) => ({r, text: (r[col.label] + " " + r[col.items].map(title).join(" ")).toLowerCase()}));
  const search = el("input", {type: "search", id: "search", placeholder: "search label or item title, or #id"});
  const attr = el("select", {id: "attribute"}, el("option", {value: "", text: "all attributes"}),
                  meta.attributes.map((a) => el("option", {value: a, text: a})));
  const sort = el("select", {id: "sort"}, [["correlation", "correlation"], ["frequency", "firing frequency"],
                                           ["max_activation", "max activation"], ["id", "feature id"]].map(([v, t]) => el("option", {value: v, text: t})));
  const hideDead = el("input", {type: "checkbox", id: "hide-dead"});
  const count = el("span", {id: "count", class: "muted"});
  const body = el("tbody", {id: "features"});
  function render() {
    const q = search.value.trim().toLowerCase(), a = attr.value, key = col[sort.value];
    let hit = rows.filter(({r, text}) => (!a || r[col.label] === a) && (!hideDead.checked || !r[col.dead]) &&
      (!q || (q.startsWith("#") ? String(r[col.id]) === q.slice(1) : text.includes(q))));
    hit = hit.slice().sort((x, y) => (sort.value === "id" ? x.r[key] - y.r[key] : (y.r[key] ?? -1e9) - (x.r[key] ?? -1e9)));
    count.textContent = `${hit.length} of ${rows.length} features` + (hit.length > 300 ? " (first 300 shown)" : "");
    body.replaceChildren(...hit.slice(0, 300).map(({r}) => el("tr", {"data-feature": r[col.id]},
      el("td", {}, featureLink(r[col.id])), el("td", {}, r[col.label], " ", r[col.dead] ? el("span", {class: "badge dead", text: "dead"}) : null),
      el("td", {class: "num", text: fmt(r[col.correlation])}), el("td", {class: "num", text: fmt(r[col.auc])}),
      el("td", {class: "num", text: pct(r[col.frequency])}), el("td", {class: "num", text: fmt(r[col.max_activation], 2)}),
      el("td", {class: "muted", text: r[col.items].slice(0, 3).map(title).join("; ")}))));
  }
  for (const c of [search, attr, sort, hideDead]) c.addEventListener("input", render);
  root.append(el("h1", {text: "SAE features"}),
    el("p", {class: "muted", text: `${meta.alive} of ${meta.features} features fire on the test users. Mean top-feature ` +
      `genre correlation: SAE ${fmt(meta.mean_top_correlation_sae)} vs raw neurons ${fmt(meta.mean_top_correlation_neurons)}.`}),
    el("div", {class: "controls"}, search, attr, el("label", {}, "sort by ", sort), el("label", {}, hideDead, " hide dead"), count),
    el("table", {}, el("thead", {}, el("tr", {}, ["feature", "label", "correlation", "AUC", "fires on", "max act.", "top items"].map(
      (t, i) => el("th", {class: i >= 2 && i <= 5 ? "num" : null, text: t})))), body));
  render();
};

PAGES.feature = async function (root) {
  const j = Number(param("id") || 0), f = await load("features/" + j), meta = S.data.meta;
  document.title = `#${j} ${f.label} – saerec`;
  const m = f.metrics, order = meta.attributes.map((a, i) => [a, f.correlation[i]]).sort((a, b) => (b[1] ?? -2) - (a[1] ?? -2));
  root.append(el("h1", {}, `Feature #${j}: ${f.label} `, f.dead ? el("span", {class: "badge dead", text: "dead"}) : null,
                 f.labelled === false ? el("span", {class: "badge dead", id: "unlabelled", text: "shown unlabelled"}) : null,
                 ...f.top_of.map((a) => el("span", {class: "badge", text: "top feature of " + a}))),
    el("table", {id: "metrics"}, [["correlation with " + f.label, fmt(m.label_correlation)], ["ROC AUC", fmt(m.label_auc)],
      ["sensitivity", fmt(m.label_sensitivity)], ["precision", fmt(m.label_precision)], ["fires on", pct(m.firing_frequency)],
      ["max activation", fmt(m.max_activation)], ["label confidence", fmt(m.label_confidence)]].map(([k, v]) =>
      el("tr", {}, el("th", {text: k}), el("td", {class: "num", text: v})))),
    confidenceNote(f, meta.label_threshold),
    el("p", {}, el("a", {href: "playground.html?feature=" + j, text: "steer this feature in the playground"})),
    el("div", {class: "grid2"},
      el("div", {}, el("h2", {text: "Correlation with every attribute"}),
         barChart(order.map((x) => x[0]), order.map((x) => x[1]), {highlight: [f.label], xlabel: "Pearson correlation"})),
      el("div", {}, el("h2", {text: `Activations, ${f.label} present vs absent`}), histogram(f.histogram, f.label))),
    el("h2", {text: "Top-activating positions: the user's history, shaded by the feature"}),
    el("div", {id: "tops"}, f.tops.length ? f.tops.map((t) => el("div", {},
      el("div", {class: "muted", text: `user ${t.user}, position ${t.position}, activation ${fmt(t.value, 3)}`}),
      el("div", {class: "chips"}, t.items.map(([id, v], k) => itemChip(id, {
        class: "chip" + (k === t.items.length - 1 ? " top" : ""),
        style: `background: rgba(200,69,30,${Math.max(0, Math.min(1, (v || 0) / (m.max_activation || 1))).toFixed(3)})`,
        title: `${title(id)}: ${fmt(v, 3)}`}))))) : el("p", {class: "muted", text: "never active on the test users"})),
    el("div", {class: "grid2"},
      el("div", {}, el("h2", {text: "Promoted items (logit change when added)"}), itemTable(f.promoted, "change")),
      el("div", {}, el("h2", {text: "Demoted items"}), itemTable(f.demoted, "change"))));
  const attrs = Object.keys(f.steering);
  root.append(el("h2", {text: "Steering curve"}), attrs.length ? el("div", {id: "steering"}, attrs.map((a) =>
    el("div", {}, el("p", {text: `Sweep of ${a}'s top feature: share of ${a} in the top 10 and NDCG@10`}), curveCharts(f.steering[a], a + " share"))))
    : el("p", {class: "muted", text: "not in the steering sweep (saerec steer-eval sweeps the attributes' top features)"}));
};

/* sae-eval's verdict on the label: held-out F1 of "fires on items with it", against the run's threshold */
function confidenceNote(f, threshold) {
  const c = f.metrics.label_confidence, link = el("a", {href: "evaluation.html", text: "SAE evaluation"});
  if (c === null || c === undefined)
    return el("p", {id: "confidence", class: "muted"}, "Label confidence not measured (run `saerec sae-eval`; see ", link, ").");
  return el("p", {id: "confidence"}, f.labelled
    ? `Shown as ${f.label}: label confidence ${fmt(c)} reaches the threshold ${fmt(threshold, 2)}. `
    : `Shown as unlabelled (saerec features, explain, the gRPC catalog): label confidence ${fmt(c)} is below the threshold ` +
      `${fmt(threshold, 2)}, so "${f.label}" is its best guess only. `, "See ", link, ".");
}

PAGES.attribute = function (root) {
  const all = S.data.attributes, name = param("name");
  if (!name) {
    const genres = all.filter((a) => a.is_genre).sort((a, b) => b.sae.correlation - a.sae.correlation);
    root.append(el("h1", {text: "Attributes"}), el("h2", {text: "Best SAE feature vs best raw neuron (genres)"}),
      lineChartPairs(genres), el("table", {id: "attributes"},
        el("tr", {}, ["attribute", "share", "top SAE feature", "SAE corr.", "SAE AUC", "top neuron corr."].map((t) => el("th", {text: t}))),
        all.map((a) => el("tr", {}, el("td", {}, el("a", {href: "attribute.html?name=" + encodeURIComponent(a.name), text: a.name})),
          el("td", {class: "num", text: pct(a.share)}), el("td", {}, featureLink(a.sae.feature)),
          el("td", {class: "num", text: fmt(a.sae.correlation)}), el("td", {class: "num", text: fmt(a.sae.auc)}),
          el("td", {class: "num", text: fmt(a.neuron.correlation)})))));
    return;
  }
  const a = all.find((x) => x.name === name);
  if (!a) { root.append(el("p", {class: "error", text: `no attribute ${name}`})); return; }
  root.append(el("h1", {text: `Attribute: ${a.name}`}), el("p", {class: "muted", text: `${pct(a.share)} of test positions`}),
    el("h2", {text: "Top SAE feature vs top raw neuron"}),
    barChart([`SAE feature #${a.sae.feature}`, `neuron ${a.neuron.index}`], [a.sae.correlation, a.neuron.correlation], {xlabel: "correlation", left: 170}),
    el("h2", {text: "Features most correlated with " + a.name}),
    el("table", {id: "top-features"}, el("tr", {}, el("th", {text: "feature"}), el("th", {text: "label"}), el("th", {class: "num", text: "correlation"})),
      a.top_features.map(([j, c]) => el("tr", {}, el("td", {}, featureLink(j)), el("td", {text: labelOf(j)}), el("td", {class: "num", text: fmt(c)})))),
    el("h2", {text: "Steering sweep"}), curveCharts(a.curves, a.name + " share") ||
      el("p", {class: "muted", text: "not swept (saerec steer-eval --set steer.attributes=[...])"}));
};
function labelOf(j) { const r = (S.data.index || {rows: []}).rows[j]; return r ? r[1] : ""; }
function lineChartPairs(genres) {
  return barChart(genres.flatMap((g) => [g.name + " SAE", g.name + " neuron"]),
                  genres.flatMap((g) => [g.sae.correlation, g.neuron.correlation]), {xlabel: "max correlation", left: 170});
}

function recList(items, plain) {
  const before = new Set((plain || []).map((it) => String(it.itemId)));
  return el("ol", {class: "list"}, (items || []).map((it) => el("li", {"data-item": it.itemId},
    plain && !before.has(String(it.itemId)) ? el("span", {class: "new", text: "+ "}) : null,
    it.title || title(it.itemId), el("span", {class: "muted", text: "  " + (it.genres || []).join("|") + "  " + fmt(it.score, 2)}))));
}

function explainView(ex) {
  const feats = ex.features || [];
  return el("div", {id: "explain"}, el("h2", {text: "Explain: features active at the last step"}),
    barChart(feats.map((f) => `#${f.featureId} ${f.label}`), feats.map((f) => f.activation), {xlabel: "activation", left: 170}),
    el("h2", {text: "Which features drove each recommended item"}),
    el("table", {}, el("tr", {}, el("th", {text: "item"}), el("th", {text: "top contributions (direct / total effect)"})),
      (ex.items || []).map((it) => el("tr", {}, el("td", {text: it.item.title}), el("td", {},
        (it.contributions || []).slice().sort((a, b) => (b.contribution || 0) - (a.contribution || 0)).slice(0, 3).map((c) =>
          el("span", {class: "chip"}, featureLink(c.featureId, `#${c.featureId} ${labelOf(c.featureId)}`),
             ` ${fmt(c.contribution, 2)} / ${fmt(c.totalEffect, 2)}`)))))));
}

PAGES.user = function (root) {
  const users = S.data.users, id = param("id");
  if (id === null) {
    root.append(el("h1", {text: "Test users"}), el("ul", {id: "users"}, users.map((u) => el("li", {},
      el("a", {href: "user.html?id=" + u.user, text: "user " + u.user}), el("span", {class: "muted", text: ` ${u.history.length} items`})))));
    return;
  }
  const u = users.find((x) => String(x.user) === id);
  if (!u) { root.append(el("p", {class: "error", text: `user ${id} has no page (the export covers ${users.length} test users)`})); return; }
  root.append(el("h1", {text: "User " + u.user}), el("h2", {text: `History (${u.history.length} items, oldest first)`}),
    el("div", {class: "chips", id: "history"}, u.history.map((i) => itemChip(i))),
    el("p", {}, "held-out next item: ", el("b", {text: title(u.held_out)})),
    el("h2", {text: "Recommendations"}), el("div", {id: "recs"}, recList(u.recommend.items)),
    el("p", {}, el("a", {href: "playground.html?user=" + u.user, text: "steer these in the playground"})),
    explainView(u.explain));
};

/* ---------------------------------------------------------------- playground: live, through the JSON API */
async function api(method, body) {
  const r = await fetch("saerec/v1/" + method, {method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(body)});
  const out = await r.json();
  if (!r.ok) throw new Error(out.error ? out.error.message : "HTTP " + r.status);
  return out;
}

PAGES.playground = function (root) {
  const meta = S.data.meta, hist = S.data.histories;
  root.append(el("h1", {text: "Steering playground"}));
  if (location.protocol === "file:") {
    root.append(el("p", {id: "offline", text: "The playground asks the running service for every list: start it with " +
      "`saerec browse --run RUN` and open http://localhost:8080/playground.html."}));
    return;
  }
  let history = [], plain = null, seq = 0;
  const status = el("div", {id: "status", class: "muted"});
  const chips = el("div", {class: "chips", id: "history"});
  const users = Object.keys(hist);
  const userSel = el("select", {id: "user"}, el("option", {value: "", text: "pick a test user"}), users.map((u) => el("option", {value: u, text: "user " + u})));
  const titles = Object.entries(S.data.items).map(([id, [t]]) => [t, Number(id)]);
  const byTitle = new Map(titles);
  const itemInput = el("input", {type: "text", id: "add-item", list: "titles", placeholder: "type an item title"});
  const mode = el("select", {id: "mode"}, ["add", "set"].map((m) => el("option", {value: m, text: m})));
  const sliders = el("div", {id: "sliders"});
  const featInput = el("input", {type: "number", id: "feature-id", min: 0, max: meta.features - 1, placeholder: "feature id", style: "width:110px"});
  const plainBox = el("div", {id: "plain"}), steerBox = el("div", {id: "steered"});
  function addSlider(target, label) {
    if (sliders.querySelector(`[data-target="${CSS.escape(String(target))}"]`)) return;
    const out = el("span", {class: "num", text: "0"});
    const input = el("input", {type: "range", min: -10, max: 10, step: 0.5, value: 0, "data-target": target,
                               oninput: () => { out.textContent = input.value; schedule(); }});
    sliders.append(el("div", {class: "slider"}, el("span", {text: label}), input, out));
  }
  meta.genres.forEach((g) => addSlider(g, g));
  function renderHistory() {
    chips.replaceChildren(...history.map((id, k) => el("span", {class: "chip", "data-item": id}, title(id),
      el("button", {title: "remove", text: "×", onclick: () => { history.splice(k, 1); plain = null; renderHistory(); schedule(); }}))));
  }
  function steering() {
    return [...sliders.querySelectorAll("input[type=range]")].filter((s) => Number(s.value) !== 0).map((s) => {
      const t = s.dataset.target, e = /^\d+$/.test(t) ? {featureId: Number(t)} : {attribute: t};
      return Object.assign(e, {value: Number(s.value), mode: "STEERING_MODE_" + mode.value.toUpperCase()});
    });
  }
  let timer = null;
  function schedule() { clearTimeout(timer); timer = setTimeout(update, 120); }
  async function update() {
    const mine = ++seq;
    if (!history.length) { status.textContent = "pick a user or add items"; return; }
    const body = {history, k: 10, steering: steering()};
    try {
      if (!plain) plain = await api("recommend", {history, k: 10});
      const r = await api("recommend", body);
      if (mine !== seq) return;
      plainBox.replaceChildren(el("h2", {text: "unsteered"}), recList(plain.items));
      steerBox.replaceChildren(el("h2", {text: "steered"}), recList(r.items, plain.items));
      steerBox.dataset.request = JSON.stringify(body);
      steerBox.dataset.seq = mine;
      status.textContent = (r.appliedSteering || []).map((s) => `#${s.featureId} ${s.label} ${s.mode.replace("STEERING_MODE_", "").toLowerCase()} ${s.value}`).join(", ") || "no steering";
      status.className = "muted";
    } catch (e) {
      if (mine !== seq) return;
      status.textContent = e.message; status.className = "error";
      steerBox.dataset.seq = mine;
    }
  }
  userSel.addEventListener("change", () => { history = (hist[userSel.value] || []).slice(); plain = null; renderHistory(); schedule(); });
  itemInput.addEventListener("change", () => { const id = byTitle.get(itemInput.value); if (id) { history.push(id); itemInput.value = ""; plain = null; renderHistory(); schedule(); } });
  mode.addEventListener("change", schedule);
  root.append(el("div", {class: "controls"}, userSel, itemInput, el("datalist", {id: "titles"}, titles.map(([t]) => el("option", {value: t})))),
    chips, el("div", {class: "controls"}, el("label", {}, "mode ", mode), featInput,
      el("button", {id: "add-feature", text: "add feature slider", onclick: () => {
        const j = Number(featInput.value); if (Number.isInteger(j) && j >= 0 && j < meta.features && featInput.value !== "") addSlider(String(j), `#${j} ${labelOf(j)}`); }})),
    el("p", {class: "muted", text: "A slider at 0 is no edit. add: the feature plus the value; set: the feature equal to the value (the paper)."}),
    sliders, status, el("div", {class: "grid2"}, plainBox, steerBox));
  const f = param("feature"), u = param("user") || (users.length ? users[0] : null);
  if (f !== null) addSlider(f, `#${f} ${labelOf(Number(f))}`);
  if (u !== null && hist[u]) { userSel.value = u; history = hist[u].slice(); renderHistory(); schedule(); }
};

window.addEventListener("DOMContentLoaded", async () => {
  const page = document.body.dataset.page, root = el("main", {id: "root"});
  document.body.append(nav(page), root);
  try {
    await PAGES[page](root);
    document.body.dataset.readyMs = performance.now().toFixed(1);   // since navigation started
    document.body.dataset.ready = "1";
  } catch (e) {
    root.append(el("p", {class: "error", id: "load-error", text: e.message}));
    document.body.dataset.ready = "error";
  }
});
