import assert from "node:assert/strict";
import { runCli as cli } from "../_util.ts";
import { type CommandSpec, helpText, parseCommand, UsageError } from "../../cli/args.ts";

const SPEC: CommandSpec = {
  name: "demo",
  summary: "test command",
  usage: "demo [flags]",
  flags: {
    lr: { type: "number", default: 1e-4, help: "learning rate" },
    k: { type: "int", default: 32, help: "active features" },
    layers: { type: "list", help: "layer sizes" },
    out: { type: "string", help: "output folder" },
    verbose: { type: "boolean", help: "say more" },
  },
};

Deno.test("parseCommand converts types and applies defaults", () => {
  const p = parseCommand(SPEC, ["--k", "7", "--layers", "4,8,16", "--out=x", "--verbose"]);
  assert.equal(p.flags.k, 7);
  assert.equal(p.flags.lr, 1e-4);
  assert.deepEqual(p.flags.layers, [4, 8, 16]);
  assert.equal(p.flags.out, "x");
  assert.equal(p.flags.verbose, true);
});

Deno.test("parseCommand names the flag in every usage error", () => {
  const cases: [string[], RegExp][] = [
    [["--bogus"], /unknown flag --bogus/],
    [["--k"], /--k needs a value/],
    [["--lr", "fast"], /--lr expects a number, got "fast"/],
    [["--k", "2.5"], /--k expects an integer/],
    [["--layers", "4,x"], /--layers expects a number, got "x"/],
    [["stray"], /unexpected argument "stray"/],
  ];
  for (const [argv, re] of cases) {
    assert.throws(
      () => parseCommand(SPEC, argv),
      (e: Error) => e instanceof UsageError && re.test(e.message),
    );
  }
});

Deno.test("helpText lists every flag with its default", () => {
  const h = helpText(SPEC);
  for (const f of ["--lr", "--k", "--layers", "--out", "--verbose", "--help", "--quiet"]) {
    assert.match(h, new RegExp(f));
  }
  assert.match(h, /learning rate \(default: 0.0001\)/);
  assert.match(h, /active features \(default: 32\)/);
});

Deno.test("arbor --help lists the five subcommands; --version prints the version", async () => {
  const h = await cli("--help");
  assert.equal(h.code, 0);
  for (const c of ["extract", "train", "reallocate", "evaluate", "inspect"]) {
    assert.match(h.stdout, new RegExp(`^  ${c} `, "m"));
  }
  const v = await cli("--version");
  assert.equal(v.code, 0);
  assert.match(v.stdout, /^arbor \d+\.\d+\.\d+/);
});

Deno.test("arbor train --bogus exits 2 naming --bogus; unknown command exits 2", async () => {
  const r = await cli("train", "--bogus");
  assert.equal(r.code, 2);
  assert.match(r.stderr, /--bogus/);
  assert.equal(r.stderr.trim().split("\n").length, 1);
  const u = await cli("frobnicate");
  assert.equal(u.code, 2);
  assert.match(u.stderr, /unknown command "frobnicate"/);
});

Deno.test("every subcommand has --help that lists --help and --quiet", async () => {
  for (const c of ["extract", "train", "reallocate", "evaluate", "inspect", "synth", "export"]) {
    const r = await cli(c, "--help");
    assert.equal(r.code, 0, `${c} --help failed: ${r.stderr}`);
    assert.match(r.stdout, new RegExp(`^arbor ${c} — `));
    assert.match(r.stdout, /--quiet/);
  }
});
