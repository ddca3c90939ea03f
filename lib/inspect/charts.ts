/**
 * The explorer's plots as SVG markup, drawn by Observable Plot (npm `@observablehq/plot`)
 * at generation time on a server-side DOM (npm `linkedom`), so the pages need no script
 * and no network to show them.
 */
import * as Plot from "@observablehq/plot";
import { parseHTML } from "linkedom";
import type { ChildGeometry } from "./geometry.ts";
import type { MetricsPoint } from "./metrics_log.ts";

/** Width of the feature-page plots, in CSS pixels. */
const WIDTH = 520;

/** The DOM document type Plot draws into (no DOM lib in Deno's type check). */
type PlotDocument = NonNullable<Plot.PlotOptions["document"]>;

let doc: PlotDocument | null = null;

function plotDocument(): PlotDocument {
  doc ??= (parseHTML("<!doctype html><html><head></head><body></body></html>") as unknown as {
    document: PlotDocument;
  }).document;
  return doc;
}

function render(options: Plot.PlotOptions, label: string): string {
  const el = Plot.plot({ ...options, document: plotDocument() });
  el.setAttribute("data-chart", label);
  return el.outerHTML;
}

/** §6.1: tokens where the children fire on the top-2 PCA axes, with the children's encoder vectors. */
export function geometryChart(g: ChildGeometry): string {
  const label = (c: number) => `#${c}`;
  return render({
    width: WIDTH,
    height: 400,
    inset: 24, // room for the arrow labels at the plot's edge
    grid: true,
    x: { label: `PC1 (${(100 * g.explained[0]).toFixed(1)}% of variance)` },
    y: { label: `PC2 (${(100 * g.explained[1]).toFixed(1)}%)` },
    color: { legend: true, domain: g.arrows.map((a) => label(a.child)) },
    marks: [
      Plot.dot(g.points, {
        x: "pc1",
        y: "pc2",
        fill: (p) => label(p.child),
        r: 2.5,
        fillOpacity: 0.6,
      }),
      Plot.arrow(g.arrows, {
        x1: () => 0,
        y1: () => 0,
        x2: "pc1",
        y2: "pc2",
        stroke: (a) => label(a.child),
        strokeWidth: 2.5,
      }),
      Plot.text(g.arrows, {
        x: "pc1",
        y: "pc2",
        text: (a) => `encoder ${label(a.child)}`,
        dy: -8,
        fontWeight: "bold",
      }),
    ],
  }, "geometry");
}

/** §6.3: IoU of the token sets of every pair of children of one parent, as a heat map. */
export function cooccurrenceChart(
  children: number[],
  iou: (a: number, b: number) => number,
): string {
  const cells = children.flatMap((a) =>
    children.map((b) => ({ a: `#${a}`, b: `#${b}`, v: a === b ? NaN : iou(a, b) }))
  );
  const domain = children.map((c) => `#${c}`);
  return render({
    width: Math.min(WIDTH, 120 + 48 * children.length),
    height: 60 + 36 * children.length,
    marginLeft: 60,
    x: { domain, label: "child" },
    y: { domain, label: "child" },
    // No colour legend: a continuous ramp needs a canvas, which the server-side DOM lacks; cells carry their values.
    color: { scheme: "blues", domain: [0, 1], label: "IoU" },
    marks: [
      Plot.cell(cells, { x: "a", y: "b", fill: "v" }),
      Plot.text(cells, { x: "a", y: "b", text: (c) => (Number.isNaN(c.v) ? "" : c.v.toFixed(2)) }),
    ],
  }, "cooccurrence");
}

/** Histogram of a feature's activation values (sampled tokens where it fires). */
export function histogramChart(values: number[]): string {
  return render({
    width: WIDTH,
    height: 200,
    x: { label: "activation" },
    y: { label: "sampled tokens", grid: true },
    marks: [Plot.rectY(values, Plot.binX({ y: "count" }, { x: (v) => v })), Plot.ruleY([0])],
  }, "histogram");
}

/** Training curves: one small line chart per logged quantity, plus dead fraction per layer. */
export function trainingCharts(points: MetricsPoint[]): string[] {
  const line = (key: "loss" | "fvu" | "l0", label: string) =>
    render({
      width: WIDTH,
      height: 220,
      grid: true,
      x: { label: "step" },
      y: { label },
      marks: [Plot.lineY(points.filter((p) => p[key] > 0), { x: "step", y: key })],
    }, `training-${key}`);
  const dead = points.flatMap((p) =>
    p.deadFraction.map((v, l) => ({ step: p.step, dead: v, layer: `layer ${l}` }))
  );
  const out = [
    line("loss", "loss"),
    line("fvu", "FVU"),
    line("l0", "L0 (active features per token)"),
  ];
  if (dead.length) {
    out.push(render({
      width: WIDTH,
      height: 220,
      grid: true,
      x: { label: "step" },
      y: { label: "dead fraction", domain: [0, 1] },
      color: { legend: true },
      marks: [Plot.lineY(dead, { x: "step", y: "dead", stroke: "layer" })],
    }, "training-dead"));
  }
  return out;
}
