/**
 * `arbor export`: write a checkpoint in another library's layout (`--format saelens`), or
 * bring another library's SAE in as an Arbor checkpoint (`--from saelens|sparsify`).
 */
import { type CommandSpec, type ParsedCommand, requireString, UsageError } from "./args.ts";
import type { Command } from "./command.ts";
import {
  EXPORT_FORMATS,
  exportCheckpoint,
  type ExportFormat,
  IMPORT_FORMATS,
  importCheckpoint,
  type ImportFormat,
} from "../lib/format/convert.ts";

/** Flags of `export`. */
export const spec: CommandSpec = {
  name: "export",
  summary: "write a checkpoint in another library's layout, or import one",
  usage: "deno run -A cli/main.ts export DIR --format saelens --out OUT\n" +
    "       deno run -A cli/main.ts export --from saelens|sparsify SRC --out DIR",
  flags: {
    format: {
      type: "string",
      help: `layout to write: ${EXPORT_FORMATS.join(" | ")} (cfg.json + sae_weights.safetensors, ` +
        "tree.json for a Tree SAE, README.md with the exact reconstruction formula)",
    },
    from: {
      type: "string",
      help: `import instead: read SRC in this layout (${IMPORT_FORMATS.join(" | ")}) and write ` +
        "an Arbor checkpoint to --out (refused, with the reason, when the model has an " +
        "encoder bias or another input normalisation)",
    },
    out: { type: "string", short: "o", help: "output folder (created if missing)" },
  },
  positionals: true,
  examples: [
    "deno run -A cli/main.ts export runs/demo/tree --format saelens --out runs/demo-saelens",
    "deno run -A cli/main.ts export --from saelens runs/demo-saelens --out runs/demo-back",
    "deno run -A cli/main.ts export --from sparsify path/to/layers.6 --out runs/imported",
  ],
};

/** The validated request of one `export` call. */
export type ExportArgs =
  | { mode: "export"; dir: string; format: ExportFormat; out: string }
  | { mode: "import"; src: string; format: ImportFormat; out: string };

/** Parse the flags of `export` (pure; throws UsageError naming the problem). */
export function parseExportArgs(p: ParsedCommand): ExportArgs {
  const out = requireString(p.flags, "out", "export");
  const format = p.flags.format as string | undefined;
  const from = p.flags.from as string | undefined;
  if (p.positionals.length !== 1) {
    throw new UsageError(
      `export: expected one folder argument, got ${p.positionals.length} (see export --help)`,
    );
  }
  const path = p.positionals[0];
  if (from !== undefined && format !== undefined) {
    throw new UsageError("export: give either --format (export) or --from (import), not both");
  }
  if (from !== undefined) {
    if (!(IMPORT_FORMATS as readonly string[]).includes(from)) {
      throw new UsageError(
        `export: unknown --from format "${from}"; use one of ${IMPORT_FORMATS.join(", ")}`,
      );
    }
    return { mode: "import", src: path, format: from as ImportFormat, out };
  }
  if (format === undefined) {
    throw new UsageError(
      `export: --format is required (${EXPORT_FORMATS.join(", ")}), or --from to import`,
    );
  }
  if (!(EXPORT_FORMATS as readonly string[]).includes(format)) {
    throw new UsageError(
      `export: unknown --format "${format}"; use one of ${EXPORT_FORMATS.join(", ")}`,
    );
  }
  return { mode: "export", dir: path, format: format as ExportFormat, out };
}

/** Run `export`. */
export const command: Command = {
  spec,
  async run(p) {
    const a = parseExportArgs(p);
    if (a.mode === "export") {
      const files = await exportCheckpoint(a.dir, a.format, a.out);
      console.log(`wrote ${a.format} export of ${a.dir}:`);
      for (const f of files) console.log(`  ${f}`);
    } else {
      const sae = await importCheckpoint(a.format, a.src, a.out);
      console.log(
        `imported ${a.format} SAE ${a.src} (${sae.config.arch}, d_in ${sae.config.dIn}, ` +
          `${sae.decW.length / sae.config.dIn} features) as an Arbor checkpoint in ${a.out}`,
      );
    }
    return 0;
  },
};
