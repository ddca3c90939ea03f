/**
 * Regrouping of AuxK slots by block of dead features (kernels/slot_blocks.wgsl), for decodes that
 * run one block of decoder rows at a time (`blockedTextureDecodeOp`). On llvmpipe a sparse decode
 * is bound by its gathers missing the CPU caches: AuxK's 256 slots per row over 3 072 dead features
 * (9 MB of decoder rows) took ~3× as long as the same slots over 256 features. With every row's
 * slots grouped by block and the decode dispatched block by block, the rows being read at any time
 * span one block only. Blocks count dead features (by dead rank), so however few are dead, only
 * as many blocks as their rows need carry slots; the rest skip.
 *
 * Shapes: idx/val [B, K] → idxOut/valOut [B, K] (regrouped), starts [B, nb + 1] u32.
 */
import type { Gpu } from "../../gpu/device.ts";
import type { Dispatch, Kernel } from "../../gpu/kernel.ts";
import { sharedUniforms } from "../../gpu/shared_uniforms.ts";
import { ArborError } from "../../errors.ts";

/** Invocations per workgroup (one row each). */
const WG = 64;
/** Most blocks per row (MAX_BLOCKS in the WGSL). */
export const MAX_SLOT_BLOCKS = 256;
/**
 * Bytes of dead decoder rows one block spans (512 rows at d = 768). Measured on the 2-core dev VM (1
 * MiB L2 per core) when blocks still counted features, AuxK at B = 4096 with every other feature
 * dead, n = 24 576: blocks of 512 dead rows 0.7–0.9 s, 1 024 alike, 256 1.0–1.1 s (each block's
 * dispatch also re-reads and re-writes ê), unblocked 1.7–1.9 s. 512 keeps those blocks at half dead.
 */
export const SLOT_BLOCK_BYTES = 1.5 * 2 ** 20;
const KERNEL: Kernel = { file: "slot_blocks.wgsl", entry: "group_slots", constants: { WG } };

/**
 * Blocks of the dead features among [base, base + count): block j holds those of dead rank
 * [j·2^shift, (j+1)·2^shift) counted from base (the last block takes any beyond).
 */
export interface SlotBlocks {
  base: number;
  shift: number;
  /** Number of blocks, ≤ MAX_SLOT_BLOCKS. */
  nb: number;
}

/** Blocks of ~`blockBytes` of decoder rows (d wide) for up to `count` dead features from `base`. */
export function slotBlocks(
  count: number,
  d: number,
  base = 0,
  blockBytes = SLOT_BLOCK_BYTES,
): SlotBlocks {
  if (count < 1 || d < 1) {
    throw new ArborError(`slot blocks: need features and d ≥ 1 (got ${count}, ${d})`);
  }
  let shift = Math.max(0, Math.floor(Math.log2(blockBytes / (4 * d))));
  while (Math.ceil(count / 2 ** shift) > MAX_SLOT_BLOCKS) shift++;
  return { base, shift, nb: Math.ceil(count / 2 ** shift) };
}

/** Buffers of `groupSlotsOp`. */
export interface GroupSlotsBuffers {
  idx: GPUBuffer;
  val: GPUBuffer;
  idxOut: GPUBuffer;
  valOut: GPUBuffer;
  /** [B, nb + 1] u32. */
  starts: GPUBuffer;
  /** [1 + 2n] u32 dead list with ranks (`deadListBuffer`, filled by `selectAuxOp`). */
  list: GPUBuffer;
}

/** Dispatch regrouping every row's K slots by block of dead features, stably (see the WGSL header). */
export function groupSlotsOp(
  gpu: Gpu,
  buffers: GroupSlotsBuffers,
  sizes: { B: number; K: number; n: number; blocks: SlotBlocks },
): Dispatch[] {
  const { B, K, n, blocks } = sizes;
  if (blocks.nb < 1 || blocks.nb > MAX_SLOT_BLOCKS) {
    throw new ArborError(
      `slot blocks: ${blocks.nb} blocks; the kernel takes 1 to ${MAX_SLOT_BLOCKS}`,
    );
  }
  if (B === 0) return [];
  const u = sharedUniforms(gpu, {
    B,
    K,
    base: blocks.base,
    shift: blocks.shift,
    nb: blocks.nb,
    n,
    pad1: 0,
    pad2: 0,
  });
  const { idx, val, idxOut, valOut, starts, list } = buffers;
  if (list.size < (1 + 2 * n) * 4) {
    throw new ArborError(
      `slot blocks: the dead list holds ${list.size} bytes; n = ${n} needs ${(1 + 2 * n) * 4}`,
    );
  }
  return [{
    kernel: KERNEL,
    buffers: [idx, val, idxOut, valOut, starts, u, list],
    workgroups: [Math.ceil(B / WG), 1],
  }];
}
