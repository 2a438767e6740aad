import type { GraphTarget } from '../autodiff/registry.ts';
import type { ParamSet } from '../dsl/init.ts';
import type { LossKind } from '../losses.ts';
import { elementCount, type Model } from '../model.ts';
import type { OptimizerConfig, OptimizerKind } from '../optimizers.ts';
import type { Checkpoint } from './checkpoint.ts';
import { buildEvalModel } from './eval.ts';
import { CnnlabError } from '../../common/errors.ts';
import { replaceInitializers } from '../graph/onnx.ts';
import { buildInferenceModel, metadataProps, type ModelMeta } from './inference.ts';
import { CARD_KEYS, type CardImage, type CardPreparation, readModelCard, writeModelCard } from './model-card.ts';
import { buildTrainStepModel, type TrainStepInterface } from './train-step.ts';
import { buildFeatureEvalModel, buildHeadInferenceModel } from '../split.ts';

/** What shapes the artifacts (the rest of a recipe, such as lr and the schedule, is fed per step). */
export interface CompileRecipe {
  optimizer: OptimizerConfig;
  /** The kind that emits the optimizer's updates, resolved from its name (training/optimizers); default the built-in SGD. */
  optimizerKind?: OptimizerKind;
  loss: LossKind;
  smoothing?: number;
  meta: ModelMeta;
  /** Parameters kept fixed (fine-tuning with frozen features). */
  frozen?: ReadonlySet<string>;
  /** The kernels the train step is made for (graphTargetFor(ep)); default 'portable'. */
  target?: GraphTarget;
  /** The CPU EP's NCHWc block size (Runtime.nchwcBlock): the train step's and eval graph's Convs on its blocked kernels. */
  nchwcBlock?: number;
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

/** The preparation a model's metadata records (undefined where it records none); a malformed one is one line naming the file. */
export function readPreparation(metadata: Record<string, string>, file: string): CardPreparation | undefined {
  return readModelCard(metadata, file).preprocess;
}

/** The image conversion (and, for an imported model, input size) a model's metadata records; a malformed one is one line naming the file. */
export function readImageConversion(metadata: Record<string, string>, file: string): CardImage {
  return readModelCard(metadata, file).image ?? {};
}

/**
 * An imported model's trained form: its own file with the new parameter values and cnnlab's
 * metadata added, so every name, input and output stays as its user exported it.
 */
function importedInference(model: Model, params: ParamSet, meta: ModelMeta): Uint8Array {
  if (!model.source) throw new Error('importedInference needs an imported model');
  const metadata = {
    ...metadataProps(model, meta),
    ...writeModelCard({
      input: `${model.input}: float32 [N,${model.inputShape.join(',')}]; prepare pixels as ${CARD_KEYS.preprocess} and ${CARD_KEYS.image} say`,
      preprocess: { range: meta.inputRange ?? 1, mean: meta.mean, std: meta.std },
      // The input size too: an input exported with a symbolic height and width keeps it, and predict reads the size trained at.
      image: { ...meta.conversion, size: [model.inputShape[1], model.inputShape[2]] },
      outputKind: model.source.outputKind,
    }),
  };
  const head = model.source.head && { output: model.source.output, ...model.source.head };
  return replaceInitializers(model.source.bytes, params, metadata, head);
}

/** Builds every artifact of a model for a recipe; a rule that cannot differentiate an imported node is one line naming the file. */
export function compile(model: Model, recipe: CompileRecipe): Artifacts {
  const { optimizer, optimizerKind, loss, smoothing, meta, frozen, target, nchwcBlock } = recipe;
  let train: ReturnType<typeof buildTrainStepModel>;
  try {
    train = buildTrainStepModel(model, { optimizer, optimizerKind, loss, smoothing, meta, frozen, target, nchwcBlock });
  } catch (err) {
    if (!model.source || !/^autodiff: /.test((err as Error).message)) throw err;
    throw new CnnlabError(`${model.source.file}: ${(err as Error).message.replace(/^autodiff: /, '')}`);
  }
  const features = model.inputKind === 'features';
  return {
    model,
    trainStep: train.bytes,
    iface: train.iface,
    eval: features ? buildFeatureEvalModel(model, loss, meta) : buildEvalModel(model, loss, meta, nchwcBlock),
    inference: inferenceOf(model, meta),
    initialCheckpoint: (params, ckptMeta = {}) => initialCheckpoint(train.iface, params, ckptMeta),
  };
}

/** A model's inference graph for given parameters (Artifacts.inference), without building its training graphs. */
export function inferenceOf(model: Model, meta: ModelMeta): Artifacts['inference'] {
  const withExtra = (extra?: Record<string, string>) => (extra ? { ...meta, extra: { ...meta.extra, ...extra } } : meta);
  return (params, extra) => {
    if (model.inputKind === 'features') return buildHeadInferenceModel(model, params, withExtra(extra));
    return model.source && params !== 'inputs' ? importedInference(model, params, withExtra(extra)) : buildInferenceModel(model, params, withExtra(extra));
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
