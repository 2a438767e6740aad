import { attr } from '../../graph/ir.ts';
import { type GradRule, intAttr } from '../rule.ts';

/** Y = LogSoftmax(X): dX = dY - exp(Y) * sum(dY) along the axis. */
export const logSoftmax: GradRule = (ctx) => {
  const { b } = ctx;
  const axis = intAttr(ctx.node, 'axis', -1);
  const dY = ctx.gradOutputs[0]!;
  const sum = b.op('ReduceSum', [dY, b.constI([axis])], { keepdims: attr.int(1) }, 'grad_logsoftmax_sum');
  const p = b.op('Exp', [ctx.outputs[0]], {}, 'grad_logsoftmax_p');
  return [b.op('Sub', [dY, b.op('Mul', [p, sum], {}, 'grad_logsoftmax')], {}, `grad_${ctx.inputs[0]}`)];
};

/** Y = Softmax(X): dX = Y * (dY - sum(dY * Y)) along the axis. */
export const softmax: GradRule = (ctx) => {
  const { b } = ctx;
  const axis = intAttr(ctx.node, 'axis', -1);
  const y = ctx.outputs[0];
  const dY = ctx.gradOutputs[0]!;
  const sum = b.op('ReduceSum', [b.op('Mul', [dY, y], {}, 'grad_softmax'), b.constI([axis])], { keepdims: attr.int(1) }, 'grad_softmax_sum');
  return [b.op('Mul', [y, b.op('Sub', [dY, sum], {}, 'grad_softmax')], {}, `grad_${ctx.inputs[0]}`)];
};
