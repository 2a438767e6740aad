import { join } from 'node:path';
import { CnnlabError } from '../../common/errors.ts';
import type { DatasetInfo } from '../../datasets/registry.ts';
import type { Architecture } from '../dsl/arch.ts';
import { initParams, type ParamSet } from '../dsl/init.ts';
import { encodeCheckpoint } from './checkpoint.ts';
import { IR_VERSION, OPSET } from '../graph/onnx.ts';
import type { LossKind } from '../losses.ts';
import type { Normalization } from '../model.ts';
import type { OptimizerConfig, OptimizerKind } from '../optimizers.ts';
import { compile } from './compile.ts';
import type { ModelMeta } from './inference.ts';
import { writeModelCard } from './model-card.ts';
import type { TrainStepInterface } from './train-step.ts';
import { writeFileAtomic } from '../../common/files.ts';

/** What shapes the training graphs (the rest of a recipe, such as lr, is fed per step). */
export interface TrainSpec {
  optimizer: OptimizerConfig;
  loss: LossKind;
  smoothing: number;
}

/** NLL when the model outputs log-probabilities (as the EVA and JHU seeds), cross-entropy on logits otherwise. */
export function lossKindFor(arch: Architecture): LossKind {
  return arch.model.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy';
}

export interface BuildOptions {
  outDir: string;
  seed: number;
  dataset: DatasetInfo;
  train: TrainSpec;
  /** The kind that emits train.optimizer's updates (training/optimizers resolves it); default the built-in SGD. */
  optimizerKind?: OptimizerKind;
}

export interface Manifest {
  architecture: string;
  dataset: string;
  seed: number;
  opset: number;
  irVersion: number;
  parameters: { name: string; shape: number[]; trainable: boolean }[];
  trainableParameters: number;
  normalization: Normalization;
  optimizer: OptimizerConfig;
  loss: LossKind;
  labelSmoothing: number;
  artifacts: Record<string, { file: string; inputs: string[]; outputs: string[] }>;
  trainStep: TrainStepInterface;
  checkpoint: string;
}

/** The recipe's normalisation: fixed constants, or the training set's own statistics ('dataset'). */
export function normalizationFor(arch: Architecture, data: DatasetInfo): Normalization {
  const n = arch.recipe.normalize;
  if (n !== 'dataset') return n;
  if (data.mean === undefined || data.std === undefined) throw new CnnlabError(`${data.name}: its pixel mean and std are measured when it is read; read it first (cnnlab datasets stats) or pass --normalize MEAN,STD`);
  return { mean: data.mean, std: data.std };
}

export function modelMeta(arch: Architecture, data: DatasetInfo, extra?: Record<string, string>): ModelMeta {
  // A model from an architecture file carries its layers, so the demo page can fine-tune it without the file.
  const spec = arch.layers;
  const layers = arch.id.startsWith('file:') && spec ? writeModelCard({ layers: spec.input ? { input: spec.input, layers: spec.layers } : spec.layers }) : {};
  return { architecture: arch.id, dataset: data.name, classes: data.classes, ...normalizationFor(arch, data), inputRange: arch.recipe.inputRange, extra: { ...layers, ...extra } };
}

/** Writes the artifacts of one architecture into `outDir` and returns the manifest. */
export function buildArtifacts(arch: Architecture, opts: BuildOptions, params: ParamSet = initParams(arch.model, opts.seed)): Manifest {
  const meta = modelMeta(arch, opts.dataset);
  const a = arch.model;
  const { optimizer, loss, smoothing } = opts.train;
  const built = compile(a, { optimizer, optimizerKind: opts.optimizerKind, loss, smoothing, meta });
  const train = { iface: built.iface };
  writeFileAtomic(join(opts.outDir, 'train_step.onnx'), built.trainStep);
  writeFileAtomic(join(opts.outDir, 'eval.onnx'), built.eval);
  writeFileAtomic(join(opts.outDir, 'inference.onnx'), built.inference(params));
  const ckpt = built.initialCheckpoint(params, { architecture: arch.id, seed: opts.seed, optimizer: optimizer.name, step: 0 });
  writeFileAtomic(join(opts.outDir, 'init.ckpt'), encodeCheckpoint(ckpt));
  const carriedNames = train.iface.carried.map((c) => c.name);
  const manifest: Manifest = {
    architecture: arch.id,
    dataset: opts.dataset.name,
    seed: opts.seed,
    opset: OPSET,
    irVersion: IR_VERSION,
    parameters: a.params.map((p) => ({ name: p.name, shape: p.shape, trainable: p.trainable })),
    trainableParameters: a.trainableCount,
    normalization: { mean: meta.mean, std: meta.std },
    optimizer,
    loss,
    labelSmoothing: smoothing,
    artifacts: {
      train_step: {
        file: 'train_step.onnx',
        inputs: [...carriedNames, ...train.iface.inputs.map((i) => i.name)],
        outputs: [...train.iface.carried.map((c) => c.next), ...train.iface.outputs.map((o) => o.name)],
      },
      eval: { file: 'eval.onnx', inputs: [...a.params.map((p) => p.name), 'images', 'labels'], outputs: ['loss_sum', 'correct', 'predicted'] },
      inference: a.source ? { file: 'inference.onnx', inputs: [a.input], outputs: [a.source.output] } : { file: 'inference.onnx', inputs: ['image'], outputs: ['logits', 'probabilities'] },
    },
    trainStep: train.iface,
    checkpoint: 'init.ckpt',
  };
  writeFileAtomic(join(opts.outDir, 'manifest.json'), `${JSON.stringify(manifest, null, 2)}\n`);
  return manifest;
}

