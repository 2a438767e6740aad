import { elementCount } from '../graph-builder/model.ts';
import type { Checkpoint, CkptTensor } from '../graph-builder/artifacts/checkpoint.ts';
import type { StepInputs, TrainStepInterface } from '../graph-builder/artifacts/train-step.ts';
import type { Runtime, Session, Tensor } from './ort.ts';

/** K steps of B examples: the data of each per-run input the step interface lists, by its name. */
export interface StepBatch {
  K: number;
  B: number;
  inputs: StepInputs;
}

/**
 * Feeds for the inputs an interface lists: its symbolic dims (K, B) take the values in `dims`,
 * and each array's length must match the shape it gets. The Node runner, the wasm runner and
 * the demo page (inference/web/app.js, from the served interface) all build feeds this way.
 */
export function feedsFor(ort: Runtime['ort'], inputs: TrainStepInterface['inputs'], data: Record<string, StepInputs[keyof StepInputs]>, dims: Record<string, number>): Record<string, Tensor> {
  const feeds: Record<string, Tensor> = {};
  for (const i of inputs) {
    const shape = i.shape.map((d) => (typeof d === 'number' ? d : dims[d]));
    const values = data[i.name];
    const count = elementCount(shape);
    if (!values || shape.some((d) => d === undefined) || values.length !== count) {
      throw new Error(`train step input ${i.name}: expected ${i.dtype} [${shape.join(', ')}] (${count} values), got ${values ? values.length : 'nothing'}`);
    }
    feeds[i.name] = new ort.Tensor(i.dtype as 'float32', values as Float32Array, shape);
  }
  return feeds;
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
    const feeds = { ...Object.fromEntries(this.carried), ...feedsFor(this.rt.ort, this.iface.inputs, { ...batch.inputs }, { K: batch.K, B: batch.B }) };
    const out = await this.session.run(feeds);
    for (const c of this.iface.carried) this.carried.set(c.name, out[c.next]);
    return { losses: out.losses.data as Float32Array, correct: out.correct.data as Float32Array };
  }

  async release(): Promise<void> {
    await this.session.release();
  }
}
