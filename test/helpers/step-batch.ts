/**
 * A train step's batch for the tests that compare two graphs of one model (test/webgpu.test.ts,
 * test/nchwc.test.ts): MNIST digits for a 28x28 ten-class model, made-up images and labels otherwise.
 */
import { loadDataset } from '../../datasets/sources.ts';
import { elementCount, type Model } from '../../graph-builder/model.ts';
import type { StepBatch } from '../../runtime/step-runner.ts';

const mnist = await loadDataset('mnist', { env: {} });

/** K steps of B images (lr 0.05, momentum 0.9, dropout seeds 0..K-1). */
export function stepBatch(model: Model, K: number, B: number): StepBatch {
  const size = elementCount(model.inputShape);
  const digits = size === 784 && model.classes === 10;
  return {
    K,
    B,
    inputs: {
      images: digits ? mnist.train.images.slice(0, K * B * size) : Uint8Array.from({ length: K * B * size }, (_, i) => (i * 2654435761) >>> 24),
      labels: digits ? mnist.train.labels.slice(0, K * B) : Uint8Array.from({ length: K * B }, (_, i) => i % model.classes),
      lr: new Float32Array(K).fill(0.05),
      momentum: new Float32Array(K).fill(0.9),
      dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i)),
    },
  };
}
