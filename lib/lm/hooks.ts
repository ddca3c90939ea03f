/**
 * Hook points of the GPT-2 forward pass, named as in TransformerLens:
 * `resid_pre.L` (residual stream entering block L), `attn_out.L` and `mlp_out.L` (the block's
 * attention / MLP output before it is added to the stream) and `resid_post.L` (leaving block L).
 */
import { ArborError } from "../errors.ts";

/** Where in a block a hook sits. */
export type HookSite = "resid_pre" | "attn_out" | "mlp_out" | "resid_post";

/** A parsed hook point. */
export interface HookPoint {
  site: HookSite;
  /** Block index, 0-based. */
  layer: number;
}

const SITES: HookSite[] = ["resid_pre", "attn_out", "mlp_out", "resid_post"];

/** Thrown for a hook name that does not parse or lies beyond the model's depth. */
export class HookError extends ArborError {
  override name = "HookError";
}

/** Parse "resid_pre.5" into a HookPoint; with `nLayer`, check the layer exists. */
export function parseHook(name: string, nLayer?: number): HookPoint {
  const m = name.match(/^(resid_pre|attn_out|mlp_out|resid_post)\.(\d+)$/);
  if (!m) {
    throw new HookError(
      `hook "${name}" is not a hook point; use one of ${SITES.map((s) => s + ".L").join(", ")} ` +
        `with L a block index, e.g. resid_pre.5`,
    );
  }
  const hook = { site: m[1] as HookSite, layer: Number(m[2]) };
  if (nLayer !== undefined) checkHook(hook, nLayer);
  return hook;
}

/** Throw unless the hook's layer is within a model of `nLayer` blocks. */
export function checkHook(hook: HookPoint, nLayer: number) {
  if (hook.layer >= nLayer) {
    throw new HookError(
      `hook ${hookName(hook)} is beyond the model's depth: it has ${nLayer} blocks ` +
        `(layers 0..${nLayer - 1})`,
    );
  }
}

/** "resid_pre.5" for {site: "resid_pre", layer: 5}. */
export function hookName(hook: HookPoint): string {
  return `${hook.site}.${hook.layer}`;
}

/** Order of hooks along the forward pass: a larger rank is computed later. */
export function hookRank(hook: HookPoint): number {
  return hook.layer * SITES.length + SITES.indexOf(hook.site);
}
