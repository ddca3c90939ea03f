/**
 * The training loop: stream batches, step the engine, let hooks act (the Tree SAE's
 * capacity and reallocation), log metrics, checkpoint. Each iteration is a short list
 * of named calls; everything that could go wrong with the data is checked before the
 * engine sees it. `resume` continues exactly where a checkpoint stopped: same batches,
 * same state, so N straight steps equal N/2 + resume + N/2 bit for bit.
 */
import { join } from "node:path";
import { ArborError, DataError } from "../errors.ts";
import { batchValuesF32, type SaeEngine, type StepStats, type StepTicket } from "../sae/engine.ts";
import { type BatchSource, firstNonFinite, type SourceBatch } from "./batch_source.ts";
import { type CheckpointInfo, saveCheckpoint, type TrainerProgress } from "./checkpoint.ts";

/** File (in the output folder) that receives one JSON object per log line. */
export const METRICS_FILE = "metrics.jsonl";

/** What a hook sees besides the step's statistics. */
export interface HookContext {
  /** Steps done (same as stats.step). */
  step: number;
  /** Tokens trained on so far. */
  tokensSeen: number;
  /** Tokens the run will train on. */
  maxTokens: number;
  /** Append a record to metrics.jsonl (e.g. a reallocation event). */
  log(record: Record<string, unknown>): Promise<void>;
  /** Print a line to the console (above the progress line). */
  print(line: string): void;
}

/**
 * A trainer extension (the Tree SAE's capacity accumulation and scheduled reallocation).
 * Its state is saved in every checkpoint under `name`.
 */
export interface TrainerHook {
  /** Key of this hook's state in trainer_state.json. */
  readonly name: string;
  /** Runs after every engine step (may read or write the engine's state). */
  afterStep(stats: StepStats, engine: SaeEngine, ctx: HookContext): Promise<void> | void;
  /**
   * Whether `afterStep` of step `step` may read or write the engine (absent: always). When it
   * says no, the trainer submits the next step before running it.
   */
  usesEngineAfter?(step: number): boolean;
  /** JSON state and tensors to checkpoint. */
  saveState?(): {
    json?: unknown;
    tensors?: Record<string, Float32Array | Int32Array | Uint32Array>;
  };
  /** Restore what `saveState` returned (on resume). */
  loadState?(json: unknown, tensors: Record<string, Float32Array | Int32Array | Uint32Array>): void;
}

/** Where progress lines go: a TTY gets one `\r`-updated line, anything else plain lines. */
export interface ProgressSink {
  /** Whether the output is a terminal. */
  isTerminal: boolean;
  /** Write text as is. */
  write(text: string): void;
}

/** Options of `train`. */
export interface TrainOptions {
  /** The engine to train (its state is where training starts). */
  engine: SaeEngine;
  /** Batches of raw activations. */
  source: BatchSource;
  /** Output folder: checkpoint files and metrics.jsonl. */
  outDir: string;
  /** Rows per batch (recorded in the checkpoint). */
  batchSize: number;
  /** Stop once this many tokens have been trained on (the last batch may overshoot). */
  maxTokens: number;
  /** Log a metrics line every this many steps (≥ 1). */
  logEvery: number;
  /** Checkpoint every this many steps (0: only at the end). */
  checkpointEvery: number;
  /** Trainer progress from a checkpoint (resume); default a fresh start. */
  progress?: TrainerProgress;
  /** Extensions run after each step. */
  hooks?: TrainerHook[];
  /** Provenance written into config.json. */
  info?: CheckpointInfo;
  /** Stops the run after the current step, with a checkpoint (SIGINT). */
  signal?: AbortSignal;
  /**
   * With an engine that can enqueue steps: how many may be submitted ahead of the step whose
   * statistics are being handled (default `DEFAULT_STEPS_AHEAD`; 0 = one step at a time). The
   * weights do not depend on it.
   */
  stepsAhead?: number;
  /** Progress line output (default: stdout); null for none. */
  progressSink?: ProgressSink | null;
}

/** How a run ended. */
export interface TrainResult {
  /** Steps done in total (including those before a resume). */
  steps: number;
  /** Tokens trained on in total. */
  tokensSeen: number;
  /** True when stopped by the signal before reaching maxTokens. */
  interrupted: boolean;
  /** Statistics of the last step of this run (null if no step ran). */
  last: StepStats | null;
}

/** Fresh trainer progress for a run of `maxTokens` tokens in batches of `batchSize` rows. */
export function freshProgress(batchSize: number, maxTokens: number, rngState = 0): TrainerProgress {
  return {
    tokensSeen: 0,
    batchSize,
    maxTokens,
    cursor: null,
    rngState,
    hooks: {},
    hookTensors: {},
  };
}

/** Create the output folder and prove it is writable before any work (clear error otherwise). */
export async function ensureWritableDir(dir: string, flag = "--out") {
  const probe = join(dir, `.arbor-write-test-${Deno.pid}`);
  try {
    await Deno.mkdir(dir, { recursive: true });
    await Deno.writeFile(probe, new Uint8Array(1));
    await Deno.remove(probe);
  } catch (e) {
    throw new ArborError(
      `${flag} ${dir}: cannot write there (${(e as Error).message}); choose a writable folder`,
    );
  }
}

/**
 * Train until maxTokens or the signal; checkpoints periodically and at the end. With an engine
 * that can enqueue steps (the GPU engine), up to `stepsAhead` later steps are submitted before a
 * step's statistics are handled, so the GPU does not wait for the host between steps; never past a
 * step followed by a checkpoint or by a hook that uses the engine, which must see it as that step
 * left it. The weights are the same either way.
 */
export async function train(o: TrainOptions): Promise<TrainResult> {
  const run = new Run(o);
  const ahead = o.stepsAhead ?? DEFAULT_STEPS_AHEAD;
  if (!(Number.isInteger(ahead) && ahead >= 0)) {
    throw new ArborError(`train: stepsAhead must be an integer ≥ 0, got ${ahead}`);
  }
  // Submitted steps, oldest first; each is handled (stats, hooks, log, checkpoint) in order.
  const queue: Pending[] = [];
  try {
    await run.start();
    for (;;) {
      const newest = queue[queue.length - 1];
      if (newest && !run.canOverlap(newest)) {
        while (queue.length) await run.complete(queue.shift()!);
      }
      const next = await run.enqueueNext();
      if (!next) break;
      queue.push(next);
      // Handle the steps whose statistics are in; wait for one only past `ahead` queued.
      while (queue.length && (queue.length > ahead || queue[0].ticket.ready)) {
        await run.complete(queue.shift()!);
      }
    }
    while (queue.length) await run.complete(queue.shift()!);
    return await run.finish();
  } finally {
    // On an error, let submitted steps finish before the caller frees the engine.
    for (const p of queue) await p.ticket.stats().catch(() => {});
    run.close();
  }
}

/**
 * Steps submitted ahead of the one being handled. A step's statistics are mapped when the next
 * step is submitted and Deno resolves the map ≥ 10 ms later, so awaiting them A steps ahead waits
 * about 10 − (A − 1)·S ms for steps of S ms: on an H100 (d 768, n 6 144, B 4 096) four ahead gave
 * 4.2–4.8 against 7.8 ms per step with two (bench/README.md, "H100"). Each
 * step in flight holds its batch on the host (12.6 MB at that shape).
 */
export const DEFAULT_STEPS_AHEAD = 4;

/** A submitted step whose statistics are not handled yet. */
interface Pending {
  batch: SourceBatch;
  /** The engine's step count once this step is done. */
  step: number;
  ticket: StepTicket;
}

/** State of one `train` call; each method is one named phase of the loop. */
class Run {
  readonly #o: TrainOptions;
  readonly #progress: TrainerProgress;
  readonly #sink: ProgressSink | null;
  #metrics: Deno.FsFile | null = null;
  #step = 0;
  /** Steps and tokens submitted but not yet handled. */
  #queuedSteps = 0;
  #queuedTokens = 0;
  #last: StepStats | null = null;
  /** Tokens seen and the time at the previous log line (the run's start before the first). */
  #rateTokens = 0;
  #rateTime = 0;
  #lineOpen = false;

  constructor(o: TrainOptions) {
    if (!(o.logEvery >= 1) || !(o.checkpointEvery >= 0)) {
      throw new ArborError(`train: logEvery must be ≥ 1 and checkpointEvery ≥ 0`);
    }
    this.#o = o;
    this.#progress = structuredClone(o.progress ?? freshProgress(o.batchSize, o.maxTokens));
    this.#progress.batchSize = o.batchSize;
    this.#progress.maxTokens = o.maxTokens;
    this.#sink = o.progressSink === undefined ? stdoutSink() : o.progressSink;
  }

  async start() {
    const { engine, source } = this.#o;
    if (source.dIn !== engine.config.dIn) {
      throw new ArborError(
        `${source.name}: rows have d_in = ${source.dIn} but the SAE has d_in = ${engine.config.dIn}; ` +
          "use activations of the same model and hook (or start a new run)",
      );
    }
    await ensureWritableDir(this.#o.outDir);
    for (const h of this.#o.hooks ?? []) {
      const tensors: Record<string, Float32Array | Int32Array | Uint32Array> = {};
      for (const [k, t] of Object.entries(this.#progress.hookTensors)) {
        if (k.startsWith(h.name + ".")) tensors[k.slice(h.name.length + 1)] = t;
      }
      if (h.name in this.#progress.hooks || Object.keys(tensors).length) {
        h.loadState?.(this.#progress.hooks[h.name], tensors);
      }
    }
    this.#step = (await engine.readState()).step;
    this.#metrics = await Deno.open(join(this.#o.outDir, METRICS_FILE), {
      append: true,
      create: true,
    });
    this.#rateTokens = this.#progress.tokensSeen;
    this.#rateTime = performance.now();
  }

  done(): boolean {
    return this.#progress.tokensSeen >= this.#o.maxTokens || !!this.#o.signal?.aborted;
  }

  /**
   * Submit the next step (null when the run is done or the data ran out): the next batch, every
   * value checked finite, handed to the engine.
   */
  async enqueueNext(): Promise<Pending | null> {
    const p = this.#progress;
    if (p.tokensSeen + this.#queuedTokens >= this.#o.maxTokens || this.#o.signal?.aborted) {
      return null;
    }
    const batch = await this.#o.source.next();
    if (!batch) return null;
    checkFinite(batch, this.#o.source.name, p.tokensSeen + this.#queuedTokens);
    const engine = this.#o.engine;
    let ticket: StepTicket;
    if (engine.enqueueStep) ticket = await engine.enqueueStep(batch.x, batch.rows);
    else {
      const done = Promise.resolve(await engine.step(batchValuesF32(batch.x), batch.rows));
      ticket = { stats: () => done, ready: true };
    }
    batch.release?.(); // uploaded (or used) by now
    this.#queuedSteps++;
    this.#queuedTokens += batch.rows;
    return { batch, step: this.#step + this.#queuedSteps, ticket };
  }

  /** Whether the step after `pending` may be submitted before `pending` is handled. */
  canOverlap(pending: Pending): boolean {
    const every = this.#o.checkpointEvery;
    const checkpointNext = every > 0 && pending.step % every === 0;
    const hooksQuiet = (this.#o.hooks ?? []).every((h) =>
      h.usesEngineAfter?.(pending.step) === false
    );
    return !checkpointNext && hooksQuiet;
  }

  /** Handle a submitted step once its statistics are in: progress, hooks, log, checkpoint. */
  async complete(pending: Pending) {
    const stats = await this.#takeStats(pending);
    await this.runHooks(stats);
    await this.maybeLog(stats);
    await this.maybeCheckpoint();
  }

  /** Wait for a submitted step's statistics and count it into the progress. */
  async #takeStats(pending: Pending): Promise<StepStats> {
    const { batch } = pending;
    const stats = await pending.ticket.stats();
    this.#queuedSteps--;
    this.#queuedTokens -= batch.rows;
    if (!Number.isFinite(stats.loss)) {
      throw new ArborError(
        `training diverged: loss is ${stats.loss} at step ${stats.step}; lower --lr or check the data`,
      );
    }
    this.#progress.tokensSeen += batch.rows;
    this.#progress.cursor = batch.cursor;
    this.#step = stats.step;
    this.#last = stats;
    return stats;
  }

  async runHooks(stats: StepStats) {
    for (const h of this.#o.hooks ?? []) {
      await h.afterStep(stats, this.#o.engine, {
        step: stats.step,
        tokensSeen: this.#progress.tokensSeen,
        maxTokens: this.#o.maxTokens,
        log: (r) => this.#writeMetrics({ step: stats.step, ...r }),
        print: (line) => this.#print(line),
      });
    }
  }

  async maybeLog(stats: StepStats) {
    const end = this.done();
    if (stats.step % this.#o.logEvery !== 0 && !end) return;
    const rate = this.#tokensPerSecond();
    await this.#writeMetrics({
      step: stats.step,
      tokens: this.#progress.tokensSeen,
      loss: stats.loss,
      fvu: stats.fvu,
      l0: stats.l0,
      l0_per_layer: stats.l0PerLayer,
      main_loss: stats.mainLoss,
      aux_loss: stats.auxLoss,
      dead_fraction: stats.deadFraction,
      tokens_per_s: rate,
    });
    this.#showProgress(stats, rate);
  }

  async maybeCheckpoint() {
    const every = this.#o.checkpointEvery;
    if (every > 0 && this.#step % every === 0 && !this.done()) await this.#checkpoint();
  }

  async finish(): Promise<TrainResult> {
    if (this.#lineOpen) this.#sink?.write("\n");
    this.#lineOpen = false;
    await this.#checkpoint();
    const interrupted = !!this.#o.signal?.aborted && this.#progress.tokensSeen < this.#o.maxTokens;
    return {
      steps: this.#step,
      tokensSeen: this.#progress.tokensSeen,
      interrupted,
      last: this.#last,
    };
  }

  /** Release the metrics file (also on errors). */
  close() {
    this.#metrics?.close();
    this.#metrics = null;
  }

  async #checkpoint() {
    const state = await this.#o.engine.readState();
    const progress: TrainerProgress = { ...this.#progress, hooks: {}, hookTensors: {} };
    for (const h of this.#o.hooks ?? []) {
      const saved = h.saveState?.();
      if (!saved) continue;
      if (saved.json !== undefined) progress.hooks[h.name] = saved.json;
      for (const [k, t] of Object.entries(saved.tensors ?? {})) {
        progress.hookTensors[`${h.name}.${k}`] = t;
      }
    }
    await saveCheckpoint(
      this.#o.outDir,
      { config: this.#o.engine.config, state, progress },
      this.#o.info,
    );
  }

  async #writeMetrics(record: Record<string, unknown>) {
    const bytes = new TextEncoder().encode(JSON.stringify(record) + "\n");
    let done = 0;
    while (done < bytes.length) done += await this.#metrics!.write(bytes.subarray(done));
  }

  /**
   * Tokens per second since the previous log line (the first: since the run started, the first
   * step's kernel compiles included). A rate since the start would show those compiles for long
   * after: on a GPU they take seconds, a step milliseconds.
   */
  #tokensPerSecond(): number {
    const now = performance.now();
    const seconds = (now - this.#rateTime) / 1000;
    const rate = seconds > 0 ? (this.#progress.tokensSeen - this.#rateTokens) / seconds : 0;
    this.#rateTime = now;
    this.#rateTokens = this.#progress.tokensSeen;
    return rate;
  }

  #showProgress(s: StepStats, rate: number) {
    if (!this.#sink) return;
    const left = Math.max(0, this.#o.maxTokens - this.#progress.tokensSeen);
    const eta = rate > 0 ? formatDuration(left / rate) : "?";
    const dead = s.deadFraction.map((f) => (100 * f).toFixed(1) + "%").join("/");
    const line =
      `step ${s.step}  tokens ${si(this.#progress.tokensSeen)}/${si(this.#o.maxTokens)}` +
      `  loss ${s.loss.toPrecision(4)}  fvu ${s.fvu.toPrecision(3)}  l0 ${s.l0.toFixed(1)}` +
      `  dead ${dead}  ${si(rate)} tok/s  ETA ${eta}`;
    if (this.#sink.isTerminal) {
      this.#sink.write("\r\x1b[2K" + line);
      this.#lineOpen = true;
    } else this.#sink.write(line + "\n");
  }

  #print(line: string) {
    if (!this.#sink) return;
    if (this.#lineOpen) this.#sink.write("\r\x1b[2K");
    this.#lineOpen = false;
    this.#sink.write(line + "\n");
  }
}

/** Reject NaN/±Inf in a batch, naming the source and the token position. */
export function checkFinite(batch: SourceBatch, name: string, tokensBefore: number) {
  const x = batch.x;
  const i = batch.nonFinite ?? firstNonFinite(x);
  if (i < 0) return;
  const d = x.length / batch.rows;
  const row = Math.floor(i / d);
  throw new DataError(
    `${name}: non-finite value ${x[i]} in the training data (token ${
      tokensBefore + row
    } of the run, ` +
      `column ${i % d}); clean or re-extract the activations`,
  );
}

function stdoutSink(): ProgressSink {
  const enc = new TextEncoder();
  return {
    isTerminal: Deno.stdout.isTerminal(),
    write: (t) => void Deno.stdout.writeSync(enc.encode(t)),
  };
}

/** 1234567 → "1.23M". */
function si(v: number): string {
  if (v >= 1e9) return (v / 1e9).toFixed(2) + "G";
  if (v >= 1e6) return (v / 1e6).toFixed(2) + "M";
  if (v >= 1e3) return (v / 1e3).toFixed(1) + "k";
  return v.toFixed(0);
}

/** Seconds → "1h02m", "5m12s", "42s". */
export function formatDuration(s: number): string {
  if (!Number.isFinite(s)) return "?";
  const t = Math.round(s);
  if (t >= 3600) {
    return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, "0")}m`;
  }
  if (t >= 60) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, "0")}s`;
  return `${t}s`;
}
