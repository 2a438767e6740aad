/** cnnlab's public API: the model DSL, presets, and the graph builder's entry points. */
export * from './graph-builder/dsl/layers.ts';
export { PRESETS, PRESET_NAMES, resolvePreset, type Preset, type Recipe } from './graph-builder/dsl/presets.ts';
export { modelFromLayers } from './graph-builder/dsl/to-model.ts';
export type { Model, ParamSpec } from './graph-builder/model.ts';
export { initParams, type ParamSet } from './graph-builder/dsl/init.ts';
export { buildInferenceModel } from './graph-builder/artifacts/inference.ts';
export { loadDataset } from './datasets/sources.ts';
