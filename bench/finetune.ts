/**
 * cnnlab's side of bench/vs-pytorch.ts's fine-tuning rows: torchvision's ResNet-18 or MobileNetV2
 * (10 classes, random weights) exported to ONNX by bench/torch-finetune.py, imported as
 * `cnnlab train --model FILE.onnx` imports it, compiled for the CPU EP and trained on made-up
 * 3x224x224 images with SGD and momentum: the whole graph, or with `--freeze backbone` (the
 * whole graph with the backbone frozen; and the fast path, training/fit.ts: the features computed
 * once, then the head alone on them).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compile } from '../graph-builder/artifacts/compile.ts';
import type { ModelMeta } from '../graph-builder/artifacts/inference.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { frozenParams } from '../graph-builder/freeze.ts';
import { byteImageDims, elementCount, type Model } from '../graph-builder/model.ts';
import { featuresGraph, splitAtHead } from '../graph-builder/split.ts';
import { createRuntime } from '../runtime/ort.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';
import { loadModelSource } from '../training/api.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import type { FinetuneRow } from './rows.ts';

/** What one fine-tuning row measured: the train step's images/s, and for a frozen backbone the fast path's. */
export interface FinetuneRate {
  rate: number;
  /** Features computed once (the first epoch's extra work), then the head's train step (every later epoch). */
  fastPath?: { features: number; head: number };
}

/** Where the exported models are kept between runs. */
const MODEL_DIR = join(tmpdir(), 'cnnlab-bench-finetune-batchnorm');

/** Made-up uint8 pixels (a fixed sequence, so every run feeds the same). */
function pixels(n: number): Uint8Array {
  const out = new Uint8Array(n);
  let s = 12345;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1103515245) + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** K steps of B made-up examples (`images`: K * B images or feature tensors), labels 0..9, the row's lr and momentum. */
function batchOf(K: number, B: number, images: Uint8Array | Float32Array, row: FinetuneRow): StepBatch {
  const inputs = {
    images,
    labels: Uint8Array.from({ length: K * B }, (_, i) => (i * 7) % 10),
    lr: new Float32Array(K).fill(row.lr),
    momentum: new Float32Array(K).fill(row.momentum),
    dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)),
  };
  return { K, B, inputs };
}

/**
 * The row's ONNX model, exported by `python` (Debian's, with torchvision) on first use. Throws
 * with the exporter's last line where it fails.
 */
export function exportedModel(row: FinetuneRow, python: string): string {
  const file = join(MODEL_DIR, `${row.family}-${row.size}.onnx`);
  if (existsSync(file)) return file;
  const script = join(import.meta.dirname, 'torch-finetune.py');
  const out = spawnSync(python, [script, '--model', row.family, '--size', String(row.size), '--export', file], { encoding: 'utf8' });
  const why = out.error?.message ?? (out.status !== 0 ? out.stderr.trim().split('\n').pop() : undefined);
  if (why !== undefined) throw new Error(`exporting ${row.family} with ${python} ${script}: ${why}`);
  return file;
}

/** Images/s of `runs` runs of `batch` after one warm-up run. */
async function timeRuns(runner: StepRunner, batch: StepBatch, runs: number): Promise<number> {
  await runner.run(batch);
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await runner.run(batch);
  return (runs * batch.K * batch.B) / ((performance.now() - t0) / 1000);
}

/**
 * A fine-tuning row's model imported from `file`, its train step compiled for the CPU EP (its
 * Convs on the NCHWc kernels of block `nchwcBlock`, as `cnnlab train` does, where given), its
 * first parameters and its batch of K steps.
 */
export async function finetuneStep(row: FinetuneRow, file: string, nchwcBlock?: number) {
  const arch = await loadModelSource({ modelFile: file });
  const model = arch.model;
  const frozen = row.mode === 'frozen' ? frozenParams(model, 'backbone') : undefined;
  const spec = trainSpecFor(arch, { opt: 'sgd', momentum: row.momentum, weightDecay: 0 });
  const meta: ModelMeta = { architecture: row.family, dataset: 'made-up', classes: [], mean: 0, std: 1 };
  const recipe = { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta, target: 'cpu' as const, nchwcBlock };
  const built = compile(model, { ...recipe, frozen });
  const params = initParams(model, 0);
  const batch = batchOf(row.K, row.batch, pixels(row.K * row.batch * elementCount(byteImageDims(model))), row);
  return { model, frozen, recipe, built, params, batch };
}

/** cnnlab's images/s on a fine-tuning row: K steps per run, `row.steps` timed steps after one warm-up run. */
export async function cnnlabFinetune(row: FinetuneRow, file: string, threads: number): Promise<FinetuneRate> {
  const rt = await createRuntime({ ep: 'cpu', threads });
  const { model, frozen, recipe, built, params, batch } = await finetuneStep(row, file, rt.nchwcBlock);
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(params));
  const rate = await timeRuns(runner, batch, Math.max(1, Math.round(row.steps / row.K)));
  await runner.release();
  if (!frozen) return { rate };
  return { rate, fastPath: await fastPath(model, frozen, row, recipe, params, threads) };
}

/**
 * The fast path's two rates: the features graph (eval mode, batches of B, one warm-up batch) and
 * the head's train step on features (K = 8 steps per run as fit's default, 20 runs).
 */
async function fastPath(model: Model, frozen: Set<string>, row: FinetuneRow, recipe: Omit<Parameters<typeof compile>[1], 'frozen'>, params: ReturnType<typeof initParams>, threads: number): Promise<{ features: number; head: number }> {
  const split = splitAtHead(model, frozen);
  const rt = await createRuntime({ ep: 'cpu', threads });
  const session = await rt.createSession(featuresGraph(split, params, recipe.meta, 'bytes'));
  const images = new rt.ort.Tensor('uint8', pixels(row.batch * elementCount(byteImageDims(model))), [row.batch, ...byteImageDims(model)]);
  await session.run({ images });
  const t0 = performance.now();
  const batches = Math.max(1, Math.round(row.steps / 2));
  for (let i = 0; i < batches; i++) await session.run({ images });
  const features = (batches * row.batch) / ((performance.now() - t0) / 1000);
  await session.release();
  const head = compile(split.head, recipe);
  const runner = await StepRunner.create(rt, head.trainStep, head.iface, head.initialCheckpoint(params));
  const K = 8;
  const inputs = Float32Array.from(pixels(K * row.batch * elementCount(split.featureShape)), (v) => v / 255);
  const rate = await timeRuns(runner, batchOf(K, row.batch, inputs, row), 20);
  await runner.release();
  return { features, head: rate };
}
