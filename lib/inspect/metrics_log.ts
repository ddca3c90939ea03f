/** Training curves from a run's metrics.jsonl (one JSON object per line, written by the trainer). */
import { join } from "node:path";
import { METRICS_FILE } from "../train/trainer.ts";

/** One logged training step (hook records such as reallocation events are left out). */
export interface MetricsPoint {
  step: number;
  tokens: number;
  loss: number;
  fvu: number;
  l0: number;
  /** Fraction of dead features per layer. */
  deadFraction: number[];
}

/** The step records of `dir`/metrics.jsonl ([] when the file is missing); bad lines are counted, not fatal. */
export async function readMetricsLog(
  dir: string,
): Promise<{ points: MetricsPoint[]; badLines: number }> {
  let text: string;
  try {
    text = await Deno.readTextFile(join(dir, METRICS_FILE));
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return { points: [], badLines: 0 };
    throw e;
  }
  const points: MetricsPoint[] = [];
  let badLines = 0;
  for (const line of text.split("\n")) {
    if (line.trim() === "") continue;
    let r: Record<string, unknown>;
    try {
      r = JSON.parse(line);
    } catch {
      badLines++;
      continue;
    }
    if (typeof r.step !== "number" || typeof r.loss !== "number") continue;
    points.push({
      step: r.step,
      tokens: typeof r.tokens === "number" ? r.tokens : 0,
      loss: r.loss,
      fvu: typeof r.fvu === "number" ? r.fvu : NaN,
      l0: typeof r.l0 === "number" ? r.l0 : NaN,
      deadFraction: Array.isArray(r.dead_fraction) ? (r.dead_fraction as number[]) : [],
    });
  }
  return { points, badLines };
}
