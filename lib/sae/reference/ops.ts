/**
 * The plain-loop TypeScript reference of the SAE math contract: every GPU kernel's twin.
 * Shapes are row-major f32 unless stated; see each module's legend.
 * Order of one training step (ReferenceEngine.step):
 * standardize → encode → select → levelReconstructions → selectAux → losses → backward →
 * removeParallelGrad → adamStep (encW, decW, bDec) → renormRows → fireCounts/updateDeadCounters.
 */
export * from "./constants.ts";
export * from "./standardize.ts";
export * from "./encode.ts";
export * from "./select.ts";
export * from "./decode.ts";
export * from "./loss.ts";
export * from "./backward.ts";
export * from "./optim.ts";
export * from "./dead.ts";
export * from "./init.ts";
