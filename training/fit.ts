import { existsSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import cliProgress from 'cli-progress';
import { CnnlabError, DivergedError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';
import { type Dataset, loadDataset, PIXELS, type Split, sliceSplit } from '../datasets/sources.ts';
import { initialCheckpoint, modelMeta } from '../graph-builder/artifacts/build.ts';
import { featureParams } from '../graph-builder/model.ts';
import { buildEvalModel } from '../graph-builder/artifacts/eval.ts';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import { buildTrainStepModel } from '../graph-builder/artifacts/train-step.ts';
import { appendWhole, writeFileAtomic } from '../common/files.ts';
import { type Architecture, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams, type ParamSet } from '../graph-builder/dsl/init.ts';
import { HASH_MODULUS } from '../graph-builder/train-mode.ts';
import { augmentImage } from './augment.ts';
import { type Checkpoint, readCheckpoint, writeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import type { RunConfig } from './config.ts';
import { createRuntime, type Runtime, type Session } from '../runtime/ort.ts';
import { hyperAt, type ScheduleSettings } from './schedule.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';
import { TensorBoardWriter } from './tensorboard.ts';

export interface EpochMetrics {
  epoch: number;
  step: number;
  trainLoss: number;
  trainAcc: number;
  testLoss: number;
  testAcc: number;
  seconds: number;
  imagesPerSecond: number;
  lr: number;
}

export interface FitOptions {
  /** Where config.json, metrics.jsonl, checkpoint.ckpt, events and models go. */
  runDir: string;
  resume: boolean;
  /** Progress bar on stderr (default: when stderr is a TTY). */
  progress?: boolean;
  /** One line per epoch (default console.log). */
  log?: (line: string) => void;
  /** Set to stop after the current chunk, with a checkpoint (Ctrl-C). */
  stop?: { requested: boolean };
  /** Start from these parameters instead of a fresh initialisation (fine-tuning). */
  init?: ParamSet;
}

export interface FitResult {
  epochs: EpochMetrics[];
  /** Why the run ended early, if it did. */
  interrupted: boolean;
  runtime: string;
}

export const CHECKPOINT = 'checkpoint.ckpt';

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

function scheduleOf(cfg: RunConfig, stepsPerEpoch: number): ScheduleSettings {
  return {
    name: cfg.schedule,
    lr: cfg.lr,
    momentum: cfg.momentum,
    totalSteps: stepsPerEpoch * cfg.epochs,
    stepsPerEpoch,
    stepEpochs: cfg.stepEpochs,
    gamma: cfg.gamma,
    onecycle: cfg.onecycle,
  };
}

/** Batches for global steps [first, first + count), all of size B, from the epoch's order. */
function assemble(cfg: RunConfig, split: Split, order: Uint32Array, epochStep: number, globalStep: number, count: number, B: number, sched: ScheduleSettings): StepBatch {
  const images = new Uint8Array(count * B * PIXELS);
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
      const dst = (k * B + j) * PIXELS;
      const pixels = split.images.subarray(src * PIXELS, (src + 1) * PIXELS);
      if (cfg.augment) augmentImage(pixels, images.subarray(dst, dst + PIXELS), cfg.augment, rng);
      else images.set(pixels, dst);
      labels[k * B + j] = split.labels[src];
    }
  }
  return { K: count, B, inputs: { images, labels, lr, momentum, dropout_seed: dropoutSeed } };
}

export interface Evaluation {
  loss: number;
  accuracy: number;
}

/** Runs the eval graph over a split in batches; parameters come from the carried tensors. */
export async function evaluate(rt: Runtime, session: Session, params: ParamSet, arch: Architecture, split: Split, batch: number): Promise<Evaluation> {
  const { Tensor } = rt.ort;
  const feeds: Record<string, InstanceType<typeof Tensor>> = {};
  for (const p of arch.model.params) feeds[p.name] = new Tensor('float32', params.get(p.name)!, p.shape);
  let loss = 0;
  let correct = 0;
  for (let start = 0; start < split.count; start += batch) {
    const n = Math.min(batch, split.count - start);
    feeds.images = new Tensor('uint8', split.images.subarray(start * PIXELS, (start + n) * PIXELS), [n, 28, 28]);
    feeds.labels = new Tensor('uint8', split.labels.subarray(start, start + n), [n]);
    const out = await session.run(feeds);
    loss += out.loss_sum.data[0] as number;
    correct += out.correct.data[0] as number;
  }
  return { loss: loss / split.count, accuracy: correct / split.count };
}

export function paramsOf(tensors: Checkpoint['tensors'], arch: Architecture): ParamSet {
  const out: ParamSet = new Map();
  for (const p of arch.model.params) out.set(p.name, tensors.get(p.name)!.data as Float32Array);
  return out;
}

/** The epochs a run folder's metrics.jsonl records. */
export function readMetrics(runDir: string): EpochMetrics[] {
  const path = join(runDir, 'metrics.jsonl');
  if (!existsSync(path)) return [];
  const lines = readFileSync(path, 'utf8').split('\n');
  const out: EpochMetrics[] = [];
  for (const [i, line] of lines.entries()) {
    if (!line.trim()) continue;
    let m: unknown;
    try {
      m = JSON.parse(line);
    } catch {
      // A process killed while appending leaves half a last line: that epoch is redone on resume.
      if (i === lines.length - 1) break;
      throw new CnnlabError(`${path}: line ${i + 1} is not JSON`);
    }
    const e = m as Partial<EpochMetrics> | null;
    if (typeof e !== 'object' || e === null || typeof e.epoch !== 'number' || typeof e.step !== 'number' || typeof e.testAcc !== 'number') {
      throw new CnnlabError(`${path}: line ${i + 1} is not an epoch record (epoch, step, testAcc, ...)`);
    }
    out.push(e as EpochMetrics);
  }
  return out;
}

const pct = (x: number) => `${(100 * x).toFixed(2)}%`;

/** Trains a model as the config says; see README for the run directory's files. */
export async function fit(cfg: RunConfig, opts: FitOptions): Promise<FitResult> {
  const log = opts.log ?? ((l: string) => console.log(l));
  const dir = opts.runDir;
  const ckptPath = join(dir, CHECKPOINT);
  if (opts.resume && !existsSync(ckptPath)) throw new CnnlabError(`--resume: ${ckptPath} not found; start the run without --resume`, 2);

  const arch = await loadArchitecture(cfg.archFile ? undefined : cfg.architecture, cfg.archFile);
  const data: Dataset = await loadDataset(cfg.dataset, { dataDir: cfg.dataDir });
  const train = cfg.limitTrain ? sliceSplit(data.train, cfg.limitTrain) : data.train;
  const n = train.count;
  const fullSteps = Math.floor(n / cfg.batch);
  const remainder = n % cfg.batch;
  const stepsPerEpoch = fullSteps + (remainder ? 1 : 0);
  if (stepsPerEpoch === 0) throw new CnnlabError(`--batch ${cfg.batch}: larger than the ${n} training images`, 2);
  const sched = scheduleOf(cfg, stepsPerEpoch);

  const meta = modelMeta(arch, cfg.dataset);
  meta.mean = cfg.normalization.mean;
  meta.std = cfg.normalization.std;
  const frozen = cfg.freeze === 'features' ? featureParams(arch.model) : undefined;
  const built = buildTrainStepModel(arch.model, { optimizer: cfg.train.optimizer, loss: cfg.train.loss, smoothing: cfg.train.smoothing, meta, frozen });
  const rt = await createRuntime({ ep: cfg.ep, threads: cfg.threads, deviceId: cfg.deviceId });
  if (rt.note) log(rt.note);

  let start: Checkpoint;
  if (opts.resume) {
    start = readCheckpoint(ckptPath);
    if (start.meta.architecture !== arch.id) throw new CnnlabError(`${ckptPath}: holds ${String(start.meta.architecture)}, the run trains ${arch.id}`);
  } else {
    start = initialCheckpoint(built.iface, opts.init ?? initParams(arch.model, cfg.seed), {});
  }
  const runner = await StepRunner.create(rt, built.bytes, built.iface, start);
  const evalSession = await rt.createSession(buildEvalModel(arch.model, cfg.train.loss, meta));

  writeFileAtomic(join(dir, 'config.json'), `${JSON.stringify(cfg, null, 2)}\n`);
  const metricsPath = join(dir, 'metrics.jsonl');
  // A resumed run keeps the epochs its checkpoint covers and redoes the rest.
  const history = readMetrics(dir).filter((m) => opts.resume && m.step <= runner.step);
  writeFileAtomic(metricsPath, history.map((m) => `${JSON.stringify(m)}\n`).join(''));
  const events = start.meta.events;
  const eventsSize = start.meta.eventsBytes;
  const tb = new TensorBoardWriter(
    dir,
    opts.resume && typeof events === 'string' ? { file: events, size: typeof eventsSize === 'number' ? eventsSize : Number.MAX_SAFE_INTEGER } : undefined,
  );
  let best = history.reduce((b, m) => Math.max(b, m.testAcc), 0);

  const save = () => {
    writeCheckpoint(ckptPath, {
      meta: { architecture: arch.id, step: runner.step, seed: cfg.seed, epochs: cfg.epochs, stepsPerEpoch, events: basename(tb.path), eventsBytes: tb.size, savedAt: new Date().toISOString() },
      tensors: runner.tensors(),
    });
  };
  const exportModel = (file: string, params: ParamSet, extra: Record<string, string>) => {
    writeFileAtomic(join(dir, file), buildInferenceModel(arch.model, params, { ...meta, extra: { 'cnnlab.run': dir, ...extra } }));
  };

  const progress = opts.progress ?? Boolean(process.stderr.isTTY);
  const bar = progress
    ? new cliProgress.SingleBar(
        {
          format: 'epoch {epoch} [{bar}] {value}/{total} img | {speed} img/s | loss {loss} | lr {lr}',
          stream: process.stderr,
          hideCursor: true,
          clearOnComplete: true,
        },
        cliProgress.Presets.shades_classic,
      )
    : undefined;

  const epochs: EpochMetrics[] = [...history];
  let interrupted = false;
  let lastSave = Date.now();
  try {
    for (let epoch = Math.floor(runner.step / stepsPerEpoch); epoch < cfg.epochs; epoch++) {
      const order = epochOrder(cfg, n, epoch);
      let epochStep = runner.step - epoch * stepsPerEpoch;
      let lossSum = 0;
      let correct = 0;
      let seen = 0;
      let lastLr = 0;
      const t0 = performance.now();
      bar?.start(n, epochStep * cfg.batch, { epoch: `${epoch + 1}/${cfg.epochs}`, speed: '-', loss: '-', lr: '-' });
      // Full batches in chunks of K aligned to multiples of K, so a resumed run makes the same runs; the short last batch alone.
      const chunkAt = (at: number): StepBatch => {
        const isLast = at >= fullSteps;
        const count = isLast ? 1 : Math.min(cfg.stepsPerRun - (at % cfg.stepsPerRun), fullSteps - at);
        return assemble(cfg, train, order, at, epoch * stepsPerEpoch + at, count, isLast ? remainder : cfg.batch, sched);
      };
      let next: StepBatch | undefined = epochStep < stepsPerEpoch ? chunkAt(epochStep) : undefined;
      while (next) {
        const batch = next;
        const { K: count, B } = batch;
        const stepBefore = runner.step;
        const pending = runner.run(batch);
        // The next chunk is assembled (and augmented) while onnxruntime runs this one.
        next = epochStep + count < stepsPerEpoch ? chunkAt(epochStep + count) : undefined;
        const out = await pending;
        for (let k = 0; k < count; k++) {
          if (!Number.isFinite(out.losses[k])) {
            bar?.stop();
            throw new DivergedError(
              `training diverged at step ${stepBefore + k + 1} (epoch ${epoch + 1}): the loss is ${out.losses[k]} with lr ${batch.inputs.lr[k].toPrecision(3)}; lower --lr. The last good checkpoint is ${existsSync(ckptPath) ? ckptPath : 'not written yet'}`,
              stepBefore + k + 1,
            );
          }
          lossSum += out.losses[k] * B;
          correct += out.correct[k];
        }
        seen += count * B;
        epochStep += count;
        lastLr = batch.inputs.lr[count - 1];
        const seconds = (performance.now() - t0) / 1000;
        bar?.update(epochStep === stepsPerEpoch ? n : epochStep * cfg.batch, {
          speed: Math.round(seen / seconds),
          loss: (lossSum / seen).toFixed(4),
          lr: lastLr.toExponential(2),
        });
        if (opts.stop?.requested) {
          bar?.stop();
          save();
          log(`stopped at step ${runner.step} (epoch ${epoch + 1}, ${epochStep}/${stepsPerEpoch}); checkpoint saved. Resume with --resume --out ${dir}`);
          interrupted = true;
          return { epochs, interrupted, runtime: rt.ep };
        }
        if (cfg.checkpointEvery > 0 && Date.now() - lastSave > cfg.checkpointEvery * 1000) {
          save();
          lastSave = Date.now();
        }
      }
      bar?.stop();
      const trainSeconds = (performance.now() - t0) / 1000;
      const tensors = runner.tensors();
      const params = paramsOf(tensors, arch);
      const ev = await evaluate(rt, evalSession, params, arch, data.test, cfg.evalBatch);
      const m: EpochMetrics = {
        epoch: epoch + 1,
        step: runner.step,
        trainLoss: seen ? lossSum / seen : NaN,
        trainAcc: seen ? correct / seen : NaN,
        testLoss: ev.loss,
        testAcc: ev.accuracy,
        seconds: trainSeconds,
        imagesPerSecond: seen / trainSeconds,
        lr: lastLr,
      };
      epochs.push(m);
      appendWhole(metricsPath, `${JSON.stringify(m)}\n`);
      tb.scalars(m.step, { 'loss/train': m.trainLoss, 'accuracy/train': m.trainAcc, 'loss/test': m.testLoss, 'accuracy/test': m.testAcc, lr: m.lr });
      const extra = { 'cnnlab.test_accuracy': m.testAcc.toFixed(4), 'cnnlab.epoch': String(m.epoch) };
      exportModel('last.onnx', params, extra);
      if (m.testAcc >= best) {
        best = m.testAcc;
        exportModel('best.onnx', params, extra);
      }
      save();
      lastSave = Date.now();
      log(
        `epoch ${String(m.epoch).padStart(2)}/${cfg.epochs}  train loss ${m.trainLoss.toFixed(4)} acc ${pct(m.trainAcc)}  test loss ${m.testLoss.toFixed(4)} acc ${pct(m.testAcc)}  ${m.seconds.toFixed(1)} s (${Math.round(m.imagesPerSecond)} img/s)`,
      );
    }
  } finally {
    bar?.stop();
    await runner.release();
    await evalSession.release();
  }
  return { epochs, interrupted, runtime: rt.ep };
}
