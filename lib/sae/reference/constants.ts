/** Numerical constants of the SAE math contract, shared by the TS reference and the GPU engine. */

/** Added to the per-token std before dividing in standardisation (ref). */
export const STD_EPS = 1e-5;
/** A feature "fires" on a token when its code value exceeds this (ref; also the tree gate). */
export const FIRE_THRESHOLD = 1e-3;
/** Index stored in an unused code slot (its value is 0). */
export const UNUSED_SLOT = 0xffffffff;
/** Adam β1 (ref). */
export const ADAM_BETA1 = 0.9;
/** Adam β2 (ref). */
export const ADAM_BETA2 = 0.999;
/** Adam ε (ref: 6.25e-10, much smaller than PyTorch's 1e-8 default). */
export const ADAM_EPS = 6.25e-10;
/** BatchTopK inference threshold EMA: θ ← decay·θ + (1 − decay)·minKept (ref-style). */
export const THRESHOLD_DECAY = 0.99;
/** Weiszfeld iterations for the geometric-median init of b_dec (DESIGN §4). */
export const GEOMEDIAN_MAX_ITERS = 100;
/** Weiszfeld stops when the step is below this times the points' mean spread. */
export const GEOMEDIAN_TOL = 1e-6;
