/** The four rows the PyTorch comparison and the A/B benchmarks measure, and their batches. */
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
