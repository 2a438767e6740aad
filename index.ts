/**
 * cnnlab's public API: the model DSL, presets, the graph builder's entry points, and train,
 * evaluate, predict, exportModel and inspectModel (training/api.ts, training/model-api.ts), the
 * functions the CLI's train, eval, predict, export and inspect commands call.
 */
export * from './graph-builder/dsl/layers.ts';
export { PRESETS, PRESET_NAMES, resolvePreset, type Preset, type Recipe } from './graph-builder/dsl/presets.ts';
export { modelFromLayers } from './graph-builder/dsl/to-model.ts';
export type { Model, ParamSpec } from './graph-builder/model.ts';
export { initParams, type ParamSet } from './graph-builder/dsl/init.ts';
export { buildInferenceModel } from './graph-builder/artifacts/inference.ts';
export { loadDataset } from './datasets/sources.ts';
export {
  train,
  type CodeModel,
  type EpochMetrics,
  type ModelSource,
  type RunConfig,
  type StepInfo,
  type StopControl,
  type TrainingData,
  type TrainOptions,
  type TrainResult,
  type TrainSettings,
} from './training/api.ts';
export {
  evaluate,
  exportModel,
  inspectModel,
  predict,
  type EvaluateOptions,
  type EvaluateResult,
  type ExportFormat,
  type ExportOptions,
  type ImageSet,
  type ImageTensor,
  type InspectOptions,
  type ModelOptions,
  type Prediction,
  type PredictInput,
  type PredictOptions,
  type PredictResult,
} from './training/model-api.ts';
export { CnnlabError, DivergedError, InputError, UsageError } from './common/errors.ts';
