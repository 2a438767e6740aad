import { emitBackward } from '../autodiff/backward.ts';
import type { GradRule } from '../autodiff/rule.ts';
import { type GraphTarget, gradRulesFor } from '../autodiff/registry.ts';
import { byteImageDims, type Model } from '../model.ts';
import { emitForward, emitImageFromBytes, emitNormalize } from '../forward.ts';
import { attr, type Dim, type DType, GraphBuilder, type Node } from '../graph/ir.ts';
import { encodeModel } from '../graph/onnx.ts';
import { emitLoss, type LossKind } from '../losses.ts';
import { emitStepNumber, emitUpdate, type OptimizerConfig, type OptimizerKind, optimizerKindOf } from '../optimizers.ts';
import { trainMode } from '../train-mode.ts';
import type { ModelMeta } from './inference.ts';
import { metadataProps } from './inference.ts';
import { lowerConvsToNchwc } from './nchwc.ts';
import { writeModelCard } from './model-card.ts';

export interface TrainGraphOptions {
  optimizer: OptimizerConfig;
  /** The kind that emits the optimizer's updates, resolved from its name (training/optimizers); default the built-in SGD. */
  optimizerKind?: OptimizerKind;
  loss: LossKind;
  smoothing?: number;
  meta: ModelMeta;
  /** Parameters kept fixed (fine-tuning with frozen features): no gradient, no update. */
  frozen?: ReadonlySet<string>;
  /** The kernels the graph is made for (default 'portable', which every execution provider runs). */
  target?: GraphTarget;
  /**
   * The CPU EP's NCHWc block size (8 or 16, runtime/ort.ts nchwcBlockSize): the step's Convs then
   * run on its blocked kernels (artifacts/nchwc.ts). Absent: standard Convs (wasm, other EPs).
   */
  nchwcBlock?: number;
}

/** A value the train step carries from one step to the next, and the name it leaves under. */
export interface Carried {
  name: string;
  dtype: 'float32' | 'int64';
  shape: number[];
  role: 'param' | 'state' | 'buffer' | 'step';
  next: string;
}

export interface TrainStepInterface {
  carried: Carried[];
  /** Per-run inputs besides the carried values. */
  inputs: { name: keyof StepInputs; dtype: DType; shape: Dim[]; describe: string }[];
  outputs: { name: string; dtype: DType; shape: Dim[]; describe: string }[];
}

/** The data of one run's inputs, named as trainStepInterface lists them. */
export interface StepInputs {
  /** uint8 pixels; float32 features for a model whose inputKind is 'features'. */
  images: Uint8Array | Float32Array;
  labels: Uint8Array;
  lr: Float32Array;
  momentum: Float32Array;
  dropout_seed: BigInt64Array;
}

/** Name of a parameter's optimiser state tensor, e.g. `conv1.weight.exp_avg`. */
export const stateName = (param: string, slot: string) => `${param}.${slot}`;
export const nextName = (name: string) => `${name}.next`;

/** The values a train step carries and takes, for an optimiser (its kind: as TrainGraphOptions.optimizerKind). */
export function trainStepInterface(a: Model, opt: OptimizerConfig, kind?: OptimizerKind): TrainStepInterface {
  const slots = optimizerKindOf(opt, kind).slots(opt);
  const carried: Carried[] = [{ name: 'step', dtype: 'int64', shape: [], role: 'step', next: nextName('step') }];
  for (const p of a.params.filter((q) => q.trainable)) carried.push({ name: p.name, dtype: 'float32', shape: p.shape, role: 'param', next: nextName(p.name) });
  for (const p of a.params.filter((q) => q.trainable)) {
    for (const slot of slots) carried.push({ name: stateName(p.name, slot), dtype: 'float32', shape: p.shape, role: 'state', next: nextName(stateName(p.name, slot)) });
  }
  for (const p of a.params.filter((q) => !q.trainable)) carried.push({ name: p.name, dtype: 'float32', shape: p.shape, role: 'buffer', next: nextName(p.name) });
  return {
    carried,
    inputs: [
      a.inputKind === 'features'
        ? { name: 'images', dtype: 'float32', shape: ['K', 'B', ...a.inputShape], describe: 'K batches of B feature tensors (the features graph’s output)' }
        : { name: 'images', dtype: 'uint8', shape: ['K', 'B', ...byteImageDims(a)], describe: 'K batches of B images, pixels 0..255' },
      { name: 'labels', dtype: 'uint8', shape: ['K', 'B'], describe: 'their labels' },
      { name: 'lr', dtype: 'float32', shape: ['K'], describe: 'learning rate of each step' },
      { name: 'momentum', dtype: 'float32', shape: ['K'], describe: 'momentum (SGD, RMSprop) or beta1 (Adam, AdamW) of each step' },
      { name: 'dropout_seed', dtype: 'int64', shape: ['K'], describe: 'seed of each step’s dropout masks, 0..2^31-2' },
    ],
    outputs: [
      { name: 'losses', dtype: 'float32', shape: ['K'], describe: 'mean training loss of each step (before its update)' },
      { name: 'correct', dtype: 'float32', shape: ['K'], describe: 'correct predictions in each step’s batch' },
    ],
  };
}

export interface StepValues {
  /** Images scaled to 0..1 [N,C,H,W] (float32), or a features input as it is; int64 labels [N]. */
  image: string;
  labels: string;
  /** int64 scalar: the seed of this step's dropout masks. */
  seed: string;
  /** The value holding a parameter or buffer. */
  param: (name: string) => string;
}

/**
 * One step's forward (train mode), loss and backward. Returns the loss, the correct count,
 * the gradient of every trainable parameter (keyed by its value) and the new BatchNorm statistics.
 */
export function emitLossAndGradients(b: GraphBuilder, a: Model, opts: Omit<TrainGraphOptions, 'optimizer' | 'optimizerKind'>, v: StepValues, rules?: Record<string, GradRule>) {
  const x = a.inputKind === 'features' ? v.image : emitNormalize(b, v.image, opts.meta.mean, opts.meta.std);
  const mode = trainMode(v.seed);
  // A BatchNorm whose scale and shift are both frozen runs on its running statistics, which stay as they are.
  const frozenBatchNorm = opts.frozen && ((n: Node) => opts.frozen!.has(n.inputs[1]) && opts.frozen!.has(n.inputs[2]));
  const scores = emitForward(b, a, x, { param: v.param, train: mode.hooks, frozenBatchNorm });
  const { loss, correct } = emitLoss(b, scores, v.labels, { kind: opts.loss, smoothing: opts.smoothing, reduction: 'mean', classes: a.classes });
  const trainable = a.params.filter((p) => p.trainable && !opts.frozen?.has(p.name)).map((p) => v.param(p.name));
  const grads = emitBackward(b, loss, trainable, rules);
  return { loss, correct, grads, bufferUpdates: mode.bufferUpdates };
}

/** A step's features, as fed: float32 [B, ...inputShape]. */
function featureBatch(b: GraphBuilder, features: string, a: Model): string {
  b.note(features, 'float32', ['N', ...a.inputShape]);
  return features;
}

/**
 * The train-step graph: K steps of forward, loss, backward and optimiser update inside one
 * Loop node. Parameters, optimiser state, BatchNorm statistics and the step counter are
 * loop-carried, so they cross the runtime's API once per K steps; batches come in as uint8
 * (a head cut off by split.ts: as float32 features).
 */
export function buildTrainStepModel(a: Model, opts: TrainGraphOptions): { bytes: Uint8Array; iface: TrainStepInterface } {
  const kind = optimizerKindOf(opts.optimizer, opts.optimizerKind);
  const iface = trainStepInterface(a, opts.optimizer, kind);
  const g = new GraphBuilder('cnnlab_train_step');
  for (const c of iface.carried) g.input(c.name, c.dtype, c.shape);
  for (const i of iface.inputs) g.input(i.name, i.dtype, i.shape);
  // Reserved first: the body shares the name space and must not take these.
  const loopOutputs = [...iface.carried.map((c) => c.next), 'losses', 'correct'];
  for (const o of loopOutputs) g.reserve(o);

  // The loop body: one step.
  const b = g.subgraph('train_step_body');
  const iter = b.freshInput('iter', 'int64', []);
  const condIn = b.freshInput('cond_in', 'bool', []);
  const inner = new Map<string, string>();
  for (const c of iface.carried) inner.set(c.name, b.freshInput(`body.${c.name}`, c.dtype, c.shape));
  const at = (name: string) => inner.get(name)!;

  const pick = (outer: string, hint: string) => b.op('Gather', [outer, iter], { axis: attr.int(0) }, hint);
  const image = a.inputKind === 'features' ? featureBatch(b, pick('images', 'batch_features'), a) : emitImageFromBytes(b, pick('images', 'batch_images'), a.inputShape, opts.meta.inputRange);
  const labels = b.cast(pick('labels', 'batch_labels_u8'), 'int64', 'batch_labels');
  const lr = pick('lr', 'step_lr');
  const momentum = pick('momentum', 'step_momentum');
  const seed = pick('dropout_seed', 'step_seed');

  const { loss, correct, grads, bufferUpdates } = emitLossAndGradients(b, a, opts, { image, labels, seed, param: at }, gradRulesFor(opts.target ?? 'portable'));
  const t = emitStepNumber(b, at('step'));
  const next = new Map<string, string>();
  for (const p of a.params.filter((q) => q.trainable).map((q) => q.name)) {
    const slots = kind.slots(opts.optimizer);
    if (opts.frozen?.has(p)) {
      next.set(p, at(p));
      for (const s of slots) next.set(stateName(p, s), at(stateName(p, s)));
      continue;
    }
    const upd = emitUpdate(b, opts.optimizer, {
      param: at(p),
      grad: grads.get(at(p))!,
      state: Object.fromEntries(slots.map((s) => [s, at(stateName(p, s))])),
      lr,
      momentum,
      t,
    }, kind);
    next.set(p, upd.param);
    for (const s of slots) next.set(stateName(p, s), upd.state[s]);
  }
  for (const [buffer, value] of bufferUpdates) next.set(buffer, value);
  for (const p of a.params) if (!p.trainable && !next.has(p.name)) next.set(p.name, at(p.name));
  next.set('step', b.op('Add', [at('step'), b.constI([1], [])], {}, 'step_next'));
  if (opts.nchwcBlock) lowerConvsToNchwc(b, opts.nchwcBlock);

  // Body outputs: cond, carried values, then the per-step scan outputs.
  const emitOut = (value: string, hint: string, dtype: 'float32' | 'int64' | 'bool', shape?: Dim[]) => b.expose(value, b.fresh(hint), dtype, shape);
  emitOut(condIn, 'cond_out', 'bool', []);
  for (const c of iface.carried) {
    const v = next.get(c.name);
    if (!v) throw new Error(`train step: nothing updates ${c.name}`);
    emitOut(v, `body.${c.name}.out`, c.dtype, c.shape);
  }
  emitOut(loss, 'step_loss', 'float32', []);
  emitOut(correct, 'step_correct', 'float32', []);

  // The outer graph: K = images.shape[0] trips of the body.
  const K = g.op('Gather', [g.op('Shape', ['images']), g.constI([0], [])], { axis: attr.int(0) }, 'K');
  const condInit = g.cast(g.constI([1], []), 'bool', 'cond_init');
  g.graph.nodes.push({
    op: 'Loop',
    name: 'train_steps',
    inputs: [K, condInit, ...iface.carried.map((c) => c.name)],
    outputs: loopOutputs,
    attrs: { body: attr.graph(b.graph) },
  });
  for (const c of iface.carried) g.output(c.next, c.dtype, c.shape);
  g.output('losses', 'float32', ['K']);
  g.output('correct', 'float32', ['K']);
  const bytes = encodeModel(g.graph, {
    docString: `cnnlab ${opts.meta.architecture} train step (${opts.optimizer.name}, ${opts.loss})`,
    metadata: { ...metadataProps(a, opts.meta), ...writeModelCard({ artifact: 'train_step', optimizer: opts.optimizer }) },
  });
  return { bytes, iface };
}
