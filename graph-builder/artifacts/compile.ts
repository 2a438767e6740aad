import type { ParamSet } from '../dsl/init.ts';
import type { LossKind } from '../losses.ts';
import type { Model } from '../model.ts';
import type { OptimizerConfig } from '../optimizers.ts';
import type { Checkpoint } from './checkpoint.ts';
import { buildEvalModel } from './eval.ts';
import { buildInferenceModel, type ModelMeta } from './inference.ts';
import { buildTrainStepModel, type TrainStepInterface } from './train-step.ts';

/** What shapes the artifacts (the rest of a recipe, such as lr and the schedule, is fed per step). */
export interface CompileRecipe {
  optimizer: OptimizerConfig;
  loss: LossKind;
  smoothing?: number;
  meta: ModelMeta;
  /** Parameters kept fixed (fine-tuning with frozen features). */
  frozen?: ReadonlySet<string>;
}

/** One model's artifacts: the step graph and its interface, the eval graph, and the two that take parameters. */
export interface Artifacts {
  model: Model;
  trainStep: Uint8Array;
  iface: TrainStepInterface;
  eval: Uint8Array;
  /** The inference graph with these parameters as initialisers ('inputs': fed per run, as the demo page does). */
  inference(params: ParamSet | 'inputs', extra?: Record<string, string>): Uint8Array;
  /** The checkpoint a run starts from: these parameters, zero optimiser state, step 0. */
  initialCheckpoint(params: ParamSet, meta?: Record<string, unknown>): Checkpoint;
}

/** Builds every artifact of a model for a recipe. */
export function compile(model: Model, recipe: CompileRecipe): Artifacts {
  const { optimizer, loss, smoothing, meta, frozen } = recipe;
  const train = buildTrainStepModel(model, { optimizer, loss, smoothing, meta, frozen });
  return {
    model,
    trainStep: train.bytes,
    iface: train.iface,
    eval: buildEvalModel(model, loss, meta),
    inference: (params, extra) => buildInferenceModel(model, params, extra ? { ...meta, extra: { ...meta.extra, ...extra } } : meta),
    initialCheckpoint: (params, ckptMeta = {}) => initialCheckpoint(train.iface, params, ckptMeta),
  };
}

/** The checkpoint a run starts from: initial parameters, zero optimiser state, step 0. */
export function initialCheckpoint(iface: TrainStepInterface, params: ParamSet, meta: Record<string, unknown>): Checkpoint {
  const tensors: Checkpoint['tensors'] = new Map();
  for (const c of iface.carried) {
    if (c.role === 'step') tensors.set(c.name, { dtype: 'int64', dims: [], data: BigInt64Array.of(0n) });
    else if (c.role === 'state') tensors.set(c.name, { dtype: 'float32', dims: c.shape, data: new Float32Array(c.shape.reduce((a, b) => a * b, 1)) });
    else tensors.set(c.name, { dtype: 'float32', dims: c.shape, data: params.get(c.name)!.slice() });
  }
  return { meta, tensors };
}
