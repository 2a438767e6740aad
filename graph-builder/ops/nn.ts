import { dropout } from '../autodiff/rules/dropout.ts';
import { gemm, matmul } from '../autodiff/rules/matmul.ts';
import { logSoftmax, softmax } from '../autodiff/rules/softmax.ts';
import { attr, type Node } from '../graph/ir.ts';
import { attrInt, elements, type NormalizeContext, type OpTable, sameShape } from './spec.ts';


/**
 * Before opset 13 (Log)Softmax flattened its input to 2-D at `axis` (default 1) and normalised
 * over everything after it; from 13 on it normalises over `axis` alone (default -1). The two
 * agree where `axis` is the last axis, which an explicit attribute makes so.
 */
function softmaxAxis(node: Node, ctx: NormalizeContext): Node[] {
  if (ctx.opset >= 13) return [node];
  const rank = ctx.shape(node.inputs[0])?.length ?? 2;
  const axis = attrInt(node, 'axis', 1);
  if ((axis + rank) % rank !== rank - 1) throw new Error(`normalises over axes ${axis}.. of a rank-${rank} input (opset ${ctx.opset}'s form); cnnlab reads it over the last axis only`);
  return [{ ...node, attrs: { ...node.attrs, axis: attr.int(-1) } }];
}

export const NN_OPS: OpTable = {
  Gemm: {
    shape: (n, c) => {
      const a = c.shape(n.inputs[0]);
      const b = c.shape(n.inputs[1]);
      if (a.length !== 2 || b.length !== 2) throw new Error(`needs 2-D inputs, found [${a}] and [${b}]`);
      return [attrInt(n, 'transA', 0) ? a[1] : a[0], attrInt(n, 'transB', 0) ? b[0] : b[1]];
    },
    grad: gemm,
    weightInputs: (i) => i === 1 || i === 2,
    flops: (n, c) => 2 * elements(c.shape(n.inputs[1])),
  },
  MatMul: {
    shape: (n, c) => {
      const a = c.shape(n.inputs[0]);
      const b = c.shape(n.inputs[1]);
      if (a.length !== 2 || b.length !== 2) throw new Error(`supports 2-D inputs only, found [${a}] and [${b}]`);
      return [a[0], b[1]];
    },
    grad: matmul,
    weightInputs: (i) => i === 1,
    flops: (n, c) => 2 * elements(c.shape(n.inputs[1])),
  },
  Softmax: { shape: sameShape, grad: softmax, normalize: softmaxAxis },
  LogSoftmax: { shape: sameShape, grad: logSoftmax, normalize: softmaxAxis },
  // Lowered by the train step (hashed masks); the rule serves graphs that use the op itself.
  Dropout: { shape: sameShape, grad: dropout, constantInputs: (i) => i > 0 },
  // Lowered by the train step to the BatchNormTraining composite; eval graphs use the op as it is.
  BatchNormalization: { shape: sameShape, constantInputs: (i) => i >= 3, weightInputs: (i) => i === 1 || i === 2 },
};
