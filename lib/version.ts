/** Arbor's version, written into manifests, checkpoints and evaluation results. */
export const VERSION = "0.1.0";
