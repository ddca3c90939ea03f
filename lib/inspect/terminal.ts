/** The terminal views of `inspect`: one feature in detail, and the feature tree. */
import { numFeatures } from "../sae/config.ts";
import type { Inspection } from "./inspection.ts";
import { ancestors, checkFeature, subtree } from "./structure.ts";
import { topTokens } from "./profile.ts";
import { contextLine, contextOf } from "./contexts.ts";
import { activeTrueFeatures, describeMatch, isTrueAncestor, shortPath } from "./truth_match.ts";

/** Options of the feature view. */
export interface FeatureViewOptions {
  /** Activating contexts listed. */
  contexts: number;
  /** Nearest decoder neighbours listed. */
  neighbours: number;
  /** Top tokens listed. */
  tokens: number;
}

/** "1.23%" with three significant digits; "0%" for never. */
export function formatDensity(p: number): string {
  if (p === 0) return "0%";
  return `${(100 * p).toPrecision(3)}%`;
}

function layerLabel(ins: Inspection, f: number): string {
  const l = ins.tree.layerOf[f];
  const word = ins.config.arch === "matryoshka" ? "group" : "layer";
  return `${word} ${l} (index ${f - ins.tree.offsets[l]} of ${ins.config.layers[l]})`;
}

/** One line summarising what a feature fires on: top tokens, or the matched true feature. */
export function featureGist(ins: Inspection, f: number, tokens = 3): string {
  if (ins.truth) {
    const p = ins.tree.parentOf[f];
    const truth = ins.data?.truth?.truth;
    if (p < 0 || !truth) return describeMatch(ins.truth, f);
    const ok = isTrueAncestor(truth.parents, ins.truth.trueOf[p], ins.truth.trueOf[f]);
    // ✓: the learned parent stands for a true ancestor of the true feature this one stands for.
    return `${describeMatch(ins.truth, f)} ${
      ok ? "✓ in its true branch" : "✗ outside its true branch"
    }`;
  }
  if (!ins.profile) return "";
  return topTokens(ins.profile, f, tokens)
    .map(([id]) => JSON.stringify(ins.labeler.label(id)))
    .join(" ");
}

/** The contexts of a feature's top activations, one line each. */
export function contextLines(ins: Inspection, f: number, count: number): string[] {
  const { profile, data } = ins;
  if (!profile || !data) return [];
  return profile.top.get(f).slice(0, count).map(({ row, value }) => {
    const head = `  ${value.toFixed(3).padStart(8)}  `;
    if (data.truth) {
      const t = data.truth.truth;
      const active = activeTrueFeatures(data.truth.activity, t.activityWidth, t.features, row)
        .map((i) => `${i} (${shortPath(t.json.paths[i])})`);
      return `${head}token ${row}: true features ${active.length ? active.join(", ") : "none"}`;
    }
    const ctx = contextOf(data, row, ins.labeler);
    return `${head}token ${row}: ${ctx ? contextLine(ctx) : "(no token files)"}`;
  });
}

/** The feature view (`inspect DIR --feature F`). */
export function formatFeature(ins: Inspection, f: number, o: FeatureViewOptions): string {
  checkFeature(ins.tree, f, "--feature");
  const { tree, profile } = ins;
  const lines: string[] = [];
  lines.push(
    `feature ${f} · ${layerLabel(ins, f)} · ${ins.config.arch} SAE, ${
      numFeatures(ins.config)
    } features`,
  );
  const p = tree.parentOf[f];
  const path = [...ancestors(tree, f), f].join(" › ");
  lines.push(`parent: ${p < 0 ? "root" : `${p} (layer ${tree.layerOf[p]})`}   path: ${path}`);
  const kids = tree.childrenOf[f];
  lines.push(`children: ${kids.length ? `${kids.join(", ")} (${kids.length})` : "none"}`);
  if (profile) {
    const s = profile.stats;
    const mean = s.count[f] > 0 ? s.sum[f] / s.count[f] : 0;
    lines.push(
      `density: ${formatDensity(s.count[f] / profile.tokens)} (${
        s.count[f]
      } of ${profile.tokens} tokens)` +
        `   mean activation ${mean.toFixed(3)}   max ${s.max[f].toFixed(3)}`,
    );
    if (ins.truth) lines.push(`matched: ${describeMatch(ins.truth, f)}`);
    else if (profile.tokenCounts) {
      const top = topTokens(profile, f, o.tokens)
        .map(([id, c]) => `${JSON.stringify(ins.labeler.label(id))} ×${c}`);
      lines.push(`top tokens: ${top.length ? top.join(", ") : "none"}`);
    }
    if (p >= 0) {
      const sibs = tree.childrenOf[p].filter((c) => c !== f)
        .map((c) => `${c} ${profile.siblings.iou(f, c, s.count).toFixed(3)}`);
      if (sibs.length) lines.push(`sibling co-occurrence (IoU): ${sibs.join(", ")}`);
    }
    lines.push(`top activating contexts (${ins.labeler.note}):`);
    const ctx = contextLines(ins, f, o.contexts);
    lines.push(...(ctx.length ? ctx : ["  none: the feature never fired on the inspected tokens"]));
  } else {
    lines.push(`no activation data: ${ins.dataProblem}`);
  }
  lines.push("nearest features by decoder cosine:");
  lines.push(
    "  " + ins.neighbours.nearest(f, o.neighbours)
      .map((nb) => `${nb.feature} ${nb.cosine.toFixed(3)} (layer ${tree.layerOf[nb.feature]})`)
      .join(", "),
  );
  return lines.join("\n");
}

/** Options of the tree view. */
export interface TreeViewOptions {
  /** Show only the subtree of this feature. */
  root?: number;
  /** Levels shown below each top node (Infinity: all). */
  depth: number;
}

/** The tree view (`inspect DIR --tree`): one line per feature with density and top tokens. */
export function formatTree(ins: Inspection, o: TreeViewOptions): string {
  const { tree, profile, config } = ins;
  if (o.root !== undefined) checkFeature(ins.tree, o.root, "--root");
  const lines: string[] = [];
  const sizes = config.layers.join(", ");
  lines.push(
    `${config.arch} SAE · layers [${sizes}] · ${tree.n} features · ` +
      (profile ? `${profile.tokens} tokens of ${ins.data!.dir}` : `no data (${ins.dataProblem})`),
  );
  const node = (f: number) => {
    const density = profile ? formatDensity(profile.stats.count[f] / profile.tokens) : "";
    return [`#${f}`, `L${tree.layerOf[f]}`, density, featureGist(ins, f)].filter(Boolean).join(
      "  ",
    );
  };
  const walk = (f: number, prefix: string, last: boolean, level: number, top: boolean) => {
    lines.push(top ? node(f) : `${prefix}${last ? "└─ " : "├─ "}${node(f)}`);
    if (level >= o.depth) return;
    const kids = tree.childrenOf[f];
    const next = top ? "" : prefix + (last ? "   " : "│  ");
    kids.forEach((c, i) => walk(c, next, i === kids.length - 1, level + 1, false));
  };
  const tops = o.root !== undefined ? [o.root] : tree.roots;
  for (const f of tops) walk(f, "", true, 0, true);
  return lines.join("\n");
}

/** Features a subtree view covers (for callers that page through it). */
export function treeFeatures(ins: Inspection, o: TreeViewOptions): number[] {
  const tops = o.root !== undefined ? [o.root] : ins.tree.roots;
  return tops.flatMap((f) => subtree(ins.tree, f, o.depth));
}
