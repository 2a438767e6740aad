import { createHash } from 'node:crypto';
import { dirname } from 'node:path';
import cliProgress from 'cli-progress';
import sharp from 'sharp';
import { misclassifiedTiles, renderGrid } from '../datasets/grid.ts';
import { asInputError, CnnlabError, DivergedError, InputError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';
import { openDataset } from '../datasets/open.ts';
import { type Dataset, exampleSize, holdOut, type Split, sliceSplit } from '../datasets/sources.ts';
import type { ImageShape } from '../datasets/registry.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import type { Checkpoint, CkptTensor } from '../graph-builder/artifacts/checkpoint.ts';
import { type Artifacts, compile, inferenceOf, initialCheckpoint } from '../graph-builder/artifacts/compile.ts';
import { trainStepInterface } from '../graph-builder/artifacts/train-step.ts';
import { graphTargetFor } from '../graph-builder/autodiff/registry.ts';
import type { Architecture } from '../graph-builder/dsl/arch.ts';
import { checkTrainable } from '../graph-builder/import/onnx-model.ts';
import { initParams, type ParamSet } from '../graph-builder/dsl/init.ts';
import { byteImageDims, elementCount, type Model } from '../graph-builder/model.ts';
import { frozenParams, trainableLine } from '../graph-builder/freeze.ts';
import { runCardEntries } from '../graph-builder/artifacts/model-card.ts';
import { headParams } from '../graph-builder/import/head.ts';
import { featuresGraph, type HeadSplit, splitAtHead } from '../graph-builder/split.ts';
import { HASH_MODULUS } from '../graph-builder/train-mode.ts';
import { createRuntime, type Runtime, type Session } from '../runtime/ort.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';
import { augmentImage } from './augment.ts';
import { type FeatureSplit, splitFeatures } from './features.ts';
import { loadRunArchitecture, type RunConfig } from './config.ts';
import { type EpochMetrics, rankOf, RunFolder } from './run-folder.ts';
import { hyperAt, scheduleOf, type ScheduleSettings } from './schedule.ts';
import { optimizerKind } from './optimizers/index.ts';

export { CHECKPOINT, type EpochMetrics, readMetrics } from './run-folder.ts';

export interface FitOptions {
  /** Where config.json, metrics.jsonl, checkpoint.ckpt, events and models go. */
  runDir: string;
  resume: boolean;
  /** Progress bar on stderr (default: when stderr is a TTY). */
  progress?: boolean;
  /** One line per epoch (default console.log). */
  log?: (line: string) => void;
  /**
   * Set to stop after the current chunk, with a checkpoint (Ctrl-C); armed once set-up is done.
   * While training, fit sets `saveNow`: it writes a checkpoint of the steps done so far where none
   * holds them yet and says so (a second signal calls it before quitting at once).
   */
  stop?: { requested: boolean; arm?: () => void; saveNow?: () => string | undefined };
  /** Start from these parameters instead of a fresh initialisation (fine-tuning). */
  init?: ParamSet;
  /** After each run of K steps: the step before it, and each step's loss and learning rate. */
  onSteps?: (first: number, losses: ArrayLike<number>, lrs: ArrayLike<number>) => void;
  /** After each epoch is recorded. */
  onEpoch?: (m: EpochMetrics) => void;
}

export interface FitResult {
  epochs: EpochMetrics[];
  /** Why the run ended early, if it did. */
  interrupted: boolean;
  runtime: string;
}

/** A 32-bit hash of integers (murmur3's finaliser over a running mix): seeds per epoch and per step. */
export function mixSeed(...values: number[]): number {
  let h = 0x9e3779b9;
  for (const v of values) {
    h = Math.imul(h ^ (v >>> 0), 0x85ebca6b);
    h ^= h >>> 13;
    h = Math.imul(h, 0xc2b2ae35);
    h ^= h >>> 16;
  }
  return h >>> 0;
}

/** The order of an epoch's examples: a permutation from (seed, epoch), so a resumed run redraws it exactly. */
export function epochOrder(cfg: RunConfig, n: number, epoch: number): Uint32Array {
  if (!cfg.shuffle) return Uint32Array.from({ length: n }, (_, i) => i);
  return Rng.seeded(mixSeed(cfg.seed, epoch, 1)).permutation(n);
}

/** The examples the train step and eval graph take: a split's uint8 images, or their float32 features (the fast path). */
interface Feed {
  data: Uint8Array | Float32Array;
  labels: Uint8Array;
  count: number;
  /** Values per example. */
  size: number;
  /** One example as the graphs take it. */
  dims: number[];
  /** Images: their shape, for augmentation. */
  shape?: ImageShape;
}

function imageFeed(split: Split, model: Model): Feed {
  return { data: split.images, labels: split.labels, count: split.count, size: exampleSize(split.shape), dims: byteImageDims(model), shape: split.shape };
}

function featureFeed(f: FeatureSplit): Feed {
  return { data: f.features, labels: f.labels, count: f.count, size: elementCount(f.shape), dims: f.shape };
}

/** Batches for global steps [first, first + count), all of size B, from the epoch's order. */
function assemble(cfg: RunConfig, feed: Feed, order: Uint32Array, epochStep: number, globalStep: number, count: number, B: number, sched: ScheduleSettings): StepBatch {
  const size = feed.size;
  const images = feed.data instanceof Float32Array ? new Float32Array(count * B * size) : new Uint8Array(count * B * size);
  const labels = new Uint8Array(count * B);
  const lr = new Float32Array(count);
  const momentum = new Float32Array(count);
  const dropoutSeed = new BigInt64Array(count);
  const base = epochStep * cfg.batch;
  for (let k = 0; k < count; k++) {
    // Everything random about a step comes from (seed, step): resuming needs no generator state.
    const rng = Rng.seeded(mixSeed(cfg.seed, globalStep + k, 2));
    dropoutSeed[k] = BigInt(rng.int(0, HASH_MODULUS - 1));
    const h = hyperAt(sched, globalStep + k);
    lr[k] = h.lr;
    momentum[k] = h.momentum;
    for (let j = 0; j < B; j++) {
      const src = order[base + k * cfg.batch + j];
      const dst = (k * B + j) * size;
      const example = feed.data.subarray(src * size, (src + 1) * size);
      if (cfg.augment && feed.shape) augmentImage(example as Uint8Array, images.subarray(dst, dst + size) as Uint8Array, cfg.augment, rng, feed.shape);
      else images.set(example, dst);
      labels[k * B + j] = feed.labels[src];
    }
  }
  return { K: count, B, inputs: { images, labels, lr, momentum, dropout_seed: dropoutSeed } };
}

export interface Evaluation {
  loss: number;
  accuracy: number;
  /** The predicted class of each example, where asked for. */
  predicted?: Uint8Array;
}

/** Runs the eval graph of `model` over a split's images or features in batches; parameters come from the carried tensors. */
async function evaluate(rt: Runtime, session: Session, params: ParamSet, model: Model, split: Feed, batch: number, withPredictions = false): Promise<Evaluation> {
  const { Tensor } = rt.ort;
  const feeds: Record<string, InstanceType<typeof Tensor>> = {};
  for (const p of model.params) feeds[p.name] = new Tensor('float32', params.get(p.name)!, p.shape);
  let loss = 0;
  let correct = 0;
  const predicted = withPredictions ? new Uint8Array(split.count) : undefined;
  for (let start = 0; start < split.count; start += batch) {
    const n = Math.min(batch, split.count - start);
    const data = split.data.subarray(start * split.size, (start + n) * split.size);
    feeds.images = data instanceof Float32Array ? new Tensor('float32', data, [n, ...split.dims]) : new Tensor('uint8', data, [n, ...split.dims]);
    feeds.labels = new Tensor('uint8', split.labels.subarray(start, start + n), [n]);
    const out = await session.run(feeds);
    loss += out.loss_sum.data[0] as number;
    correct += out.correct.data[0] as number;
    if (predicted) predicted.set(Array.from(out.predicted.data as BigInt64Array, Number), start);
  }
  return { loss: loss / split.count, accuracy: correct / split.count, predicted };
}

export function paramsOf(tensors: Checkpoint['tensors'], arch: Architecture): ParamSet {
  const out: ParamSet = new Map();
  for (const p of arch.model.params) out.set(p.name, tensors.get(p.name)!.data as Float32Array);
  return out;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** Everything an open run holds: the model and its artifacts, the data, the sessions and its folder. */
interface OpenRun {
  cfg: RunConfig;
  arch: Architecture;
  /** The whole model's inference graph for given parameters (last.onnx, best.onnx). */
  inference: Artifacts['inference'];
  /** The model the train step and eval graph run: the whole model, or its head on cached features (the fast path). */
  stepModel: Model;
  /** What they are fed: the splits' images, or their features. */
  feeds: { train: Feed; val: Feed; test: Feed };
  /** The whole model's carried tensors as a checkpoint holds them (the fast path: the frozen rest's with the head's). */
  tensors(): Map<string, CkptTensor>;
  /** Training images, before any conversion to features. */
  train: Split;
  /** Held-out training images (empty where the run holds none out). */
  val: Split;
  test: Split;
  classes: readonly string[];
  sched: ScheduleSettings;
  stepsPerEpoch: number;
  fullSteps: number;
  remainder: number;
  rt: Runtime;
  runner: StepRunner;
  evalSession: Session;
  folder: RunFolder;
  history: EpochMetrics[];
  /** The sums of the epoch a mid-epoch checkpoint stopped in, so its metrics cover the whole epoch. */
  resumeSums?: EpochSums;
  /** The epoch in progress, until its end-of-epoch checkpoint: what a checkpoint written now holds of it. */
  pass?: EpochPass;
  /** The step the newest checkpoint holds (the run's start: nothing to save). */
  savedStep: number;
}

/** An epoch's running training sums, saved with a mid-epoch checkpoint. */
interface EpochSums {
  step: number;
  lossSum: number;
  correct: number;
  seen: number;
  seconds: number;
}

function epochSumsOf(meta: Checkpoint['meta']): EpochSums | undefined {
  const s = meta.epochSums as Partial<EpochSums> | undefined;
  const ok = s && (['step', 'lossSum', 'correct', 'seen', 'seconds'] as const).every((k) => typeof s[k] === 'number');
  return ok ? (s as EpochSums) : undefined;
}

/** Loads the architecture and data, compiles the artifacts, opens the sessions at the start or the checkpoint. */
async function openRun(cfg: RunConfig, opts: FitOptions, log: (line: string) => void): Promise<OpenRun> {
  const folder = new RunFolder(opts.runDir);
  if (opts.resume && !folder.hasCheckpoint()) throw new CnnlabError(`--resume: ${folder.checkpointPath} not found; start the run without --resume`, 2);
  // The run's model is the user's (a preset, their architecture file or ONNX model): one that cannot be used is exit 2.
  const arch = await loadRunArchitecture(cfg).catch((err: unknown) => {
    throw asInputError(err);
  });
  const data = await openDataset({ dataset: cfg.dataset, dataDir: cfg.dataDir }, arch.model.inputShape, { conversion: cfg.conversion });
  checkFitsDataset(arch, data);
  const held = cfg.valSplit < 1 ? Math.round(cfg.valSplit * data.train.count) : cfg.valSplit;
  if (held >= data.train.count) throw new CnnlabError(`--val-split ${cfg.valSplit}: holds out ${held} of the ${data.train.count} training images, leaving none to train on`, 2);
  const { train: rest, val } = held > 0 ? holdOut(data.train, held, mixSeed(cfg.seed, 3)) : { train: data.train, val: sliceSplit(data.train, 0) };
  const train = cfg.limitTrain ? sliceSplit(rest, cfg.limitTrain) : rest;
  const fullSteps = Math.floor(train.count / cfg.batch);
  const remainder = train.count % cfg.batch;
  const stepsPerEpoch = fullSteps + (remainder ? 1 : 0);
  if (stepsPerEpoch === 0) throw new CnnlabError(`--batch ${cfg.batch}: larger than the ${train.count} training images`, 2);

  // The loaded data's name and classes, with the run's normalisation (its measured or fixed --normalize) and image conversion.
  const meta = { ...modelMeta(arch, data.info), ...cfg.normalization, inputRange: cfg.inputRange, conversion: cfg.conversion };
  if (arch.model.source) asInput(() => checkTrainable(arch.model));
  const frozen = frozenParams(arch.model, cfg.freeze ?? cfg.flags.freeze);
  for (const note of arch.notes ?? []) log(note);
  if (frozen || arch.model.source) log(trainableLine(arch.model, frozen));
  const rt = await createRuntime({ ep: cfg.ep, threads: cfg.threads, deviceId: cfg.deviceId });
  if (rt.note) log(rt.note);
  const split = fastPathSplit(cfg, arch.model, frozen, train.count + val.count + data.test.count, log);
  const stepModel = split?.head ?? arch.model;
  // The train step made for the provider in use ('auto' resolved); its checkpoint is the same for every provider.
  const building = Date.now();
  const stepFrozen = split && frozen ? new Set(stepModel.params.filter((p) => frozen.has(p.name)).map((p) => p.name)) : frozen;
  const built = asInput(() => compile(stepModel, { optimizer: cfg.train.optimizer, optimizerKind: optimizerKind(cfg.train.optimizer), loss: cfg.train.loss, smoothing: cfg.train.smoothing, meta, frozen: stepFrozen, target: graphTargetFor(rt.ep), nchwcBlock: rt.nchwcBlock }));
  if (arch.model.source) log(`built the train step of ${split ? `the head of ${arch.model.source.file}` : arch.model.source.file}: ${stepModel.graph.nodes.length} forward nodes, ${(built.trainStep.length / 1e6).toFixed(1)} MB, ${((Date.now() - building) / 1000).toFixed(1)} s`);
  const start = startCheckpoint(cfg, opts, folder, arch);
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, start);
  const evalSession = await rt.createSession(built.eval);
  const feeds = split
    ? await featureFeeds(rt, split, paramsOf(start.tensors, arch), meta, { train, val, test: data.test }, data.info.name, opts, log)
    : { train: imageFeed(train, arch.model), val: imageFeed(val, arch.model), test: imageFeed(data.test, arch.model) };
  const tensors = split ? () => new Map([...start.tensors, ...runner.tensors()]) : () => runner.tensors();
  const inference = split ? inferenceOf(arch.model, meta) : built.inference;
  const resumeSums = opts.resume ? epochSumsOf(start.meta) : undefined;
  const history = folder.open(cfg, opts.resume ? { step: runner.step, meta: start.meta, epochEndPending: endsUnevaluatedEpoch(runner.step, stepsPerEpoch, resumeSums) } : undefined);
  const sched = scheduleOf(cfg, stepsPerEpoch);
  return { cfg, arch, inference, stepModel, feeds, tensors, train, val, test: data.test, classes: data.info.classes, sched, stepsPerEpoch, fullSteps, remainder, rt, runner, evalSession, folder, history, resumeSums, savedStep: runner.step };
}

/** The most feature bytes the fast path holds in memory (all splits); beyond, the whole graph trains. */
const MAX_FEATURE_BYTES = 2 ** 31;

/**
 * The checkpoint a run starts from: the run folder's (--resume), else the initial one. Either
 * holds the whole model, whichever graph trains it: a checkpoint does not depend on the path taken.
 */
function startCheckpoint(cfg: RunConfig, opts: FitOptions, folder: RunFolder, arch: Architecture): Checkpoint {
  if (!opts.resume) return initialCheckpoint(trainStepInterface(arch.model, cfg.train.optimizer, optimizerKind(cfg.train.optimizer)), opts.init ?? initParams(arch.model, cfg.seed), {});
  const start = asInput(() => folder.readCheckpoint());
  if (start.meta.architecture !== arch.id) throw new InputError(`${folder.checkpointPath}: holds ${String(start.meta.architecture)}, the run trains ${arch.id}`);
  return start;
}

/**
 * The model cut at its head where the epochs can train the head alone on features computed
 * once: the fast path is on (no --no-fast-path), nothing augments the images, every trainable
 * parameter outside the head is frozen and the `examples` features fit in memory. Where the
 * backbone is frozen but the fast path cannot be taken (a BatchNorm on batch statistics, a
 * Dropout before the head, too many feature bytes), one line says why.
 */
function fastPathSplit(cfg: RunConfig, model: Model, frozen: ReadonlySet<string> | undefined, examples: number, log: (line: string) => void): HeadSplit | undefined {
  if (!frozen || cfg.augment || cfg.flags['fast-path'] === false) return undefined;
  const head = headParams(model);
  if (!model.params.every((p) => !p.trainable || head.has(p.name) || frozen.has(p.name))) return undefined;
  const whole = 'training the whole graph, not the head on features computed once';
  let split: HeadSplit;
  try {
    split = splitAtHead(model, frozen);
  } catch (err) {
    if (!(err instanceof InputError)) throw err;
    log(`${whole}: ${err.message}`);
    return undefined;
  }
  const bytes = 4 * examples * elementCount(split.featureShape);
  if (bytes <= MAX_FEATURE_BYTES) return split;
  log(`${whole}: the features of ${examples} images at ${split.cut} ([${split.featureShape.join(', ')}] each) would take ${(bytes / 2 ** 30).toFixed(1)} GiB`);
  return undefined;
}

/** The splits' features: from the cache or computed once with the features graph, with progress and one line on what was done. */
async function featureFeeds(rt: Runtime, split: HeadSplit, params: ParamSet, meta: Parameters<typeof featuresGraph>[2], splits: { train: Split; val: Split; test: Split }, name: string, opts: FitOptions, log: (line: string) => void): Promise<OpenRun['feeds']> {
  const t0 = performance.now();
  const graph = featuresGraph(split, params, meta, 'bytes');
  // One session for the three splits, opened where the first misses the cache.
  let opened: Promise<Session> | undefined;
  const session = () => (opened ??= rt.createSession(graph));
  const run = { rt, session, graphDigest: createHash('sha256').update(graph).digest('hex'), shape: split.featureShape };
  const out: Partial<Record<keyof typeof splits, Feed>> = {};
  let computed = 0;
  let cacheFile = '';
  try {
    for (const which of ['train', 'val', 'test'] as const) {
      const bar = splits[which].count ? progressBar(opts, `features of the ${which} images`) : undefined;
      bar?.start(splits[which].count, 0, { speed: '-' });
      const started = performance.now();
      const progress = (done: number) => bar?.update(done, { speed: Math.round(done / ((performance.now() - started) / 1000)) });
      const f = await splitFeatures({ ...run, progress }, splits[which], `${name}-${which}`);
      bar?.stop();
      if (!f.cached) computed += splits[which].count;
      cacheFile = f.file;
      out[which] = featureFeed(f.split);
    }
  } finally {
    await (await opened)?.release();
  }
  const seconds = ((performance.now() - t0) / 1000).toFixed(1);
  const count = splits.train.count + splits.val.count + splits.test.count;
  const read = count - computed;
  const how = computed ? `computed the features of ${computed} images once${read ? ` and read those of ${read} from the cache` : ''}` : `read the features of ${count} images from the cache`;
  log(`frozen backbone: ${how} (${split.cut}, [${split.featureShape.join(', ')}] each) in ${seconds} s (${dirname(cacheFile)}); the epochs train the head alone on them`);
  return out as OpenRun['feeds'];
}

/** Runs a read of what the user gave; a CnnlabError from it is an InputError (exit 2, see common/errors.ts). */
function asInput<T>(read: () => T): T {
  try {
    return read();
  } catch (err) {
    throw asInputError(err);
  }
}

/**
 * Whether a checkpoint stands at the end of an epoch whose evaluation never ran: saved with the
 * epoch's sums (a signal or a periodic save on its last chunk), not by the end of the epoch.
 */
function endsUnevaluatedEpoch(step: number, stepsPerEpoch: number, sums: EpochSums | undefined): boolean {
  return step > 0 && step % stepsPerEpoch === 0 && sums?.step === step;
}

/** The model must take the dataset's images and score its classes (image folders are converted to its input). */
function checkFitsDataset(arch: Architecture, data: Dataset): void {
  const m = arch.model;
  const where = m.source?.file ?? arch.id;
  const shape = data.train.shape.join('x');
  if (m.inputShape.join('x') !== shape) throw new InputError(`${where}: input '${m.input}' takes ${m.inputShape.join('x')} images; ${data.info.name} has ${shape} (an image folder given with --data-dir is converted to any input)`);
  if (m.classes !== data.info.classes.length) throw new InputError(`${where}: output scores ${m.classes} classes; ${data.info.name} has ${data.info.classes.length}`);
}

/** Saves the checkpoint; before the end of an epoch's evaluation, with the epoch's sums so far (`pass`). */
function saveCheckpoint(r: OpenRun, pass?: EpochPass): void {
  const { cfg, runner } = r;
  const epochSums = pass && { step: runner.step, lossSum: pass.lossSum, correct: pass.correct, seen: pass.seen, seconds: pass.seconds };
  r.folder.saveCheckpoint({ architecture: r.arch.id, step: runner.step, seed: cfg.seed, epochs: cfg.epochs, stepsPerEpoch: r.stepsPerEpoch, ...(epochSums ? { epochSums } : {}) }, r.tensors());
  r.savedStep = runner.step;
}

/** Where a run stands, as the stop messages say it: the step, and the epoch with its steps done. */
function standing(r: OpenRun): string {
  const step = r.runner.step;
  // At an epoch's end, before its evaluation, the run is still in that epoch.
  const epoch = Math.max(0, Math.ceil(step / r.stepsPerEpoch) - 1);
  return `step ${step} (epoch ${epoch + 1}, ${step - epoch * r.stepsPerEpoch}/${r.stepsPerEpoch})`;
}

/**
 * A checkpoint of the steps done so far, where none holds them yet (what a second signal writes
 * before quitting at once). A signal handler runs between two awaits of the training loop, where
 * the carried tensors and the epoch's sums always agree: onnxruntime-node runs a session on the
 * main thread, and what follows a run up to the next one is synchronous.
 */
function saveNow(r: OpenRun, runDir: string): string | undefined {
  if (!r.pass || r.runner.step <= r.savedStep) return undefined;
  saveCheckpoint(r, r.pass);
  return `saved a checkpoint at ${standing(r)}; resume with --resume --out ${runDir}`;
}

/** What trainEpoch reports progress to: cli-progress's bar on a terminal, or timed lines in a log. */
interface Progress {
  start(total: number, value: number, payload: Record<string, string>): void;
  update(value: number, payload: Record<string, string | number>): void;
  stop(): void;
}

/** Seconds between progress lines when stderr is not a terminal (a log file, a CI job, kubectl logs); CNNLAB_PROGRESS_SECONDS changes it. */
const logProgressSeconds = () => {
  const s = Number(process.env.CNNLAB_PROGRESS_SECONDS);
  return Number.isFinite(s) && s >= 0 ? s : 10;
};

/**
 * A bar on a terminal (stderr a TTY, or opts.progress); otherwise, unless opts.progress is false,
 * one line on stderr every ~10 s, so a run whose output goes to a file shows it is alive. An
 * epoch's, or (`task`) a set-up step's, which shows images and images/s only.
 */
function progressBar(opts: FitOptions, task?: string): Progress | undefined {
  if (opts.progress ?? Boolean(process.stderr.isTTY)) {
    const format = task ? `${task} [{bar}] {value}/{total} img | {speed} img/s` : 'epoch {epoch} [{bar}] {value}/{total} img | {speed} img/s | loss {loss} | lr {lr}';
    return new cliProgress.SingleBar({ format, stream: process.stderr, hideCursor: true, clearOnComplete: true }, cliProgress.Presets.shades_classic);
  }
  if (opts.progress === false || opts.log) return undefined;
  let total = 0;
  let epoch = '';
  let last = 0;
  return {
    start: (t, _v, payload) => {
      [total, epoch, last] = [t, payload.epoch, Date.now()];
    },
    update: (value, p) => {
      if (Date.now() - last < logProgressSeconds() * 1000) return;
      last = Date.now();
      process.stderr.write(task ? `${task}: ${value}/${total} images, ${p.speed} img/s\n` : `epoch ${epoch}: ${value}/${total} images, ${p.speed} img/s, loss ${p.loss}, lr ${p.lr}\n`);
    },
    stop: () => undefined,
  };
}

/** The training half of an epoch: its sums, or where a stop request halted it. */
interface EpochPass {
  lossSum: number;
  correct: number;
  seen: number;
  lastLr: number;
  seconds: number;
  stopped: boolean;
}

/**
 * Runs an epoch's steps from wherever the runner stands: full batches in chunks of K aligned to
 * multiples of K (so a resumed run makes the same runs), the short last batch alone; the next
 * chunk is assembled (and augmented) while onnxruntime runs the current one.
 */
async function trainEpoch(r: OpenRun, epoch: number, bar: Progress | undefined, { stop, onSteps }: Pick<FitOptions, 'stop' | 'onSteps'>, lastSave: { at: number }): Promise<EpochPass> {
  const { cfg, runner, stepsPerEpoch, fullSteps } = r;
  const train = r.feeds.train;
  const order = epochOrder(cfg, train.count, epoch);
  // Resumed mid-epoch: the sums so far come from the checkpoint, so the epoch's metrics cover all of it.
  const carried = r.resumeSums?.step === runner.step ? r.resumeSums : undefined;
  r.resumeSums = undefined;
  // lastLr: the learning rate of the step before, where a resumed epoch has no step left to run.
  const pass: EpochPass = { lossSum: carried?.lossSum ?? 0, correct: carried?.correct ?? 0, seen: carried?.seen ?? 0, lastLr: carried ? hyperAt(r.sched, runner.step - 1).lr : 0, seconds: carried?.seconds ?? 0, stopped: false };
  r.pass = pass;
  const before = pass.seconds;
  let epochStep = runner.step - epoch * stepsPerEpoch;
  const t0 = performance.now();
  bar?.start(train.count, epochStep * cfg.batch, { epoch: `${epoch + 1}/${cfg.epochs}`, speed: '-', loss: '-', lr: '-' });
  const chunkAt = (at: number): StepBatch => {
    const isLast = at >= fullSteps;
    const count = isLast ? 1 : Math.min(cfg.stepsPerRun - (at % cfg.stepsPerRun), fullSteps - at);
    return assemble(cfg, train, order, at, epoch * stepsPerEpoch + at, count, isLast ? r.remainder : cfg.batch, r.sched);
  };
  let next: StepBatch | undefined = epochStep < stepsPerEpoch ? chunkAt(epochStep) : undefined;
  while (next && !pass.stopped) {
    const batch = next;
    const stepBefore = runner.step;
    const pending = runner.run(batch);
    next = epochStep + batch.K < stepsPerEpoch ? chunkAt(epochStep + batch.K) : undefined;
    const out = await pending;
    r.folder.recordSteps(stepBefore, out.losses, batch.inputs.lr);
    onSteps?.(stepBefore, out.losses, batch.inputs.lr);
    for (let k = 0; k < batch.K; k++) {
      if (!Number.isFinite(out.losses[k])) throw diverged(r, stepBefore + k + 1, epoch, out.losses[k], batch.inputs.lr[k]);
      pass.lossSum += out.losses[k] * batch.B;
      pass.correct += out.correct[k];
    }
    pass.seen += batch.K * batch.B;
    epochStep += batch.K;
    pass.lastLr = batch.inputs.lr[batch.K - 1];
    pass.seconds = before + (performance.now() - t0) / 1000;
    bar?.update(epochStep === stepsPerEpoch ? train.count : epochStep * cfg.batch, { speed: Math.round(pass.seen / pass.seconds), loss: (pass.lossSum / pass.seen).toFixed(4), lr: pass.lastLr.toExponential(2) });
    pass.stopped = Boolean(stop?.requested);
    if (!pass.stopped && cfg.checkpointEvery > 0 && Date.now() - lastSave.at > cfg.checkpointEvery * 1000) {
      saveCheckpoint(r, pass);
      lastSave.at = Date.now();
    }
  }
  bar?.stop();
  pass.seconds = before + (performance.now() - t0) / 1000;
  return pass;
}

function diverged(r: OpenRun, step: number, epoch: number, loss: number, lr: number): DivergedError {
  const kept = r.folder.hasCheckpoint() ? r.folder.checkpointPath : 'not written yet';
  return new DivergedError(`training diverged at step ${step} (epoch ${epoch + 1}): the loss is ${loss} with lr ${lr.toPrecision(3)}; lower --lr. The last good checkpoint is ${kept}`, step);
}

/** Up to 32 misclassified test images with their true and predicted classes, as a PNG. */
async function misclassifiedGrid(r: OpenRun, predicted: Uint8Array, epoch: number): Promise<{ png: Uint8Array; width: number; height: number } | undefined> {
  const tiles = misclassifiedTiles(r.test, predicted, r.classes, 32);
  if (!tiles.length) return undefined;
  const png = await renderGrid(tiles, { columns: 8, scale: 2, title: `epoch ${epoch}: misclassified test images (true → predicted)` });
  const { width = 0, height = 0 } = await sharp(png).metadata();
  return { png, width, height };
}

/**
 * Evaluates the epoch's parameters, records the epoch, exports last.onnx (and best.onnx), saves
 * the checkpoint. Everything that waits comes first and writes nothing; the records follow in one
 * synchronous stretch, so a signal handler finds the epoch either unrecorded or checkpointed.
 */
async function finishEpoch(r: OpenRun, epoch: number, pass: EpochPass, best: number): Promise<EpochMetrics> {
  const params = paramsOf(r.tensors(), r.arch);
  const ev = await evaluate(r.rt, r.evalSession, params, r.stepModel, r.feeds.test, r.cfg.evalBatch, true);
  const vl = r.val.count ? await evaluate(r.rt, r.evalSession, params, r.stepModel, r.feeds.val, r.cfg.evalBatch) : undefined;
  const grid = await misclassifiedGrid(r, ev.predicted!, epoch + 1);
  const m: EpochMetrics = {
    epoch: epoch + 1,
    step: r.runner.step,
    trainLoss: pass.seen ? pass.lossSum / pass.seen : NaN,
    trainAcc: pass.seen ? pass.correct / pass.seen : NaN,
    testLoss: ev.loss,
    testAcc: ev.accuracy,
    ...(vl ? { valLoss: vl.loss, valAcc: vl.accuracy } : {}),
    seconds: pass.seconds,
    imagesPerSecond: pass.seen / pass.seconds,
    lr: pass.lastLr,
  };
  r.folder.recordEpoch(m);
  const weights = new Map(r.arch.model.params.filter((p) => p.trainable).map((p) => [p.name, params.get(p.name)!]));
  r.folder.recordEpochImages(m.step, weights, grid);
  const model = r.inference(params, runCardEntries({ run: r.folder.dir, testAccuracy: m.testAcc, valAccuracy: m.valAcc, epoch: m.epoch }));
  const layout = r.arch.model.source?.layout;
  r.folder.writeModel('last.onnx', model, layout);
  if (rankOf(m) >= best) r.folder.writeModel('best.onnx', model, layout);
  saveCheckpoint(r);
  r.pass = undefined;
  return m;
}

/** Trains a model as the config says; see README for the run directory's files. */
export async function fit(cfg: RunConfig, opts: FitOptions): Promise<FitResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const r = await openRun(cfg, opts, log);
  opts.stop?.arm?.();
  if (opts.stop) opts.stop.saveNow = () => saveNow(r, opts.runDir);
  const bar = progressBar(opts);
  const epochs: EpochMetrics[] = [...r.history];
  const lastSave = { at: Date.now() };
  const stopped = () => {
    log(`stopped at ${standing(r)}; checkpoint saved. Resume with --resume --out ${opts.runDir}`);
    return { epochs, interrupted: true, runtime: r.rt.ep };
  };
  // A checkpoint at an epoch's end saved before its evaluation continues with that evaluation.
  const first = Math.floor(r.runner.step / r.stepsPerEpoch) - (endsUnevaluatedEpoch(r.runner.step, r.stepsPerEpoch, r.resumeSums) ? 1 : 0);
  try {
    for (let epoch = first; epoch < cfg.epochs; epoch++) {
      const pass = await trainEpoch(r, epoch, bar, opts, lastSave);
      if (pass.stopped) {
        saveCheckpoint(r, pass);
        return stopped();
      }
      const m = await finishEpoch(r, epoch, pass, epochs.reduce((b, e) => Math.max(b, rankOf(e)), 0));
      epochs.push(m);
      opts.onEpoch?.(m);
      lastSave.at = Date.now();
      log(
        `epoch ${String(m.epoch).padStart(2)}/${cfg.epochs}  train loss ${m.trainLoss.toFixed(4)} acc ${pct(m.trainAcc)}  ${m.valAcc === undefined ? '' : `val acc ${pct(m.valAcc)}  `}test loss ${m.testLoss.toFixed(4)} acc ${pct(m.testAcc)}  ${m.seconds.toFixed(1)} s (${Math.round(m.imagesPerSecond)} img/s)`,
      );
      // A signal during the evaluation: the epoch's checkpoint is written, the next epoch not begun.
      if (opts.stop?.requested && epoch + 1 < cfg.epochs) return stopped();
    }
  } finally {
    if (opts.stop) opts.stop.saveNow = undefined;
    bar?.stop();
    await r.runner.release();
    await r.evalSession.release();
  }
  return { epochs, interrupted: false, runtime: r.rt.ep };
}
