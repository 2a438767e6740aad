/** The rows the PyTorch comparison measures (the four seed rows are also the A/B benchmarks'), and their batches. */
import type { Split } from '../datasets/sources.ts';
import type { OptimizerName } from '../training/optimizers/index.ts';
import type { StepBatch } from '../runtime/step-runner.ts';

export interface Row {
  name: string;
  arch: string;
  batch: number;
  opt: OptimizerName;
  lr: number;
  steps: number;
  dataset: 'mnist' | 'fashion-mnist';
}

export const ROWS: Row[] = [
  { name: 'partB b64 SGD', arch: 'partB', batch: 64, opt: 'sgd', lr: 0.05, steps: 200, dataset: 'mnist' },
  { name: 'partB b600 Adam', arch: 'partB', batch: 600, opt: 'adam', lr: 1e-3, steps: 40, dataset: 'mnist' },
  { name: 'eva-best b128 SGD', arch: 'eva-best', batch: 128, opt: 'sgd', lr: 0.01, steps: 100, dataset: 'mnist' },
  { name: 'fashion-best b128 SGD', arch: 'fashion-best', batch: 128, opt: 'sgd', lr: 0.01, steps: 60, dataset: 'fashion-mnist' },
];

/**
 * A fine-tuning row: a torchvision classifier (10-class head) at 3 x size x size, SGD with
 * momentum; 'full' trains every parameter, 'frozen' the head alone (--freeze backbone).
 */
export interface FinetuneRow {
  name: string;
  family: 'resnet18' | 'mobilenet_v2';
  mode: 'full' | 'frozen';
  size: number;
  batch: number;
  lr: number;
  momentum: number;
  /** Timed steps after a warm-up run (cnnlab) or warm-up steps (PyTorch). */
  steps: number;
  /** cnnlab's steps per run. */
  K: number;
}

/**
 * ResNet-18 and MobileNetV2 at 224x224, batch 32. A step takes 1-8 s on two threads (PyTorch,
 * 2026-11-30), so 4 timed steps keep one round of all rows within about 5 minutes.
 */
export const FINETUNE_ROWS: FinetuneRow[] = (['resnet18', 'mobilenet_v2'] as const).flatMap((family) =>
  (['full', 'frozen'] as const).map((mode) => ({ name: `${family === 'resnet18' ? 'ResNet-18' : 'MobileNetV2'} 224 b32 ${mode}`, family, mode, size: 224, batch: 32, lr: 0.01, momentum: 0.9, steps: 4, K: 1 })),
);

/** The WebGPU row (cnnlab alone): partA, a small batch and few steps, as lavapipe runs partA's step at about 1 image/s. */
export const WEBGPU_ROW: Row = { name: 'partA b16 SGD --ep webgpu', arch: 'partA', batch: 16, opt: 'sgd', lr: 0.05, steps: 4, dataset: 'mnist' };

/** Consecutive chunks of K steps of a row's batches from a split, wrapping around at its end. */
export function chunker(train: Split, r: Row, K: number): () => StepBatch {
  let offset = 0;
  return () => {
    const n = K * r.batch;
    if (offset + n > train.count) offset = 0;
    const b = {
      K,
      B: r.batch,
      inputs: {
        images: train.images.slice(offset * 784, (offset + n) * 784),
        labels: train.labels.slice(offset, offset + n),
        lr: new Float32Array(K).fill(r.lr),
        momentum: new Float32Array(K).fill(r.opt === 'adam' ? 0.9 : 0),
        dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(offset + i)),
      },
    };
    offset += n;
    return b;
  };
}
