/**
 * `--help` for the bench scripts: each script's header comment is its help text.
 */

/** With `--help` or `-h` among the arguments: print the header comment of the script at `url`, exit 0. */
export async function helpFromHeader(url: string, args: string[] = Deno.args): Promise<void> {
  if (!args.includes("--help") && !args.includes("-h")) return;
  const text = await Deno.readTextFile(new URL(url));
  const start = text.indexOf("/**");
  const end = text.indexOf("*/", start);
  const doc = start < 0 || end < 0 ? "(no help text)" : text.slice(start + 3, end);
  console.log(
    doc.split("\n").map((l) => l.replace(/^ \* ?/, "").replace(/^ \*$/, "")).join("\n").trim(),
  );
  Deno.exit(0);
}
