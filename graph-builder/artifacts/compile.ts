import type { GraphTarget } from '../autodiff/registry.ts';
import type { ParamSet } from '../dsl/init.ts';
import type { LossKind } from '../losses.ts';
import { elementCount, type InputRange, type Model, type Normalization } from '../model.ts';
import type { ImageConversion } from '../../datasets/registry.ts';
import type { OptimizerConfig } from '../optimizers.ts';
import type { Checkpoint } from './checkpoint.ts';
import { buildEvalModel } from './eval.ts';
import { CnnlabError } from '../../common/errors.ts';
import { replaceInitializers } from '../graph/onnx.ts';
import { buildInferenceModel, IMAGE_KEY, metadataProps, type ModelMeta } from './inference.ts';
import { buildTrainStepModel, type TrainStepInterface } from './train-step.ts';

/** What shapes the artifacts (the rest of a recipe, such as lr and the schedule, is fed per step). */
export interface CompileRecipe {
  optimizer: OptimizerConfig;
  loss: LossKind;
  smoothing?: number;
  meta: ModelMeta;
  /** Parameters kept fixed (fine-tuning with frozen features). */
  frozen?: ReadonlySet<string>;
  /** The kernels the train step is made for (graphTargetFor(ep)); default 'portable'. */
  target?: GraphTarget;
}

/** One model's artifacts: the step graph and its interface, the eval graph, and the two that take parameters. */
export interface Artifacts {
  model: Model;
  trainStep: Uint8Array;
  iface: TrainStepInterface;
  eval: Uint8Array;
  /**
   * The inference graph with these parameters as initialisers (an imported model: its own file
   * with them), or with 'inputs', cnnlab's image-in, probabilities-out graph taking the
   * parameters per run, as the demo page does.
   */
  inference(params: ParamSet | 'inputs', extra?: Record<string, string>): Uint8Array;
  /** The checkpoint a run starts from: these parameters, zero optimiser state, step 0. */
  initialCheckpoint(params: ParamSet, meta?: Record<string, unknown>): Checkpoint;
}

/**
 * How an imported model's inputs are prepared, in its metadata: pixels scaled to 0..range, then
 * (x - mean) / std, outside the graph (cnnlab's own models normalise inside theirs); mean and
 * std are numbers, or lists of one value per channel.
 */
export const PREPARATION_KEY = 'cnnlab.preprocess';

/** A mean (or, `positive`, a std) as metadata holds it: a finite number or a list of them. */
function isStat(v: unknown, positive: boolean): v is number | number[] {
  const ok = (x: unknown) => typeof x === 'number' && Number.isFinite(x) && (!positive || x > 0);
  return ok(v) || (Array.isArray(v) && v.length > 1 && v.every(ok));
}

/** The preparation a model's metadata records (undefined where it records none); a malformed one is one line naming the file. */
export function readPreparation(metadata: Record<string, string>, file: string): ({ range: InputRange } & Normalization) | undefined {
  const text = metadata[PREPARATION_KEY];
  if (!text) return undefined;
  try {
    const p = JSON.parse(text) as { range: InputRange; mean: unknown; std: unknown };
    if ((p.range === 1 || p.range === 255) && isStat(p.mean, false) && isStat(p.std, true)) return { range: p.range, mean: p.mean, std: p.std };
  } catch {
    // reported below
  }
  throw new CnnlabError(`${file}: metadata ${PREPARATION_KEY} is not {"range":1|255,"mean":..,"std":..} (mean and std numbers or lists of them)`);
}

/** The image conversion (and, for an imported model, input size) a model's metadata records; a malformed one is one line naming the file. */
export function readImageConversion(metadata: Record<string, string>, file: string): ImageConversion & { size?: [number, number] } {
  const text = metadata[IMAGE_KEY];
  if (!text) return {};
  try {
    const c = JSON.parse(text) as { channelOrder?: unknown; resize?: unknown; size?: unknown };
    const size = Array.isArray(c.size) && c.size.length === 2 && c.size.every((d) => Number.isInteger(d) && d > 0) ? (c.size as [number, number]) : undefined;
    const ok = [undefined, 'rgb', 'bgr'].includes(c.channelOrder as string) && [undefined, 'stretch', 'crop'].includes(c.resize as string) && (c.size === undefined || size);
    if (ok) return { ...(c.channelOrder === 'bgr' ? { channelOrder: 'bgr' } : {}), ...(c.resize === 'crop' ? { resize: 'crop' } : {}), ...(size ? { size } : {}) };
  } catch {
    // reported below
  }
  throw new CnnlabError(`${file}: metadata ${IMAGE_KEY} is not {"channelOrder":"rgb"|"bgr","resize":"stretch"|"crop","size":[H,W]}`);
}

/**
 * An imported model's trained form: its own file with the new parameter values and cnnlab's
 * metadata added, so every name, input and output stays as its user exported it.
 */
function importedInference(model: Model, params: ParamSet, meta: ModelMeta): Uint8Array {
  if (!model.source) throw new Error('importedInference needs an imported model');
  const preparation = JSON.stringify({ range: meta.inputRange ?? 1, mean: meta.mean, std: meta.std });
  // The input size too: an input exported with a symbolic height and width keeps it, and predict reads the size trained at.
  const image = JSON.stringify({ ...meta.conversion, size: model.inputShape.slice(1) });
  const metadata = {
    ...metadataProps(model, meta),
    'cnnlab.input': `${model.input}: float32 [N,${model.inputShape.join(',')}]; prepare pixels as ${PREPARATION_KEY} and ${IMAGE_KEY} say`,
    [PREPARATION_KEY]: preparation,
    [IMAGE_KEY]: image,
    'cnnlab.output_kind': model.source.outputKind,
  };
  const head = model.source.head && { output: model.source.output, ...model.source.head };
  return replaceInitializers(model.source.bytes, params, metadata, head);
}

/** Builds every artifact of a model for a recipe; a rule that cannot differentiate an imported node is one line naming the file. */
export function compile(model: Model, recipe: CompileRecipe): Artifacts {
  const { optimizer, loss, smoothing, meta, frozen, target } = recipe;
  let train: ReturnType<typeof buildTrainStepModel>;
  try {
    train = buildTrainStepModel(model, { optimizer, loss, smoothing, meta, frozen, target });
  } catch (err) {
    if (!model.source || !/^autodiff: /.test((err as Error).message)) throw err;
    throw new CnnlabError(`${model.source.file}: ${(err as Error).message.replace(/^autodiff: /, '')}`);
  }
  const withExtra = (extra?: Record<string, string>) => (extra ? { ...meta, extra: { ...meta.extra, ...extra } } : meta);
  return {
    model,
    trainStep: train.bytes,
    iface: train.iface,
    eval: buildEvalModel(model, loss, meta),
    inference: (params, extra) => (model.source && params !== 'inputs' ? importedInference(model, params, withExtra(extra)) : buildInferenceModel(model, params, withExtra(extra))),
    initialCheckpoint: (params, ckptMeta = {}) => initialCheckpoint(train.iface, params, ckptMeta),
  };
}

/** The checkpoint a run starts from: initial parameters, zero optimiser state, step 0. */
export function initialCheckpoint(iface: TrainStepInterface, params: ParamSet, meta: Record<string, unknown>): Checkpoint {
  const tensors: Checkpoint['tensors'] = new Map();
  for (const c of iface.carried) {
    if (c.role === 'step') tensors.set(c.name, { dtype: 'int64', dims: [], data: BigInt64Array.of(0n) });
    else if (c.role === 'state') tensors.set(c.name, { dtype: 'float32', dims: c.shape, data: new Float32Array(elementCount(c.shape)) });
    else tensors.set(c.name, { dtype: 'float32', dims: c.shape, data: params.get(c.name)!.slice() });
  }
  return { meta, tensors };
}
