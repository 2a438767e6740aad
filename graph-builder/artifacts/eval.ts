import { byteImageDims, type Model } from '../model.ts';
import { emitForward, emitImageFromBytes, emitNormalize } from '../forward.ts';
import { attr, GraphBuilder } from '../graph/ir.ts';
import { encodeModel } from '../graph/onnx.ts';
import { emitLoss, type LossKind } from '../losses.ts';
import { type ModelMeta, metadataProps } from './inference.ts';
import { writeModelCard } from './model-card.ts';
import { lowerConvsToNchwc } from './nchwc.ts';

/**
 * The eval graph: eval mode (no dropout, BatchNorm from running statistics), parameters as
 * inputs so a training run evaluates its current weights without rebuilding anything.
 * Inputs: every parameter and buffer, `images` uint8 [B,H,W] (grey) or [B,C,H,W], `labels` uint8 [B].
 * Outputs: `loss_sum` (summed over the batch), `correct`, `predicted` int64 [B]. `nchwcBlock`: its
 * Convs on the CPU EP's NCHWc kernels (artifacts/nchwc.ts; onnxruntime's optimiser does not
 * rewrite convs whose filters are inputs).
 */
export function buildEvalModel(a: Model, loss: LossKind, meta: ModelMeta, nchwcBlock?: number): Uint8Array {
  const b = new GraphBuilder('cnnlab_eval');
  for (const p of a.params) b.input(p.name, 'float32', p.shape);
  const images = b.input('images', 'uint8', ['B', ...byteImageDims(a)]);
  const labelsU8 = b.input('labels', 'uint8', ['B']);
  const names = ['loss_sum', 'correct', 'predicted'];
  for (const n of names) b.reserve(n);
  const image = emitImageFromBytes(b, images, a.inputShape, meta.inputRange);
  const scores = emitForward(b, a, emitNormalize(b, image, meta.mean, meta.std), { param: (n) => n });
  const labels = b.cast(labelsU8, 'int64', 'labels_i64');
  const out = emitLoss(b, scores, labels, { kind: loss, reduction: 'sum', classes: a.classes });
  b.expose(out.loss, 'loss_sum', 'float32', []);
  b.expose(out.correct, 'correct', 'float32', []);
  b.expose(out.predicted, 'predicted', 'int64', ['B']);
  if (nchwcBlock) lowerConvsToNchwc(b, nchwcBlock);
  return encodeModel(b.graph, { docString: `cnnlab ${meta.architecture} eval graph`, metadata: { ...metadataProps(a, meta), ...writeModelCard({ artifact: 'eval' }) } });
}
