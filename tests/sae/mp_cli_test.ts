/** `train --arch mp` end to end: the CLI builds the MP-SAE engine and writes an mp checkpoint. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { randn } from "../_util.ts";
import { parseCommand } from "../../cli/args.ts";
import { parseTrainArgs, runTrain, spec } from "../../cli/train.ts";
import { ActivationWriter } from "../../lib/store/writer.ts";
import { loadCheckpoint } from "../../lib/train/checkpoint.ts";

Deno.test("train --arch mp writes an MP-SAE checkpoint whose adaptive L0 is at most k", async () => {
  const dir = await Deno.makeTempDir({ prefix: "arbor_mp_cli_" });
  try {
    const w = await ActivationWriter.create(join(dir, "data"), {
      dIn: 8,
      dtype: "f32",
      shardTokens: 64,
      provenance: { model: "test" },
    });
    await w.append(randn(128 * 8, 3));
    await w.close();
    const lines: string[] = [];
    const argv = ["--engine", "reference", "--arch", "mp", "--n-features", "16", "--k", "3"];
    argv.push("--batch", "32", "--max-tokens", "128", "-q");
    argv.push("--data", join(dir, "data"), "--out", join(dir, "mp"));
    const code = await runTrain(
      parseTrainArgs(parseCommand(spec, argv).flags),
      (l) => lines.push(l),
    );
    assert.equal(code, 0, lines.join("\n"));
    // -q hides progress and notices, not the result line.
    assert.deepEqual(lines.filter((l) => !l.startsWith("done: ")), [], "quiet: only the result");
    assert.match(lines.at(-1) ?? "", /^done: 4 steps, 128 tokens/);
    const ckpt = await loadCheckpoint(join(dir, "mp"));
    assert.equal(ckpt.config.arch, "mp");
    assert.equal(ckpt.config.k, 3);
    const metrics = (await Deno.readTextFile(join(dir, "mp", "metrics.jsonl"))).trim().split("\n")
      .map((l) => JSON.parse(l));
    const last = metrics.filter((m) => typeof m.l0 === "number").at(-1);
    assert.ok(last, "metrics.jsonl has an l0 record");
    assert.ok(last.l0 > 0 && last.l0 <= 3, `adaptive L0 ${last.l0} within (0, k]`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
