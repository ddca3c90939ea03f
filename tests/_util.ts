/** Shared test helpers: a quiet GPU, seeded random numbers, and tolerant float comparison. */
import { getGpu, type Gpu } from "../lib/gpu/device.ts";
import { AssertionError } from "node:assert/strict";

/** The process-wide test GPU (adapter line hidden). */
export function testGpu(): Promise<Gpu> {
  return getGpu({ quiet: true });
}

/** Mulberry32: a tiny seeded PRNG for test data. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** `n` normal(0,1) samples from a seeded generator (Box-Muller). */
export function randn(n: number, seed: number): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const u = 1 - r();
    out[i] = Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * r());
  }
  return out;
}

/**
 * Assert |actual - expected| <= atol + rtol·|expected| elementwise; on failure list
 * the first 5 mismatches and the max difference (llm.c's validate_result style).
 */
export function assertClose(
  actual: ArrayLike<number>,
  expected: ArrayLike<number>,
  { atol = 1e-5, rtol = 1e-5, label = "values" } = {},
) {
  if (actual.length !== expected.length) {
    throw new AssertionError({
      message: `${label}: length ${actual.length} != ${expected.length}`,
    });
  }
  const bad: string[] = [];
  let maxDiff = 0;
  let count = 0;
  for (let i = 0; i < expected.length; i++) {
    const d = Math.abs(actual[i] - expected[i]);
    const ok = d <= atol + rtol * Math.abs(expected[i]) ||
      (Number.isNaN(actual[i]) && Number.isNaN(expected[i]));
    if (!ok) {
      count++;
      if (bad.length < 5) bad.push(`[${i}] got ${actual[i]} want ${expected[i]}`);
    }
    if (d > maxDiff) maxDiff = d;
  }
  if (count) {
    throw new AssertionError({
      message: `${label}: ${count}/${expected.length} mismatches (max diff ${maxDiff}): ${
        bad.join(", ")
      }`,
    });
  }
}

/** Run `deno run -A cli/main.ts ...args` from the repository root; exit code and output. */
export async function runCli(...args: string[]) {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "cli/main.ts", ...args],
    cwd: new URL("../", import.meta.url),
    stdout: "piped",
    stderr: "piped",
  }).output();
  const td = new TextDecoder();
  return { code: out.code, stdout: td.decode(out.stdout), stderr: td.decode(out.stderr) };
}
