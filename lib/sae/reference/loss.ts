/**
 * Training loss (paper Eq. 7–9, ref): Σ_levels ‖x̂s_{≤l} − xs‖² / totalVar, plus
 * Σ α_l·AuxK_l where the top-kAux dead features' pre-activations reconstruct the
 * residual r_l = xs − x̂s_{≤l} (Gao et al. 2024), normalised by the residual's variance.
 * Legend: B = tokens, d = d_in, n = features, L = levels, kAux = aux slots per row.
 */
import type { SaeConfig } from "../config.ts";
import { layerOffsets, numFeatures } from "../config.ts";
import { FIRE_THRESHOLD, UNUSED_SLOT } from "./constants.ts";
import { type Codes, emptyCodes, topKRange } from "./select.ts";

/** One AuxK term: which features compete, which level's residual they fit, with what weight. */
export interface AuxGroup {
  /** First feature of the group. */
  start: number;
  /** One past the last feature. */
  end: number;
  /** Level whose residual xs − x̂s_{≤level} the dead features reconstruct. */
  level: number;
  /** Coefficient α of this term in the total loss. */
  alpha: number;
  /** Tree: a candidate's parent must be the root or fire on the token. */
  gated: boolean;
}

/**
 * The AuxK groups of a config: tree → one per layer (gated, its own level); others →
 * one group over the whole dictionary fitting the last level's residual. Groups with
 * α = 0 or auxK = 0 are listed but contribute nothing.
 */
export function auxGroups(c: SaeConfig): AuxGroup[] {
  const n = numFeatures(c);
  if (c.arch !== "tree") {
    return [{ start: 0, end: n, level: c.layers.length - 1, alpha: c.auxAlpha[0], gated: false }];
  }
  const off = layerOffsets(c);
  return c.layers.map((_, l) => ({
    start: off[l],
    end: off[l + 1],
    level: l,
    alpha: c.auxAlpha[l],
    gated: true,
  }));
}

/**
 * AuxK selection for one group. dead [n] (1 = dead). kAux = min(auxK, dead features in
 * the group); 0 means the group is skipped. Candidates on row b: dead features of the
 * group (gated groups: whose parent is the root or has val > FIRE_THRESHOLD in `codes`).
 * The top kAux candidate pre values per row (ties → lower index), in ascending feature order
 * (the decode then sums them in the order of the dense AuxK product over the dead features);
 * val = max(pre, 0); rows with fewer candidates leave slots unused. pre [B, n], parents as in
 * selectTree.
 */
export function selectAux(
  pre: Float32Array,
  B: number,
  n: number,
  group: AuxGroup,
  dead: Uint8Array,
  auxK: number,
  codes: Codes,
  parents: Int32Array[],
): Codes {
  let numDead = 0;
  for (let f = group.start; f < group.end; f++) numDead += dead[f];
  const kAux = group.alpha > 0 ? Math.min(auxK, numDead) : 0;
  const out = emptyCodes(B, kAux);
  if (kAux === 0) return out;
  const rowVal = new Float32Array(n); // main code values of the current row
  const par = group.gated ? parents[group.level] : undefined;
  for (let b = 0; b < B; b++) {
    rowVal.fill(0);
    for (let s = 0; s < codes.K; s++) {
      const i = codes.idx[b * codes.K + s];
      if (i !== UNUSED_SLOT) rowVal[i] = codes.val[b * codes.K + s];
    }
    const candidate = (f: number) =>
      dead[f] === 1 &&
      (!par || par[f - group.start] === group.start ||
        rowVal[par[f - group.start]] > FIRE_THRESHOLD);
    const top = topKRange(
      (f) => (candidate(f) ? pre[b * n + f] : -Infinity),
      group.start,
      group.end,
      kAux,
    );
    let slot = 0;
    for (const f of [...top].sort((a, b) => a - b)) {
      if (!candidate(f)) continue; // fewer candidates than kAux on this row
      out.idx[b * kAux + slot] = f;
      out.val[b * kAux + slot] = Math.max(pre[b * n + f], 0);
      slot++;
    }
  }
  return out;
}

/** One evaluated AuxK term (what the backward pass needs). */
export interface AuxTerm {
  /** The group. */
  group: AuxGroup;
  /** Aux codes [B, kAux]. */
  codes: Codes;
  /** ê [B, d]: Σ auxVal·decW[auxIdx] (no bias). */
  recon: Float32Array;
  /** r [B, d] = xs − x̂s_{≤level}, a constant for the gradient (stop-gradient). */
  residual: Float32Array;
  /** Σ_b Σ_j (r − mean_over_batch r)²; the term is 0 (no gradient) when this is 0. */
  denom: number;
  /** ‖ê − r‖² / denom (before α). */
  value: number;
}

/** All loss values of a step and the intermediate arrays the backward pass reuses. */
export interface LossResult {
  /** main + Σ α·aux. */
  total: number;
  /** Σ of mainPerLevel. */
  main: number;
  /** [L] ‖x̂s_{≤l} − xs‖² / totalVar. */
  mainPerLevel: number[];
  /** The last level's term: fraction of variance unexplained. */
  fvu: number;
  /** One entry per aux group, α not applied. */
  aux: AuxTerm[];
  /** Σ_b Σ_j (xs − mean_over_batch xs)². */
  totalVar: number;
  /** [L] level reconstructions x̂s_{≤l} [B, d]. */
  recon: Float32Array[];
}

/** Σ_b Σ_j (a[b,j] − mean_b a[:,j])² for a [B, d] (variance around the batch mean, not normalised). */
export function batchVariance(a: Float32Array, B: number, d: number): number {
  const mean = new Float64Array(d);
  for (let b = 0; b < B; b++) for (let j = 0; j < d; j++) mean[j] += a[b * d + j];
  for (let j = 0; j < d; j++) mean[j] /= B;
  let s = 0;
  for (let b = 0; b < B; b++) for (let j = 0; j < d; j++) s += (a[b * d + j] - mean[j]) ** 2;
  return s;
}

function sqDist(a: Float32Array, b: Float32Array): number {
  let s = 0;
  for (let t = 0; t < a.length; t++) s += (a[t] - b[t]) ** 2;
  return s;
}

/**
 * Evaluate the loss. xs [B, d]; recon = levelReconstructions(...); auxCodes[g] the
 * selectAux codes of group g (empty K = 0 codes skip it). `frozenResiduals` replaces
 * the residuals r_g (gradient checks hold them constant, as the backward pass does).
 */
export function losses(
  xs: Float32Array,
  B: number,
  d: number,
  recon: Float32Array[],
  decW: Float32Array,
  groups: AuxGroup[],
  auxCodes: Codes[],
  frozenResiduals?: Float32Array[],
): LossResult {
  const totalVar = batchVariance(xs, B, d);
  const mainPerLevel = recon.map((r) => sqDist(r, xs) / totalVar);
  const main = mainPerLevel.reduce((a, b) => a + b, 0);
  const aux: AuxTerm[] = groups.map((group, g) => {
    const codes = auxCodes[g];
    const residual = frozenResiduals?.[g] ?? new Float32Array(B * d);
    if (!frozenResiduals) {
      const lvl = recon[group.level];
      for (let t = 0; t < B * d; t++) residual[t] = xs[t] - lvl[t];
    }
    const auxRecon = new Float32Array(B * d);
    const acc = new Float64Array(d);
    for (let b = 0; b < B; b++) {
      acc.fill(0);
      for (let s = 0; s < codes.K; s++) {
        const f = codes.idx[b * codes.K + s];
        const v = codes.val[b * codes.K + s];
        if (f === UNUSED_SLOT || v === 0) continue;
        for (let j = 0; j < d; j++) acc[j] += v * decW[f * d + j];
      }
      for (let j = 0; j < d; j++) auxRecon[b * d + j] = acc[j];
    }
    const denom = codes.K > 0 && group.alpha > 0 ? batchVariance(residual, B, d) : 0;
    const value = denom > 0 ? sqDist(auxRecon, residual) / denom : 0;
    return { group, codes, recon: auxRecon, residual, denom, value };
  });
  const total = main + aux.reduce((s, t) => s + t.group.alpha * t.value, 0);
  return {
    total,
    main,
    mainPerLevel,
    fvu: mainPerLevel[mainPerLevel.length - 1],
    aux,
    totalVar,
    recon,
  };
}
