/**
 * The paper's central claim on the built-in hierarchy (issue #5): with the demo's own dataset and
 * settings, averaged over seeds 0–3, the Tree SAE's parent accuracy is clearly above TopK's and
 * Matryoshka's of equal size and L0, and it absorbs parents less. Single seeds vary (README
 * "Demo" lists seeds 0–7: seeds 4 and 7 put Matryoshka ahead), so the test asserts means.
 * Reference engine (deterministic, ~13 s per seed).
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type CompareRow, DEMO_SETTINGS, runComparison } from "../../lib/demo/compare.ts";
import { writeSynthDataset } from "../../lib/synth/dataset.ts";
import { DEFAULT_SYNTH_PARAMS, defaultTree } from "../../lib/synth/default.ts";

/** Seeds of the SAEs (initialisation and data order); the dataset is the demo's. */
const SEEDS = [0, 1, 2, 3];
/** Mean parent-accuracy lead over the better baseline that counts as "clearly above". */
const MIN_MEAN_LEAD = 0.15;

Deno.test("demo data: Tree SAE parent accuracy clearly above TopK and Matryoshka", async () => {
  const dir = await Deno.makeTempDir({ prefix: "arbor-order-" });
  try {
    const data = join(dir, "data");
    await writeSynthDataset(data, { tree: defaultTree(), params: DEFAULT_SYNTH_PARAMS });
    const runs: Record<string, CompareRow>[] = [];
    for (const seed of SEEDS) {
      const summary = await runComparison({
        data,
        out: join(dir, `seed${seed}`),
        settings: { ...DEMO_SETTINGS, seed },
        engine: "reference",
        say: () => {},
        progressSink: null,
        logAllocation: false,
      });
      runs.push(Object.fromEntries(summary.rows.map((r) => [r.arch, r])));
    }
    const acc = (r: CompareRow) => r.parentAccuracy!;
    const what = runs.map((r, i) =>
      `seed ${SEEDS[i]}: tree ${acc(r.tree).toFixed(2)}, topk ${acc(r.topk).toFixed(2)}, ` +
      `matryoshka ${acc(r.matryoshka).toFixed(2)}`
    ).join("; ");
    const mean = (f: (r: Record<string, CompareRow>) => number) =>
      runs.reduce((s, r) => s + f(r), 0) / runs.length;
    const lead = mean((r) => acc(r.tree)) -
      Math.max(mean((r) => acc(r.topk)), mean((r) => acc(r.matryoshka)));
    assert.ok(lead >= MIN_MEAN_LEAD, `mean lead ${lead.toFixed(3)} < ${MIN_MEAN_LEAD} (${what})`);
    const absorption = (arch: string) => mean((r) => r[arch].absorption!);
    assert.ok(
      absorption("tree") < Math.min(absorption("topk"), absorption("matryoshka")),
      `mean absorption tree ${absorption("tree")}, topk ${absorption("topk")}, ` +
        `matryoshka ${absorption("matryoshka")}`,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
