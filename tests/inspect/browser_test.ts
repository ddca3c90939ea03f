/**
 * The HTML explorer in a real browser: generate it for a Tree SAE trained a few steps on a
 * small synthetic dataset, open it from disk in headless Chromium (Debian's `chromium`,
 * driven by npm `playwright-core`), check that the tree renders, that a click opens a node,
 * and that a parent's feature page shows its §6.1 geometry plot. Screenshots are kept in a
 * temporary folder whose path is printed.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { chromium } from "playwright-core";
import { openInspection } from "../../lib/inspect/inspection.ts";
import { writeExplorer } from "../../lib/inspect/html.ts";
import { synthDataset, trainRun, withTempDir } from "./_fixture.ts";

/** Debian's Chromium (`apt-get install chromium`; .ci/run installs it). */
const CHROMIUM = "/usr/bin/chromium";
const FLAGS = [
  "--headless",
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

Deno.test("explorer in Chromium: tree renders, a click opens a node, a feature page shows its plot", async () => {
  try {
    await Deno.stat(CHROMIUM);
  } catch {
    assert.fail(`${CHROMIUM} is missing; install it with: apt-get install -y chromium`);
  }
  const shots = await Deno.makeTempDir({ prefix: "arbor-inspect-screens-" });
  await withTempDir(async (dir) => {
    const data = await synthDataset(dir);
    const run = join(dir, "run");
    await trainRun(data, run);
    const ins = await openInspection(run, {
      requireData: true,
      tokens: 4096,
      batchSize: 512,
      engine: "reference",
      seed: 0,
      notice: () => {},
    });
    const out = join(dir, "explorer");
    const r = await writeExplorer(ins, out, { maxPages: 100, contexts: 5, neighbours: 5 });
    assert.ok(r.geometryPlots > 0, "some parent has two firing children");
    // A parent with a geometry plot, and a node with children, to click on.
    const parent = ins.tree.roots.find((f) =>
      ins.tree.childrenOf[f].filter((c) => ins.profile!.stats.count[c] > 0).length >= 2
    )!;

    const context = await chromium.launchPersistentContext(join(dir, "chromium-profile"), {
      executablePath: CHROMIUM,
      headless: true,
      args: FLAGS,
    });
    try {
      const page = await context.newPage();
      const blocked: string[] = [];
      page.on("request", (req) => {
        if (!req.url().startsWith("file://")) blocked.push(req.url());
      });
      await page.goto(`file://${out}/index.html`);
      // The tree renders: one row per feature (12), top-level nodes visible.
      assert.equal(await page.locator("#tree [data-feature]").count(), ins.tree.n);
      assert.ok(await page.locator(`#tree [data-feature="${parent}"]`).isVisible());
      // Training curves from metrics.jsonl are SVG charts.
      assert.ok(await page.locator('#training [data-chart="training-loss"]').isVisible());
      // A click on a node opens it: its children become visible.
      const node = page.locator(`#tree details[data-feature="${parent}"]`);
      const child = ins.tree.childrenOf[parent][0];
      const childRow = page.locator(`#tree [data-feature="${child}"]`);
      assert.equal(await node.getAttribute("open"), null);
      assert.equal(await childRow.isVisible(), false);
      await node.locator(":scope > summary .meta").click();
      assert.equal(await node.getAttribute("open"), "");
      assert.ok(await childRow.isVisible());
      await page.screenshot({ path: join(shots, "index.png"), fullPage: true });
      // The feature page (followed by its link) shows the geometry plot with points and arrows.
      await node.locator(`:scope > summary a`).click();
      await page.waitForURL(`**/features/${parent}.html`);
      assert.equal(await page.locator("h1").textContent(), `Feature ${parent}`);
      const plot = page.locator('#geometry [data-chart="geometry"]');
      assert.ok(await plot.isVisible());
      assert.ok((await plot.locator("circle").count()) >= 3);
      assert.ok((await plot.locator('g[aria-label="arrow"] path').count()) >= 2);
      const box = await plot.boundingBox();
      assert.ok(box && box.width > 200 && box.height > 200, `plot box ${JSON.stringify(box)}`);
      await page.screenshot({ path: join(shots, `feature-${parent}.png`), fullPage: true });
      assert.deepEqual(blocked, [], "the explorer loads nothing but its own files");
    } finally {
      await context.close();
    }
  });
  console.log(`screenshots: ${shots}`);
});
