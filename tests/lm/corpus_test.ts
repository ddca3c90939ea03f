/** Corpus input (Brown, text files, folders, JSONL) and windowing into --context token windows. */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type Document, readCorpus, stripBrownTags } from "../../lib/lm/corpus.ts";
import { tokenWindows } from "../../lib/lm/windows.ts";

async function collect<T>(it: AsyncIterable<T>, limit = Infinity): Promise<T[]> {
  const out: T[] = [];
  for await (const x of it) {
    out.push(x);
    if (out.length >= limit) break;
  }
  return out;
}

async function* docs(texts: string[]): AsyncGenerator<Document> {
  for (const [i, text] of texts.entries()) yield { text, source: `d${i}` };
}

/** A fake tokenizer: one id per character code. */
const charIds = (s: string) => Array.from(s, (c) => c.charCodeAt(0));

Deno.test("Brown tags are stripped into readable text", () => {
  const raw =
    "\n\n\tThe/at Fulton/np-tl County/nn-tl said/vbd ``/`` no/at evidence/nn ''/'' ,/, 1/2/cd ./.\n\n\n\tNext/ap one/cd ./.\n";
  assert.equal(stripBrownTags(raw), 'The Fulton County said " no evidence ", 1/2.\n\nNext one.');
});

Deno.test("the default corpus is the Brown Corpus, 500 documents, tags stripped", async () => {
  const all = await collect(readCorpus([]));
  assert.equal(all.length, 500);
  const first = all.slice(0, 2);
  assert.equal(first[0].source, "brown/ca01");
  assert.match(
    first[0].text,
    /^The Fulton County Grand Jury said Friday an investigation of Atlanta's recent/,
  );
  assert.doesNotMatch(first[0].text, /\/(at|nn|vbd)\b/);
  assert.equal(first[1].source, "brown/ca02");
});

Deno.test("text files, folders (sorted, recursive) and JSONL with --text-field", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.mkdir(join(dir, "sub"));
    await Deno.writeTextFile(join(dir, "b.txt"), "second file");
    await Deno.writeTextFile(join(dir, "a.txt"), "first file");
    await Deno.writeTextFile(
      join(dir, "sub", "c.jsonl"),
      '{"content": "row one"}\n\n{"content": "row two"}\n',
    );
    await Deno.writeTextFile(join(dir, "ignored.bin"), "x");
    const got = await collect(readCorpus([dir], { textField: "content" }));
    assert.deepEqual(got.map((d) => d.text), ["first file", "second file", "row one", "row two"]);
    assert.equal(got[3].source, join(dir, "sub", "c.jsonl") + ":3");
    await assert.rejects(
      collect(readCorpus([join(dir, "sub", "c.jsonl")])),
      /c\.jsonl:1: no string field "text"; name the text field with --text-field/,
    );
    await assert.rejects(
      collect(readCorpus([join(dir, "nope.txt")])),
      /nope\.txt: no such input file or folder/,
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("windows: EOS before every document, cut into context-sized windows, doc ids kept", async () => {
  const EOS = 0;
  const ws = await collect(tokenWindows(docs(["abc", "", "de"]), charIds, EOS, 3));
  // stream: EOS a b c EOS d e → [EOS a b] [c EOS d]; the partial window [e] is dropped
  assert.equal(ws.length, 2);
  assert.deepEqual(Array.from(ws[0].tokens), [0, 97, 98]);
  assert.deepEqual(Array.from(ws[1].tokens), [99, 0, 100]);
  assert.deepEqual(Array.from(ws[1].docIds), [0, 2, 2]);
  assert.deepEqual(ws.map((w) => w.index), [0, 1]);
});

Deno.test("an empty corpus or one shorter than a window is a clear error", async () => {
  await assert.rejects(
    collect(tokenWindows(docs(["", "  \n"]), charIds, 0, 4)),
    /the corpus holds no text/,
  );
  await assert.rejects(
    collect(tokenWindows(docs(["ab"]), charIds, 0, 4)),
    /fewer than --context 4 tokens \(3\)/,
  );
});
