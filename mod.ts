/**
 * Arbor: hierarchical sparse autoencoders (Tree SAE and baselines) on WebGPU.
 *
 * The library API a user scripts against; the CLI in `cli/` is built on it.
 * @module
 */
export { VERSION } from "./lib/version.ts";
export { ArborError, DataError, GpuError } from "./lib/errors.ts";
export { getGpu, type Gpu, type GpuOptions, GpuUnavailableError } from "./lib/gpu/device.ts";
export {
  type Dispatch,
  getPipeline,
  type Kernel,
  loadWgsl,
  runKernels,
  withErrorScope,
} from "./lib/gpu/kernel.ts";
export {
  createStorage,
  readBuffer,
  readF32,
  readU32,
  uniforms,
  uploadStorage,
  writeBuffer,
} from "./lib/gpu/buffer.ts";
export { timeGpu } from "./lib/gpu/timer.ts";
export { unpackF16, uploadF16AsF32 } from "./lib/gpu/unpack_f16.ts";
export { f16BitsToF32, f32ToF16Bits, fromF16, toF16 } from "./lib/util/f16.ts";
// Activation store (lib/store/): sharded datasets, writer, streaming reader.
export {
  type Dtype,
  FORMAT_NAME,
  FORMAT_VERSION,
  type Manifest,
  type Provenance,
  readManifest,
  type ShardEntry,
} from "./lib/store/manifest.ts";
export {
  ActivationWriter,
  type AppendResult,
  DEFAULT_SHARD_BYTES,
  type NanPolicy,
  type TokenInfo,
  type WriterOptions,
} from "./lib/store/writer.ts";
export {
  ActivationReader,
  type AllRows,
  batchF32,
  type LoadedShard,
  type OpenOptions,
  readAllF32,
  toGpu,
} from "./lib/store/reader.ts";
export {
  type Batch,
  type BatchOptions,
  BatchStream,
  type ReadCursor,
  type ReadOrder,
} from "./lib/store/batch_stream.ts";
export {
  childCounts,
  type ChildLists,
  childLists,
  cloneTree,
  fromCheckpointParents,
  initialParents,
  initialTree,
  type IntSource,
  layerOffsets as treeLayerOffsets,
  makeTree,
  parentKey,
  toCheckpointParents,
  type TreeStructure,
  validateLayerConfig,
  validateTree,
} from "./lib/tree/structure.ts";
export { greedyAllocation, minPayoff } from "./lib/tree/allocation.ts";
export {
  CapacityAccumulator,
  type CapacityRule,
  eligibleParents,
  PARENT_ELIGIBILITY_TOKENS,
} from "./lib/tree/capacity.ts";
export {
  deadMask as treeDeadMask,
  type LayerReport,
  type ParentChange,
  reallocate,
  reallocateLayer,
  type ReallocationInputs,
  type ReallocationResult,
  resetDeadToRoot,
} from "./lib/tree/reallocation.ts";
export {
  type ReallocationSchedule,
  reallocationSteps,
  scaledScheduleDefaults,
  scheduledEvent,
  type ScheduleOptions,
} from "./lib/tree/schedule.ts";
export { getPreset, PRESET_NAMES, PRESETS, type SaePreset } from "./lib/tree/presets.ts";
export {
  type AllocationRecord,
  TREE_HOOK_NAME,
  treeAfterStep,
  TreeAllocator,
  type TreeAllocatorOptions,
  type TreeAllocatorState,
  treeTrainerHook,
} from "./lib/tree/trainer_hook.ts";
export {
  DEFAULT_AUX_ALPHA,
  DEFAULT_AUX_K,
  DEFAULT_DEAD_TOKENS,
  DEFAULT_LR,
  featureLayers,
  layerOffsets,
  makeConfig,
  numFeatures,
  numLevels,
  SAE_ARCHS,
  type SaeArch,
  type SaeConfig,
  type SaeConfigInput,
  slotsPerRow,
  validateConfig,
} from "./lib/sae/config.ts";
export {
  type AdamMoments,
  checkStateShapes,
  cloneState,
  type EncodeResult,
  initState,
  type SaeEngine,
  type SaeState,
  type StepStats,
} from "./lib/sae/engine.ts";
export * as saeReference from "./lib/sae/reference/ops.ts";
export { ReferenceEngine } from "./lib/sae/reference_engine.ts";
export { Rng } from "./lib/util/rng.ts";
export {
  type Dtype as SafetensorsDtype,
  readSafetensors,
  SafeTensors,
  serializeSafetensors,
  type TensorData,
  type TensorInfo,
  writeSafetensors,
} from "./lib/format/safetensors.ts";
export {
  type Checkpoint,
  type CheckpointInfo,
  loadCheckpoint,
  type LoadedSae,
  loadSae,
  readCheckpointInfo,
  saveCheckpoint,
  type TrainerProgress,
} from "./lib/train/checkpoint.ts";
export {
  arraySource,
  type BatchSource,
  type SourceBatch,
  storeSource,
} from "./lib/train/batch_source.ts";
export { createEngine, type EngineKind } from "./lib/train/engine_factory.ts";
export {
  freshProgress,
  type HookContext,
  METRICS_FILE,
  type ProgressSink,
  train,
  type TrainerHook,
  type TrainOptions,
  type TrainResult,
} from "./lib/train/trainer.ts";
export {
  emptyProbability,
  type FeatureNode,
  type FeatureTree,
  parseTree,
  readTreeFile,
  treeFromParams,
  type TreeNodeJson,
  type TreeParams,
  treeToJson,
  zipfProbs,
} from "./lib/synth/tree.ts";
export { buildDirections, expectedCosines, type MixingParams } from "./lib/synth/directions.ts";
export {
  activityBytes,
  isActive,
  type SynthBatch,
  SynthGenerator,
  type SynthParams,
} from "./lib/synth/generator.ts";
export {
  isSynthDatasetCurrent,
  type SynthDatasetOptions,
  type SynthDatasetResult,
  writeSynthDataset,
} from "./lib/synth/dataset.ts";
export {
  arborCacheDir,
  DEFAULT_SYNTH_PARAMS,
  DEFAULT_TREE_PARAMS,
  type DefaultDataset,
  defaultTree,
  ensureDefaultDataset,
} from "./lib/synth/default.ts";
export {
  readTruth,
  readTruthActivity,
  type Truth,
  TRUTH_FILE,
  type TruthJson,
} from "./lib/synth/truth.ts";
export {
  type FeatureMatch,
  GroundTruthCodeStats,
  type GroundTruthInput,
  type GroundTruthScores,
  learnedParentsFromTree,
  matchFeatures,
  RECOVERED_COSINE,
  scoreAgainstDataset,
  scoreGroundTruth,
} from "./lib/eval/ground_truth.ts";
export {
  DEFAULT_INSPECT_TOKENS,
  type Inspection,
  type InspectOptions,
  openInspection,
} from "./lib/inspect/inspection.ts";
export {
  type FeatureTree as InspectFeatureTree,
  featureTree as inspectFeatureTree,
} from "./lib/inspect/structure.ts";
export { type FeatureProfile, profileFeatures, topTokens } from "./lib/inspect/profile.ts";
export { type ChildGeometry, childGeometry } from "./lib/inspect/geometry.ts";
export { formatFeature, formatTree } from "./lib/inspect/terminal.ts";
export { type ExplorerOptions, writeExplorer } from "./lib/inspect/html.ts";
export { type Gpt2Config, parseGpt2Config, readGpt2Config } from "./lib/lm/config.ts";
export {
  checkHook,
  HookError,
  hookName,
  type HookPoint,
  type HookSite,
  parseHook,
} from "./lib/lm/hooks.ts";
export {
  type ForwardOptions,
  type ForwardResult,
  Gpt2Model,
  type Gpt2ModelOptions,
} from "./lib/lm/model.ts";
export { loadGpt2Model } from "./lib/lm/load.ts";
export { type Gpt2Weights, loadGpt2Weights, type TensorSource } from "./lib/lm/weights.ts";
export { ModelFilesError, resolveModel, type ResolveOptions } from "./lib/lm/model_files.ts";
export { loadTokenizer, type Tokenizer } from "./lib/lm/tokenizer.ts";
export { type Document, readCorpus } from "./lib/lm/corpus.ts";
export { tokenWindows, type Window } from "./lib/lm/windows.ts";
export { extract, type ExtractOptions, type ExtractProgress } from "./lib/lm/extract.ts";
export {
  checkCodes,
  concatCodes,
  FeatureStats,
  featureStats,
  FIRE_THRESHOLD,
  type SparseCodes,
  UNUSED_SLOT,
} from "./lib/eval/sparse_codes.ts";
export {
  DEAD_DENSITY,
  DENSE_DENSITY,
  ReconstructionAccumulator,
  type ReconstructionMetrics,
  type ReconstructionOptions,
} from "./lib/eval/reconstruction.ts";
export {
  CoactivationAccumulator,
  coactivationReference,
  type CoactivationStats,
  coactivationStats,
  emptyCoactivation,
} from "./lib/eval/coactivation.ts";
export {
  coverageScore,
  MCS_VARIANTS,
  mcsScore,
  type McsVariant,
  PAPER_MCS,
  type ScoredChild,
  topChildren,
} from "./lib/eval/coverage.ts";
export {
  DEFAULT_LOGREG,
  fitLogRegGpu,
  fitLogRegReference,
  type LogRegFit,
  type LogRegOptions,
  projectRows,
} from "./lib/eval/logreg.ts";
export {
  childDirections,
  DEFAULT_HIERARCHY,
  type HierarchyInput,
  hierarchyMetric,
  type HierarchyOptions,
  type HierarchyResult,
  type PairScore,
  reconstructionScore,
} from "./lib/eval/probes.ts";
export { treeChildren } from "./lib/eval/tree_children.ts";
export { CooccurrenceAccumulator, type CooccurrenceResult } from "./lib/eval/cooccurrence.ts";
export { composition, type CompositionResult } from "./lib/eval/composition.ts";
export {
  type DownstreamInput,
  downstreamMetrics,
  type DownstreamResult,
} from "./lib/eval/downstream.ts";
export { type EvalRows, readEvalRows } from "./lib/eval/eval_data.ts";
export {
  ACTIVATION_METRICS,
  type EvalSettings,
  evaluateSae,
  type MetricName,
  type MetricsRecord,
  MODEL_METRICS,
  type SaeUnderTest,
} from "./lib/eval/evaluate_sae.ts";
export {
  type EvalResult,
  formatCompare,
  formatTable,
  makeResult,
  parseResult,
  RESULT_SCHEMA,
  RESULT_VERSION,
  resultJson,
} from "./lib/eval/results.ts";
export {
  EXPORT_FORMATS,
  exportCheckpoint,
  type ExportFormat,
  foreignToState,
  IMPORT_FORMATS,
  importCheckpoint,
  type ImportFormat,
  readForeign,
} from "./lib/format/convert.ts";
export {
  foreignEncode,
  foreignReconstruct,
  type ForeignSae,
  nativeBlockers,
  type Normalization,
} from "./lib/format/foreign_sae.ts";
export { ForeignEngine } from "./lib/format/foreign_engine.ts";
export { exportSaelens, readSaelens, SAELENS_FORMULA } from "./lib/format/saelens.ts";
export { readSparsify } from "./lib/format/sparsify.ts";
export { MP_RESIDUAL_EPS, mpBackward, mpPursuit, type MpState } from "./lib/sae/mp/reference.ts";
export {
  makeMpConfig,
  type MpConfig,
  MpEngine,
  type MpEngineOptions,
} from "./lib/sae/mp/engine.ts";
export { createMpEngine } from "./lib/sae/mp/factory.ts";
export {
  featureSplits,
  type SplitResult,
  type WordAbsorption,
  wordAbsorption,
} from "./lib/eval/absorption.ts";
export {
  DEFAULT_FIRST_LETTER,
  FIRST_LETTER_PROBE,
  type FirstLetterInput,
  firstLetterMetric,
  type FirstLetterOptions,
  type FirstLetterResult,
  type LetterResult,
  type LetterSplit,
} from "./lib/eval/first_letter.ts";
export {
  type AbsorptionParams,
  DEFAULT_FIRST_LETTER_DATA,
  firstLetterAbsorption,
  firstLetterData,
  type FirstLetterDataOptions,
} from "./lib/eval/first_letter_model.ts";
export {
  alphabeticVocab,
  buildPrompts,
  LETTERS,
  promptPieces,
  readTokenizerVocab,
  splitVocab,
  type VocabWord,
} from "./lib/eval/first_letter_vocab.ts";
export {
  DEFAULT_L1_PROBE,
  fitL1Probes,
  fitSparseLogReg,
  type L1ProbeOptions,
} from "./lib/eval/first_letter_sparse.ts";
export {
  detectSaeFormat,
  OPEN_FORMATS,
  type OpenedSae,
  openSae,
  type SaeFormat,
} from "./lib/format/open_sae.ts";
export {
  COMPARE_ARCHS,
  type CompareArch,
  compareConfig,
  type CompareOptions,
  type CompareRow,
  type CompareSettings,
  type CompareSummary,
  DEMO_SETTINGS,
  formatTable as formatComparisonTable,
  runComparison,
  SUMMARY_FILE,
} from "./lib/demo/compare.ts";
export { GpuEngine, type GpuEngineOptions } from "./lib/sae/gpu_engine.ts";
