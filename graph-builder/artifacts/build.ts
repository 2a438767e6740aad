import { join } from 'node:path';
import { DATASETS, type DatasetName } from '../../datasets/registry.ts';
import type { Architecture } from '../dsl/arch.ts';
import { initParams, type ParamSet } from '../dsl/init.ts';
import { IR_VERSION, OPSET } from '../graph/onnx.ts';
import { buildInferenceModel, type ModelMeta } from './inference.ts';
import { writeFileAtomic } from './write.ts';

export interface BuildOptions {
  outDir: string;
  seed: number;
  dataset: DatasetName;
}

export interface Manifest {
  architecture: string;
  dataset: DatasetName;
  seed: number;
  opset: number;
  irVersion: number;
  parameters: { name: string; shape: number[]; trainable: boolean }[];
  trainableParameters: number;
  normalization: { mean: number; std: number };
  artifacts: Record<string, { file: string; inputs: string[]; outputs: string[] }>;
}

export function normalizationFor(arch: Architecture, dataset: DatasetName): { mean: number; std: number } {
  const n = arch.recipe.normalize;
  return n === 'dataset' ? { mean: DATASETS[dataset].mean, std: DATASETS[dataset].std } : n;
}

export function modelMeta(arch: Architecture, dataset: DatasetName, extra?: Record<string, string>): ModelMeta {
  return { architecture: arch.id, dataset, classes: DATASETS[dataset].classes, ...normalizationFor(arch, dataset), extra };
}

/** Writes the artifacts of one architecture into `outDir` and returns the manifest. */
export function buildArtifacts(arch: Architecture, opts: BuildOptions, params: ParamSet = initParams(arch.analysis, opts.seed)): Manifest {
  const meta = modelMeta(arch, opts.dataset);
  writeFileAtomic(join(opts.outDir, 'inference.onnx'), buildInferenceModel(arch.analysis, params, meta));
  const manifest: Manifest = {
    architecture: arch.id,
    dataset: opts.dataset,
    seed: opts.seed,
    opset: OPSET,
    irVersion: IR_VERSION,
    parameters: arch.analysis.params.map((p) => ({ name: p.name, shape: p.shape, trainable: p.trainable })),
    trainableParameters: arch.analysis.trainableCount,
    normalization: { mean: meta.mean, std: meta.std },
    artifacts: {
      inference: { file: 'inference.onnx', inputs: ['image'], outputs: ['logits', 'probabilities'] },
    },
  };
  writeFileAtomic(join(opts.outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}
