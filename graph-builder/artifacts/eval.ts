import type { Analysis } from '../dsl/shapes.ts';
import { emitForward, emitNormalize } from '../forward.ts';
import { attr, GraphBuilder } from '../graph/ir.ts';
import { encodeModel } from '../graph/onnx.ts';
import { emitLoss, type LossKind } from '../losses.ts';
import { type ModelMeta, metadataProps } from './inference.ts';

/**
 * The eval graph: eval mode (no dropout, BatchNorm from running statistics), parameters as
 * inputs so a training run evaluates its current weights without rebuilding anything.
 * Inputs: every parameter and buffer, `images` uint8 [B,28,28], `labels` uint8 [B].
 * Outputs: `loss_sum` (summed over the batch), `correct`, `predicted` int64 [B].
 */
export function buildEvalModel(a: Analysis, loss: LossKind, meta: ModelMeta): Uint8Array {
  const b = new GraphBuilder('cnnlab_eval');
  for (const p of a.params) b.input(p.name, 'float32', p.shape);
  const images = b.input('images', 'uint8', ['B', 28, 28]);
  const labelsU8 = b.input('labels', 'uint8', ['B']);
  const pixels = b.op('Div', [b.op('Cast', [images], { to: attr.int(1) }), b.scalar(255)], {}, 'pixels');
  const image = b.op('Unsqueeze', [pixels, b.constI([1])], {}, 'image');
  b.note(image, 'float32', ['N', 1, 28, 28]);
  const scores = emitForward(b, a, emitNormalize(b, image, meta.mean, meta.std), { param: (n) => n });
  const labels = b.op('Cast', [labelsU8], { to: attr.int(7) }, 'labels_i64');
  const out = emitLoss(b, scores, labels, { kind: loss, reduction: 'sum' });
  for (const [name, value, dtype] of [['loss_sum', out.loss, 'float32'], ['correct', out.correct, 'float32'], ['predicted', out.predicted, 'int64']] as const) {
    b.reserve(name);
    b.graph.nodes.push({ op: 'Identity', name: `${name}_node`, inputs: [value], outputs: [name], attrs: {} });
    b.output(name, dtype, name === 'predicted' ? ['B'] : []);
  }
  return encodeModel(b.graph, { docString: `cnnlab ${meta.architecture} eval graph`, metadata: { ...metadataProps(a, meta), 'cnnlab.artifact': 'eval' } });
}
