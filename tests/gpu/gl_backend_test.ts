/**
 * The kernels that read matrices through textures, on Deno's GL backend (the fallback where no
 * Vulkan driver is installed). The suite itself runs on one backend per process (chosen by
 * DENO_WEBGPU_BACKEND at start-up), so this runs those tests in a child process on GL. There, a
 * one-layer array texture read zeros until createMatrixTexture allocated at least two layers.
 */
import assert from "node:assert/strict";

Deno.test("texture decode kernels match their twins on the GL backend too (child process)", async () => {
  const test = new URL("../sae/kernels_forward_decode_test.ts", import.meta.url).pathname;
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["test", "-A", "--no-check", "--filter", "texture decode", test],
    env: { DENO_WEBGPU_BACKEND: "gl", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.equal(out.code, 0, text);
  // Both texture decode tests ran (single layer and two layers, plain and blocked), none failed.
  assert.match(text, /ok \| 2 passed \| 0 failed/, text);
});
