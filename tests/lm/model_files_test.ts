/** Model folders and hub downloads: timeouts, offline mode, clear messages (no real network). */
import assert from "node:assert/strict";
import { join } from "node:path";
import { resolveModel } from "../../lib/lm/model_files.ts";

const FIXTURE = new URL("../../fixtures/tiny-gpt2", import.meta.url).pathname;
const LOCAL_HINT =
  /pass --model DIR with a local folder holding config\.json, model\.safetensors, tokenizer\.json/;

async function withTempDir(fn: (dir: string) => Promise<void>) {
  const dir = await Deno.makeTempDir();
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("a local model folder is used as is; an incomplete one names the missing files", async () => {
  assert.equal(await resolveModel(FIXTURE, { offline: true }), FIXTURE);
  await withTempDir(async (dir) => {
    await Deno.writeTextFile(join(dir, "config.json"), "{}");
    await assert.rejects(
      resolveModel(dir),
      /model folder lacks model\.safetensors, tokenizer\.json/,
    );
  });
});

Deno.test("an unreachable hub (closed port) fails within seconds, naming the local-folder alternative", async () => {
  // Find a free port, then close it so connections are refused.
  const probe = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (probe.addr as Deno.NetAddr).port;
  probe.close();
  await withTempDir(async (cache) => {
    const t0 = performance.now();
    await assert.rejects(
      resolveModel("gpt2", { cacheDir: cache, hubUrl: `http://127.0.0.1:${port}` }),
      (e: Error) =>
        /cannot reach the Hugging Face hub at http:\/\/127\.0\.0\.1/.test(e.message) &&
        LOCAL_HINT.test(e.message),
    );
    assert.ok(performance.now() - t0 < 5000, "should fail fast");
  });
});

Deno.test("a hub that accepts but never answers times out", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const c of listener) held.push(c);
    } catch { /* listener closed */ }
  })();
  await withTempDir(async (cache) => {
    const t0 = performance.now();
    await assert.rejects(
      resolveModel("gpt2", { cacheDir: cache, hubUrl: `http://127.0.0.1:${port}`, timeoutMs: 300 }),
      /cannot reach the Hugging Face hub .*no answer within 0\.3 s/,
    );
    assert.ok(performance.now() - t0 < 3000);
  });
  listener.close();
  held.forEach((c) => c.close());
  await accepting;
});

Deno.test("--offline never touches the network and says how to get the files", async () => {
  let requests = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, () => {
    requests++;
    return new Response("nope", { status: 500 });
  });
  await withTempDir(async (cache) => {
    await assert.rejects(
      resolveModel("openai-community/gpt2", {
        cacheDir: cache,
        offline: true,
        hubUrl: `http://127.0.0.1:${server.addr.port}`,
      }),
      (e: Error) =>
        /is not in the cache .* and --offline forbids downloading/.test(e.message) &&
        LOCAL_HINT.test(e.message),
    );
  });
  await server.shutdown();
  assert.equal(requests, 0);
});

Deno.test("a hub id is downloaded once into the cache, then found there offline", async () => {
  const served: string[] = [];
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    const m = new URL(req.url).pathname.match(/^\/tiny\/gpt2\/resolve\/main\/([\w.]+)$/);
    if (!m) return new Response("not found", { status: 404 });
    served.push(m[1]);
    try {
      return new Response(await Deno.readFile(join(FIXTURE, m[1])));
    } catch {
      return new Response("not found", { status: 404 });
    }
  });
  const hubUrl = `http://127.0.0.1:${server.addr.port}`;
  await withTempDir(async (cache) => {
    const dir = await resolveModel("tiny/gpt2", { cacheDir: cache, hubUrl, log: () => {} });
    assert.equal(dir, join(cache, "tiny--gpt2"));
    for (
      const f of ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"]
    ) {
      assert.deepEqual(await Deno.readFile(join(dir, f)), await Deno.readFile(join(FIXTURE, f)), f);
    }
    assert.equal(await resolveModel("tiny/gpt2", { cacheDir: cache, hubUrl, offline: true }), dir);
    await assert.rejects(
      resolveModel("tiny/other", { cacheDir: cache, hubUrl, log: () => {} }),
      /the hub answered 404/,
    );
  });
  await server.shutdown();
  assert.deepEqual(served.slice(0, 4), [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
  ]);
});
