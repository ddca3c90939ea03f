/**
 * `inspect --html OUT`: a self-contained explorer folder that opens from disk (no server,
 * no network, no script needed):
 *
 *   OUT/index.html        summary, training curves (metrics.jsonl), the collapsible tree
 *                         (nested <details>; a click on a node's row opens its children)
 *   OUT/features/F.html   one page per feature: place in the tree, density, top tokens or
 *                         matched true feature, activating contexts, activation histogram,
 *                         the §6.1 child-subspace geometry plot, sibling co-occurrence (§6.3),
 *                         nearest features by decoder cosine
 *   OUT/style.css
 *
 * Pages are written for the features that fired most (all of them up to `maxPages`); tree
 * nodes without a page are shown without a link. Plots are SVG from charts.ts.
 */
import { join } from "node:path";
import { ArborError } from "../errors.ts";
import { numFeatures } from "../sae/config.ts";
import type { Inspection } from "./inspection.ts";
import { ancestors, checkFeature, subtree } from "./structure.ts";
import { topTokens } from "./profile.ts";
import { contextOf } from "./contexts.ts";
import { activeTrueFeatures, describeMatch, shortPath } from "./truth_match.ts";
import { childGeometry } from "./geometry.ts";
import { cooccurrenceChart, geometryChart, histogramChart, trainingCharts } from "./charts.ts";
import { readMetricsLog } from "./metrics_log.ts";
import { featureGist, formatDensity } from "./terminal.ts";

/** Feature pages written by default. */
export const DEFAULT_MAX_PAGES = 1000;
/** Geometry plots drawn by default (each runs a PCA: ~0.6 s at d_in = 768). */
export const DEFAULT_MAX_GEOMETRY = 100;

/** Options of `writeExplorer`. */
export interface ExplorerOptions {
  /** Most feature pages to write (densest first). */
  maxPages: number;
  /** Only the subtree of this feature. */
  root?: number;
  /** Contexts per feature page. */
  contexts: number;
  /** Nearest neighbours per page. */
  neighbours: number;
  /** Most geometry plots (the densest parents get them); default DEFAULT_MAX_GEOMETRY. */
  maxGeometry?: number;
}

/** What was written. */
export interface ExplorerResult {
  index: string;
  pages: number;
  /** Pages that carry a geometry plot. */
  geometryPlots: number;
}

/** Escape text for HTML. */
export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const STYLE =
  `body{font:14px/1.45 system-ui,sans-serif;margin:1.5em auto;max-width:1100px;color:#222;padding:0 1em}
a{color:#1a5fb4;text-decoration:none}a:hover{text-decoration:underline}
.tree details>summary{cursor:pointer;list-style:none;padding:1px 0}
.tree details>summary::before{content:"▸ ";color:#666}
.tree details[open]>summary::before{content:"▾ "}
.tree .leaf::before{content:"• ";color:#aaa}
.tree ul{list-style:none;margin:0;padding-left:1.4em;border-left:1px dotted #ccc}
.tree>ul{border:none;padding-left:0}
.meta{color:#666;font-size:12px;margin-left:.6em}
.gist{color:#444;font-family:ui-monospace,monospace;font-size:12px;margin-left:.6em}
.ctx{font-family:ui-monospace,monospace;font-size:12.5px;white-space:pre-wrap}
.ctx mark{background:#ffd54f;font-weight:bold}
table{border-collapse:collapse}td,th{padding:2px 8px;text-align:left;border-bottom:1px solid #eee}
.charts{display:flex;flex-wrap:wrap;gap:1em}.note{color:#a15c00}
`;

function page(title: string, css: string, body: string): string {
  return `<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>${
    escapeHtml(title)
  }</title><link rel="stylesheet" href="${css}"></head><body>\n${body}\n</body></html>\n`;
}

/** Write the explorer into `out` (created; existing files of the same names are replaced). */
export async function writeExplorer(
  ins: Inspection,
  out: string,
  o: ExplorerOptions,
): Promise<ExplorerResult> {
  if (o.root !== undefined) checkFeature(ins.tree, o.root, "--root");
  try {
    await Deno.mkdir(join(out, "features"), { recursive: true });
  } catch (e) {
    throw new ArborError(`--html ${out}: cannot create the folder (${(e as Error).message})`);
  }
  const scope = o.root !== undefined ? subtree(ins.tree, o.root) : [...Array(ins.tree.n).keys()];
  const pages = choosePages(ins, scope, o.maxPages);
  let geometryPlots = 0;
  const maxGeometry = o.maxGeometry ?? DEFAULT_MAX_GEOMETRY;
  for (const f of pages) {
    const { html, geometry } = featurePage(ins, f, pages, o, geometryPlots < maxGeometry);
    if (geometry) geometryPlots++;
    await Deno.writeTextFile(join(out, "features", `${f}.html`), html);
  }
  await Deno.writeTextFile(join(out, "style.css"), STYLE);
  const index = join(out, "index.html");
  await Deno.writeTextFile(index, await indexPage(ins, pages, o));
  return { index, pages: pages.size, geometryPlots };
}

/** The features that get a page: those that fired, most frequent first (all, without data). */
function choosePages(ins: Inspection, scope: number[], maxPages: number): Set<number> {
  const p = ins.profile;
  const ranked = p
    ? scope.filter((f) => p.stats.count[f] > 0).sort((a, b) =>
      p.stats.count[b] - p.stats.count[a] || a - b
    )
    : scope;
  return new Set(ranked.slice(0, maxPages));
}

function link(f: number, pages: Set<number>, prefix: string): string {
  return pages.has(f) ? `<a href="${prefix}${f}.html">#${f}</a>` : `#${f}`;
}

async function indexPage(ins: Inspection, pages: Set<number>, o: ExplorerOptions): Promise<string> {
  const { config, tree, profile } = ins;
  const parts: string[] = [];
  parts.push(`<h1>${escapeHtml(config.arch)} SAE — ${escapeHtml(ins.dir)}</h1>`);
  parts.push(
    `<p>${numFeatures(config)} features in ${config.layers.length} ${
      config.arch === "matryoshka" ? "groups" : "layers"
    } [${config.layers.join(", ")}], d_in ${config.dIn}. ` +
      (profile
        ? `Statistics over ${profile.tokens} tokens of <code>${
          escapeHtml(ins.data!.dir)
        }</code>; ` +
          `${escapeHtml(ins.labeler.note)}.`
        : `<span class="note">No activation data: ${escapeHtml(ins.dataProblem ?? "")}</span>`) +
      ` ${pages.size} feature pages.</p>`,
  );
  if (profile?.cooccurrence) {
    const c = profile.cooccurrence;
    parts.push(
      `<p>Sibling co-occurrence (paper Table 3, mean IoU): ${c.rate.toFixed(4)} ` +
        `(per layer: ${c.perLayer.map((v) => (v === null ? "–" : v.toFixed(4))).join(", ")}).</p>`,
    );
  }
  const { points, badLines } = await readMetricsLog(ins.dir);
  parts.push(`<h2>Training curves</h2>`);
  if (points.length) {
    parts.push(`<div class="charts" id="training">${trainingCharts(points).join("\n")}</div>`);
    if (badLines) {
      parts.push(`<p class="note">${badLines} unreadable lines of metrics.jsonl skipped.</p>`);
    }
  } else parts.push(`<p class="note">No metrics.jsonl in the checkpoint folder.</p>`);
  parts.push(
    `<h2>Feature tree</h2><p>Click a node to open its children; follow a number to its page.</p>`,
  );
  const node = (f: number): string => {
    const density = profile ? formatDensity(profile.stats.count[f] / profile.tokens) : "";
    const row = `${link(f, pages, "features/")}<span class="meta">L${tree.layerOf[f]}${
      density ? " · " + density : ""
    }</span><span class="gist">${escapeHtml(featureGist(ins, f))}</span>`;
    const kids = tree.childrenOf[f];
    if (!kids.length) return `<li><div class="leaf" data-feature="${f}">${row}</div></li>`;
    return `<li><details class="node" data-feature="${f}"><summary>${row}</summary><ul>${
      kids.map(node).join("")
    }</ul></details></li>`;
  };
  const tops = o.root !== undefined ? [o.root] : tree.roots;
  parts.push(`<div class="tree" id="tree"><ul>${tops.map(node).join("\n")}</ul></div>`);
  return page(`Arbor inspect — ${ins.dir}`, "style.css", parts.join("\n"));
}

function featurePage(
  ins: Inspection,
  f: number,
  pages: Set<number>,
  o: ExplorerOptions,
  drawGeometry: boolean,
): { html: string; geometry: boolean } {
  const { tree, profile, data } = ins;
  const L = (g: number) => link(g, pages, "");
  const parts: string[] = [];
  const crumbs = ancestors(tree, f).map(L).join(" › ");
  parts.push(`<p><a href="../index.html">tree</a>${crumbs ? " › " + crumbs : ""} › #${f}</p>`);
  parts.push(`<h1>Feature ${f}</h1>`);
  const p = tree.parentOf[f];
  const kids = tree.childrenOf[f];
  const rows: [string, string][] = [
    ["layer", `${tree.layerOf[f]} (index ${f - tree.offsets[tree.layerOf[f]]})`],
    ["parent", p < 0 ? "root" : L(p)],
    ["children", kids.length ? kids.map(L).join(", ") : "none"],
  ];
  if (profile) {
    const s = profile.stats;
    rows.push([
      "density",
      `${formatDensity(s.count[f] / profile.tokens)} (${s.count[f]} of ${profile.tokens} tokens)`,
    ]);
    rows.push([
      "activation",
      `mean ${(s.count[f] ? s.sum[f] / s.count[f] : 0).toFixed(3)}, max ${s.max[f].toFixed(3)}`,
    ]);
    if (ins.truth) rows.push(["true feature", escapeHtml(describeMatch(ins.truth, f))]);
    else if (profile.tokenCounts) {
      rows.push([
        "top tokens",
        escapeHtml(
          topTokens(profile, f, 10).map(([id, c]) =>
            `${JSON.stringify(ins.labeler.label(id))} ×${c}`
          )
            .join(", "),
        ),
      ]);
    }
  }
  parts.push(
    `<table>${rows.map(([k, v]) => `<tr><th>${k}</th><td>${v}</td></tr>`).join("")}</table>`,
  );
  let geometry = false;
  if (profile && data) {
    parts.push(
      `<h2>Top activating contexts</h2><p class="meta">${escapeHtml(ins.labeler.note)}</p>`,
    );
    const lines = profile.top.get(f).slice(0, o.contexts).map(({ row, value }) => {
      let text: string;
      if (data.truth) {
        const t = data.truth.truth;
        const act = activeTrueFeatures(data.truth.activity, t.activityWidth, t.features, row);
        text = `token ${row}: true features ${
          act.length ? act.map((i) => `${i} (${shortPath(t.json.paths[i])})`).join(", ") : "none"
        }`;
        text = escapeHtml(text);
      } else {
        const ctx = contextOf(data, row, ins.labeler);
        text = `token ${row}: ` +
          (ctx
            ? ctx.map((t) => (t.active ? `<mark>${escapeHtml(t.text)}</mark>` : escapeHtml(t.text)))
              .join("")
            : "(no token files)");
      }
      return `<tr><td>${value.toFixed(3)}</td><td class="ctx">${text}</td></tr>`;
    });
    parts.push(`<table class="contexts">${lines.join("\n")}</table>`);
    const values = profile.samples[f].values;
    if (values.length) {
      parts.push(`<h2>Activation histogram</h2>${histogramChart(values)}`);
    }
    if (kids.length) {
      parts.push(`<h2>Child-subspace geometry (§6.1)</h2>`);
      const g = drawGeometry
        ? childGeometry(f, tree, profile, data.x, data.d, ins.state)
        : `only the ${
          o.maxGeometry ?? DEFAULT_MAX_GEOMETRY
        } densest parents get one (--max-geometry)`;
      if (typeof g === "string") parts.push(`<p class="note">No plot: ${escapeHtml(g)}.</p>`);
      else {
        geometry = true;
        parts.push(
          `<p class="meta">Tokens where the children fire, on the top two principal axes of their ` +
            `standardised activations; arrows: the children's encoder vectors on the same axes.</p>` +
            `<div class="plot" id="geometry">${geometryChart(g)}</div>`,
        );
      }
      if (kids.length >= 2) {
        parts.push(
          `<h2>Children co-occurrence (§6.3)</h2>${
            cooccurrenceChart(kids, (a, b) => profile.siblings.iou(a, b, profile.stats.count))
          }`,
        );
      }
    }
    if (p >= 0) {
      const sibs = tree.childrenOf[p].filter((c) => c !== f);
      if (sibs.length) {
        parts.push(
          `<h2>Siblings</h2><table><tr><th>sibling</th><th>IoU with #${f}</th></tr>${
            sibs.map((c) =>
              `<tr><td>${L(c)}</td><td>${
                profile.siblings.iou(f, c, profile.stats.count).toFixed(3)
              }</td></tr>`
            ).join("")
          }</table>`,
        );
      }
    }
  } else {
    parts.push(`<p class="note">No activation data: ${escapeHtml(ins.dataProblem ?? "")}</p>`);
  }
  parts.push(
    `<h2>Nearest features by decoder cosine</h2><table>${
      ins.neighbours.nearest(f, o.neighbours).map((nb) =>
        `<tr><td>${L(nb.feature)}</td><td>${nb.cosine.toFixed(3)}</td><td class="meta">layer ${
          tree.layerOf[nb.feature]
        }</td></tr>`
      ).join("")
    }</table>`,
  );
  return { html: page(`Feature ${f}`, "../style.css", parts.join("\n")), geometry };
}
