import { existsSync, readFileSync } from 'node:fs';
import { type WeightLayout, writeOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { basename, join } from 'node:path';
import { InputError } from '../common/errors.ts';
import { appendWhole, writeFileAtomic } from '../common/files.ts';
import { type Checkpoint, type CkptTensor, readCheckpoint, writeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { TensorBoardWriter } from './tensorboard.ts';

export const CHECKPOINT = 'checkpoint.ckpt';

export interface EpochMetrics {
  epoch: number;
  step: number;
  trainLoss: number;
  trainAcc: number;
  testLoss: number;
  testAcc: number;
  /** On the held-out validation images, where the run has them. */
  valLoss?: number;
  valAcc?: number;
  seconds: number;
  imagesPerSecond: number;
  lr: number;
}

/** How an epoch ranks: by validation accuracy where the run holds images out, else by test accuracy. */
export const rankOf = (m: EpochMetrics) => m.valAcc ?? m.testAcc;

/** The epoch best.onnx holds: the best by rankOf, the later one on a tie. */
export function chosenEpoch(epochs: EpochMetrics[]): EpochMetrics | undefined {
  return epochs.reduce<EpochMetrics | undefined>((best, m) => (!best || rankOf(m) >= rankOf(best) ? m : best), undefined);
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
      throw new InputError(`${path}: line ${i + 1} is not JSON`);
    }
    const e = m as Partial<EpochMetrics> | null;
    if (typeof e !== 'object' || e === null || typeof e.epoch !== 'number' || typeof e.step !== 'number' || typeof e.testAcc !== 'number') {
      throw new InputError(`${path}: line ${i + 1} is not an epoch record (epoch, step, testAcc, ...)`);
    }
    out.push(e as EpochMetrics);
  }
  return out;
}

/**
 * A run's folder and everything in it: config.json, the checkpoint, metrics.jsonl, the
 * TensorBoard log and the exported models. Every file is written atomically or appended whole.
 */
export class RunFolder {
  readonly dir: string;
  private tb?: TensorBoardWriter;

  constructor(dir: string) {
    this.dir = dir;
  }

  get checkpointPath(): string {
    return join(this.dir, CHECKPOINT);
  }

  hasCheckpoint(): boolean {
    return existsSync(this.checkpointPath);
  }

  readCheckpoint(): Checkpoint {
    return readCheckpoint(this.checkpointPath);
  }

  /**
   * Starts the folder's record, or continues it from `resumed` (a checkpoint read from it): writes
   * config.json, keeps the epochs the checkpoint covers (the rest are redone), and opens the
   * TensorBoard log cut back to what it held at the checkpoint. Returns the kept epochs.
   * `epochEndPending`: the checkpoint stands at an epoch's end saved before that epoch was
   * evaluated, so that epoch is redone too (its evaluation and record).
   */
  open(config: unknown, resumed?: { step: number; meta: Checkpoint['meta']; epochEndPending?: boolean }): EpochMetrics[] {
    writeFileAtomic(join(this.dir, 'config.json'), `${JSON.stringify(config, null, 2)}\n`);
    const kept = (m: EpochMetrics) => m.step < resumed!.step || (m.step === resumed!.step && !resumed!.epochEndPending);
    const history = resumed ? readMetrics(this.dir).filter(kept) : [];
    writeFileAtomic(join(this.dir, 'metrics.jsonl'), history.map((m) => `${JSON.stringify(m)}\n`).join(''));
    const events = resumed?.meta.events;
    const size = resumed?.meta.eventsBytes;
    this.tb = new TensorBoardWriter(this.dir, typeof events === 'string' ? { file: events, size: typeof size === 'number' ? size : Number.MAX_SAFE_INTEGER } : undefined);
    return history;
  }

  /** Writes the checkpoint, recording how far the TensorBoard log had got. */
  saveCheckpoint(meta: Record<string, unknown>, tensors: Map<string, CkptTensor>): void {
    const tb = this.events();
    writeCheckpoint(this.checkpointPath, { meta: { ...meta, events: basename(tb.path), eventsBytes: tb.size, savedAt: new Date().toISOString() }, tensors });
  }

  /** Appends an epoch to metrics.jsonl and its scalars to the TensorBoard log. */
  recordEpoch(m: EpochMetrics): void {
    appendWhole(join(this.dir, 'metrics.jsonl'), `${JSON.stringify(m)}\n`);
    const val: Record<string, number> = m.valAcc === undefined ? {} : { 'loss/val': m.valLoss!, 'accuracy/val': m.valAcc };
    this.events().scalars(m.step, { 'loss/train': m.trainLoss, 'accuracy/train': m.trainAcc, ...val, 'loss/test': m.testLoss, 'accuracy/test': m.testAcc, lr: m.lr });
  }

  /** Each step's training loss and learning rate (steps first, first + 1, ...). */
  recordSteps(first: number, losses: ArrayLike<number>, lrs: ArrayLike<number>): void {
    for (let k = 0; k < losses.length; k++) this.events().scalars(first + k + 1, { 'step/loss': losses[k], 'step/lr': lrs[k] });
  }

  /** An epoch's weight histograms and its grid of misclassified test images. */
  recordEpochImages(step: number, weights: Map<string, Float32Array>, misclassified?: { png: Uint8Array; width: number; height: number }): void {
    this.events().histograms(step, weights);
    if (misclassified) this.events().image(step, 'misclassified/test', misclassified.png, misclassified.width, misclassified.height);
  }

  /** Writes a trained model; 'external' puts its weights in `<file>.data` beside it, the layout an imported model came in. */
  writeModel(file: string, bytes: Uint8Array, layout: WeightLayout = 'inline'): void {
    writeOnnxFile(join(this.dir, file), bytes, layout);
  }

  private events(): TensorBoardWriter {
    if (!this.tb) throw new Error(`${this.dir}: open() the run folder first`);
    return this.tb;
  }
}
