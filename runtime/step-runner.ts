import type { Checkpoint, CkptTensor } from '../graph-builder/artifacts/checkpoint.ts';
import type { TrainStepInterface } from '../graph-builder/artifacts/train-step.ts';
import type { Runtime, Session, Tensor } from './ort.ts';

export interface StepBatch {
  /** K*B*784 pixels and K*B labels, uint8. */
  images: Uint8Array;
  labels: Uint8Array;
  K: number;
  B: number;
  /** Per-step hyperparameters, length K. */
  lr: Float32Array;
  momentum: Float32Array;
  dropoutSeed: BigInt64Array;
}

export interface StepResult {
  losses: Float32Array;
  correct: Float32Array;
}

/**
 * Runs the train-step graph. The carried tensors (parameters, optimiser state, BatchNorm
 * statistics, step) stay as onnxruntime tensors between runs: each run's outputs become the
 * next run's inputs without a copy through JavaScript arrays.
 */
export class StepRunner {
  private carried = new Map<string, Tensor>();

  private constructor(
    private readonly rt: Runtime,
    private readonly session: Session,
    private readonly iface: TrainStepInterface,
  ) {}

  static async create(rt: Runtime, model: Uint8Array, iface: TrainStepInterface, start: Checkpoint): Promise<StepRunner> {
    const runner = new StepRunner(rt, await rt.createSession(model), iface);
    runner.load(start);
    return runner;
  }

  /** Replaces the carried tensors with a checkpoint's (a missing or misshapen one is an error). */
  load(ckpt: Checkpoint): void {
    const { Tensor } = this.rt.ort;
    for (const c of this.iface.carried) {
      const t = ckpt.tensors.get(c.name);
      if (!t) throw new Error(`checkpoint lacks ${c.name}`);
      if (t.dtype !== c.dtype || t.dims.join('x') !== c.shape.join('x')) {
        throw new Error(`checkpoint tensor ${c.name} is ${t.dtype} [${t.dims}], the graph expects ${c.dtype} [${c.shape}]`);
      }
      this.carried.set(c.name, t.dtype === 'int64' ? new Tensor('int64', t.data.slice(), c.shape) : new Tensor('float32', t.data.slice(), c.shape));
    }
  }

  /** Copies of the carried tensors, ready for a checkpoint. */
  tensors(): Map<string, CkptTensor> {
    const out = new Map<string, CkptTensor>();
    for (const c of this.iface.carried) {
      const t = this.carried.get(c.name)!;
      out.set(c.name, c.dtype === 'int64' ? { dtype: 'int64', dims: c.shape, data: (t.data as BigInt64Array).slice() } : { dtype: 'float32', dims: c.shape, data: (t.data as Float32Array).slice() });
    }
    return out;
  }

  get step(): number {
    return Number((this.carried.get('step')!.data as BigInt64Array)[0]);
  }

  async run(batch: StepBatch): Promise<StepResult> {
    const { Tensor } = this.rt.ort;
    const { K, B } = batch;
    if (batch.images.length !== K * B * 784 || batch.labels.length !== K * B) throw new Error(`batch of ${K}x${B} has the wrong size`);
    const feeds: Record<string, Tensor> = Object.fromEntries(this.carried);
    feeds.images = new Tensor('uint8', batch.images, [K, B, 28, 28]);
    feeds.labels = new Tensor('uint8', batch.labels, [K, B]);
    feeds.lr = new Tensor('float32', batch.lr, [K]);
    feeds.momentum = new Tensor('float32', batch.momentum, [K]);
    feeds.dropout_seed = new Tensor('int64', batch.dropoutSeed, [K]);
    const out = await this.session.run(feeds);
    for (const c of this.iface.carried) this.carried.set(c.name, out[c.next]);
    return { losses: out.losses.data as Float32Array, correct: out.correct.data as Float32Array };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
