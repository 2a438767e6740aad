import { elementCount } from '../graph-builder/model.ts';
import type { Checkpoint, CkptTensor } from '../graph-builder/artifacts/checkpoint.ts';
import type { StepInputs, TrainStepInterface } from '../graph-builder/artifacts/train-step.ts';
import { singleStepModel } from '../graph-builder/artifacts/single-step.ts';
import { GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
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
  protected carried = new Map<string, Tensor>();

  protected constructor(
    protected readonly rt: Runtime,
    protected readonly session: Session,
    protected readonly iface: TrainStepInterface,
  ) {}

  /** A runner for the train step `model`; on the WebGPU EP one that keeps the carried tensors on the GPU (GpuStepRunner). */
  static async create(rt: Runtime, model: Uint8Array, iface: TrainStepInterface, start: Checkpoint): Promise<StepRunner> {
    const runner = rt.createGpuSession ? await GpuStepRunner.open(rt, rt.createGpuSession, model, iface) : new StepRunner(rt, await rt.createSession(model), iface);
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

  /** Whether the carried tensors stay in GPU memory between runs (GpuStepRunner). */
  get carriedOnGpu(): boolean {
    return false;
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

/**
 * The train step on the WebGPU EP with the carried tensors kept in GPU memory. A session there
 * places the Loop node on the CPU EP, which copies every carried tensor to the host and back at
 * each step; this runner runs the step without its Loop (singleStepModel) K times per run(), its
 * float outputs left on the GPU ('gpu-buffer') and fed to the next step as they are. At the end
 * of each run() the floats are copied to the host once, for tensors(): onnxruntime-node 1.30
 * cannot read a 'gpu-buffer' tensor (its Tensor.getData() calls a download function that throws
 * a C string, js/node/src/tensor_helper.cc, which aborts the process), so an Identity graph on
 * the same EP copies them out instead. The step counter (int64) stays on the CPU EP.
 */
class GpuStepRunner extends StepRunner {
  /** What the next step reads: 'gpu-buffer' tensors after the first step, the host's before. */
  private device = new Map<string, Tensor>();

  private constructor(
    rt: Runtime,
    session: Session,
    iface: TrainStepInterface,
    private readonly download: Session,
  ) {
    super(rt, session, iface);
  }

  static async open(rt: Runtime, createGpuSession: NonNullable<Runtime['createGpuSession']>, model: Uint8Array, iface: TrainStepInterface): Promise<GpuStepRunner> {
    const floats = iface.carried.filter((c) => c.dtype === 'float32');
    const b = new GraphBuilder('cnnlab_download');
    for (const c of floats) b.expose(b.input(c.name, 'float32', c.shape), c.next, 'float32', c.shape);
    const [session, download] = await Promise.all([createGpuSession(singleStepModel(model), floats.map((c) => c.next)), rt.createSession(encodeModel(b.graph))]);
    return new GpuStepRunner(rt, session, iface, download);
  }

  override get carriedOnGpu(): boolean {
    return true;
  }

  override load(ckpt: Checkpoint): void {
    super.load(ckpt);
    this.replaceDevice(new Map(this.carried));
  }

  override async run(batch: StepBatch): Promise<StepResult> {
    const [losses, correct] = [new Float32Array(batch.K), new Float32Array(batch.K)];
    for (let k = 0; k < batch.K; k++) {
      const step: Record<string, StepInputs[keyof StepInputs]> = {};
      for (const i of this.iface.inputs) {
        const all = batch.inputs[i.name];
        const per = all.length / batch.K;
        step[i.name] = all.subarray(k * per, (k + 1) * per);
      }
      const out = await this.session.run({ ...Object.fromEntries(this.device), ...feedsFor(this.rt.ort, this.iface.inputs, step, { K: 1, B: batch.B }) });
      this.replaceDevice(new Map(this.iface.carried.map((c) => [c.name, out[c.next]])));
      losses[k] = (out.losses.data as Float32Array)[0];
      correct[k] = (out.correct.data as Float32Array)[0];
    }
    const floats = this.iface.carried.filter((c) => c.dtype === 'float32');
    const host = await this.download.run(Object.fromEntries(floats.map((c) => [c.name, this.device.get(c.name)!])));
    for (const c of this.iface.carried) this.carried.set(c.name, c.dtype === 'float32' ? host[c.next] : this.device.get(c.name)!);
    return { losses, correct };
  }

  /** Frees the GPU buffers the step no longer reads (onnxruntime would otherwise wait for the garbage collector). */
  private replaceDevice(next: Map<string, Tensor>): void {
    for (const t of this.device.values()) if (t.location === 'gpu-buffer') t.dispose();
    this.device = next;
  }

  override async release(): Promise<void> {
    this.replaceDevice(new Map());
    await Promise.all([super.release(), this.download.release()]);
  }
}
