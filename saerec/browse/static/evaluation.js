/* saerec feature browser: the SAE evaluation page, what `saerec sae-eval` wrote to RUN/saeeval/ (and
   `saerec steer-eval`'s off-target matrix), from data/evaluation.js. Nothing is computed here beyond
   sorting. Loaded after app.js on evaluation.html only: it uses app.js's helpers (el, fmt, barChart, ...). */
"use strict";

const winnerCell = (w) => el("td", {class: "win " + (w || "none").toLowerCase(), text: w || "–"});
const headRow = (names, numeric) => el("tr", {}, names.map((t, i) => el("th", {class: i >= numeric ? "num" : null, text: t})));
const numCell = (x, d = 3) => el("td", {class: "num", text: fmt(x, d)});

function probingSection(p) {
  const f = p.full_probe, better = (a, b) => (a !== null && b !== null && a > b ? "best" : null);
  const rows = p.rows.map((r) => el("tr", {"data-k": r.k}, el("td", {text: "k=" + r.k}),
    el("td", {class: "num " + (better(r.sae?.auc, r.neurons?.auc) || ""), text: fmt(r.sae?.auc)}),
    el("td", {class: "num " + (better(r.neurons?.auc, r.sae?.auc) || ""), text: fmt(r.neurons?.auc)}),
    numCell(r.sae?.f1), numCell(r.neurons?.f1)));
  if (f) rows.push(el("tr", {"data-k": "full"}, el("td", {text: `full probe (all ${f.units} neurons)`}),
    el("td", {class: "num", colspan: 2, text: fmt(f.auc)}), el("td", {class: "num", colspan: 2, text: fmt(f.f1)})));
  const ks = p.rows.map((r) => r.k), series = [
    {name: "SAE latents", x: ks, y: p.rows.map((r) => r.sae?.auc ?? null)},
    {name: "neurons", x: ks, y: p.rows.map((r) => r.neurons?.auc ?? null)}];
  if (f) series.push({name: "full probe", x: ks, y: ks.map(() => f.auc)});
  return [el("h2", {text: "k-sparse probing"}),
    el("p", {class: "muted", text: "For each attribute, the k SAE latents (or raw neurons) whose means differ most between " +
      "positions with and without it, chosen on users with even ids; a logistic regression on them, scored on users with odd ids. " +
      "Mean held-out ROC AUC and F1 over the attributes."}),
    el("div", {class: "grid2"}, el("table", {id: "probing"}, headRow(["k", "SAE AUC", "neurons AUC", "SAE F1", "neurons F1"], 1), rows),
       lineChart(series, {xlabel: "k", ylabel: "mean AUC", zero: false}))];
}

function k1Section(attrs) {
  return [el("h2", {text: "k=1: best SAE latent vs best neuron, per attribute"}),
    el("table", {id: "k1"}, headRow(["attribute", "SAE latent", "SAE AUC", "neuron", "neuron AUC", "higher AUC", "full probe AUC"], 2),
      attrs.map((a) => el("tr", {"data-attribute": a.name},
        el("td", {}, el("a", {href: "attribute.html?name=" + encodeURIComponent(a.name), text: a.name}),
           a.is_genre ? null : el("span", {class: "muted", text: " (not a genre)"})),
        el("td", {class: "num"}, a.sae.latent === null ? "–" : featureLink(a.sae.latent)), numCell(a.sae.auc),
        el("td", {class: "num", text: a.neuron.index ?? "–"}), numCell(a.neuron.auc), winnerCell(a.winner), numCell(a.full_probe_auc))))];
}

function absorptionSection(attrs) {
  const order = attrs.slice().sort((a, b) => (b.absorption_fraction ?? -1) - (a.absorption_fraction ?? -1));
  return [el("h2", {text: "Absorption"}),
    el("p", {class: "muted", text: "On held-out positions with the attribute that the full probe gets right: the share of the " +
      "input's projection on the probe carried by other latents instead of the main ones (absorption fraction), and how often every " +
      "main latent is silent while one other latent carries it (full absorption)."}),
    el("div", {class: "grid2"},
      el("table", {id: "absorption"}, headRow(["attribute", "main latents", "probe AUC", "rows scored", "absorption fraction", "full absorption"], 2),
        order.map((a) => el("tr", {"data-attribute": a.name}, el("td", {text: a.name}),
          el("td", {}, a.main_latents.flatMap((j) => [featureLink(j), " "])), numCell(a.probe_auc),
          el("td", {class: "num", text: a.rows}), numCell(a.absorption_fraction), numCell(a.full_absorption_rate)))),
      barChart(order.map((a) => a.name), order.map((a) => a.absorption_fraction), {xlabel: "absorption fraction", left: 120}))];
}

function confidenceSection(c, s) {
  const h = c.histogram, labels = h.counts.map((_, i) => `${fmt(h.edges[i], 2)}–${fmt(h.edges[i + 1], 2)}`);
  const cols = Object.fromEntries(c.columns.map((name, i) => [name, i]));
  const sort = el("select", {id: "low-sort"}, [["confidence", "lowest confidence first"], ["correlation", "highest label correlation first"],
    ["frequency", "fires most often first"]].map(([v, t]) => el("option", {value: v, text: t})));
  const body = el("tbody", {id: "low-confidence"});
  function render() {
    const k = cols[sort.value], sign = sort.value === "confidence" ? 1 : -1;
    const rows = c.low.slice().sort((a, b) => sign * ((a[k] ?? 0) - (b[k] ?? 0)));
    body.replaceChildren(...rows.slice(0, 50).map((r) => el("tr", {"data-feature": r[cols.feature]},
      el("td", {}, featureLink(r[cols.feature])), el("td", {text: r[cols.label]}), numCell(r[cols.confidence]),
      numCell(r[cols.correlation]), el("td", {class: "num", text: pct(r[cols.frequency])}))));
  }
  sort.addEventListener("input", render);
  render();
  return [el("h2", {text: "Label confidence"}),
    el("p", {id: "confidence-summary"}, `${c.labelled} of ${c.alive} live features (${pct(s.labelled_fraction)}) reach the threshold ` +
      `${fmt(c.threshold, 2)} and keep their label; the other ${c.alive - c.labelled} are shown unlabelled. Mean label confidence ` +
      `${fmt(s.mean_label_confidence)}.`),
    el("p", {class: "muted", text: "Label confidence: how well \"fires on items with its label\" predicts where the feature fires on " +
      "users it was not labelled on (held-out F1, corrected for chance: 0 at chance, 1 when it fires exactly on its label)."}),
    el("div", {class: "grid2"}, el("div", {}, barChart(labels, h.counts, {xlabel: "live features (below the threshold in red)", left: 90,
      digits: 0, highlight: labels.filter((_, i) => h.edges[i + 1] <= c.threshold)})),
      el("div", {}, el("div", {class: "controls"}, el("label", {}, "unlabelled features, ", sort),
        el("span", {class: "muted", text: c.low.length > 50 ? `first 50 of ${c.low.length}` : `${c.low.length} features`})),
        el("table", {}, el("thead", {}, headRow(["feature", "best-guess label", "confidence", "label corr.", "fires on"], 2)), body)))];
}

function isolationSection(iso) {
  if (!iso) return [el("h2", {text: "Steering isolation"}), el("p", {class: "muted", id: "no-isolation",
    text: "Not measured: `saerec steer-eval` writes RUN/steer/isolation.json from its sweep."})];
  const lim = Math.max(1e-9, ...iso.rows.flatMap(([, v]) => v.map((x) => Math.abs(x || 0))));
  const shade = (x) => (x === null ? "" : `background: rgba(${x > 0 ? "200,69,30" : "36,99,181"},${(Math.abs(x) / lim).toFixed(3)})`);
  return [el("h2", {text: "Steering isolation"}),
    el("p", {class: "muted", text: `Curve ${iso.curve} at value ${fmt(iso.value, 1)}: the change of every genre's share of the top 10 ` +
      "when one attribute is steered. Isolation = own change / mean absolute change of the other genres."}),
    el("table", {id: "isolation"}, headRow(["steered", "own change", "mean |off-target|", "isolation", "worst off-target"], 1),
      iso.scores.map((r) => el("tr", {}, el("td", {text: r.attribute}), numCell(r.own_change), numCell(r.mean_abs_off_target),
        numCell(r.isolation, 2), el("td", {text: r.worst_off_target ? `${r.worst_off_target} (${fmt(r.worst_off_target_change)})` : "–"})))),
    el("h2", {text: "Off-target matrix (steered attribute x genre share change)"}),
    el("div", {class: "scroll"}, el("table", {id: "off-target", class: "matrix"}, el("tr", {}, el("th", {text: "steered"}),
      iso.genres.map((g) => el("th", {class: "num", text: g}))),
      iso.rows.map(([a, v]) => el("tr", {}, el("th", {text: a}), v.map((x, i) => el("td", {class: "num" + (iso.genres[i] === a ? " own" : ""),
        style: shade(x), text: fmt(x, 3)}))))))];
}

function plantedSection(p) {
  if (!p) return [];
  return [el("h2", {text: "Planted genres (synthetic data)"}),
    el("p", {text: `MCC (matched mean |correlation|): SAE ${fmt(p.mcc_sae)} vs neurons ${fmt(p.mcc_neurons)}. Genre directions ` +
      `recovered at cosine ≥ ${fmt(p.threshold, 2)}: SAE ${pct(p.recovered_fraction_sae)}, neuron axes ${pct(p.recovered_fraction_neuron_axes)}.`}),
    el("table", {id: "planted"}, headRow(["genre", "matched latent", "max cosine, SAE", "max cosine, neuron axis"], 2),
      p.planted.map((g) => el("tr", {}, el("td", {text: g}), el("td", {class: "num"}, featureLink(p.matched_latent[g])),
        numCell(p.max_cosine_sae[g]), numCell(p.max_cosine_neuron_axis[g]))))];
}

PAGES.evaluation = function (root) {
  const ev = S.data.evaluation;
  root.append(el("h1", {text: "SAE evaluation"}));
  if (!ev.available) {
    root.append(el("p", {id: "missing"}, "sae-eval has not been run on this run: run ", el("code", {text: ev.command}),
      ", then open the site again (`saerec browse` rebuilds it; `saerec report --html` writes it anew)."));
    return;
  }
  const s = ev.summary;
  root.append(...[el("p", {id: "eval-meta", text: `${s.sae.kind} SAE x${s.sae.n_latents} on ${s.layer}; ${s.positions.toLocaleString("en")} ` +
      `test positions (probes fitted on users with even ids, scored on odd ids; ${s.sample_rows.toLocaleString("en")} positions ` +
      `sampled for the probes); sae-eval took ${fmt(s.seconds, 0)} s.`}),
    ev.outdated ? el("p", {class: "error", id: "outdated", text: "The SAE was trained again after sae-eval ran: these numbers are " +
      "for the earlier SAE. Run `saerec sae-eval` again."}) : null,
    el("ul", {id: "headline"},
      el("li", {text: `k=1: the best SAE latent has a higher AUC than the best neuron on ${pct(s.k1_sae_beats_neurons_genres)} of ` +
        `${s.k1_genres_compared} genres.`}),
      el("li", {text: `Absorption: mean fraction ${fmt(s.mean_absorption_fraction)}, full absorption rate ${fmt(s.mean_full_absorption_rate)}.`}),
      el("li", {text: `Label confidence: ${pct(s.labelled_fraction)} of ${s.alive_features} live features keep their label ` +
        `(threshold ${fmt(s.min_label_confidence, 2)}).`})),
    ...probingSection(ev.probing), ...k1Section(ev.attributes), ...absorptionSection(ev.attributes),
    ...confidenceSection(ev.confidence, s), ...isolationSection(ev.isolation), ...plantedSection(ev.planted),
    el("h2", {text: "Plots"}), ev.images.length ? el("div", {id: "plots"}, ev.images.map((im) =>
      el("figure", {}, el("img", {src: im.src, alt: im.caption}), el("figcaption", {class: "muted", text: im.caption}))))
      : el("p", {class: "muted", text: "no plots in the run"})].filter(Boolean));
};
