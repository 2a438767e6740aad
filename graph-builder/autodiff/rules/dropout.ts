import { attr } from '../../graph/ir.ts';
import type { GradRule } from '../rule.ts';

/**
 * Y, mask = Dropout(X, ratio, training_mode): dX = dY * mask / (1 - ratio).
 * cnnlab's own training graphs draw masks from a host-fed seed (see train-mode.ts) and so
 * differentiate a Mul; this rule serves graphs that use the Dropout op itself.
 */
export const dropout: GradRule = (ctx) => {
  const { b, node } = ctx;
  if (ctx.outputs.length < 2) throw new Error(`autodiff: Dropout ${node.name} must be emitted with its mask output`);
  const ratio = ctx.inputs[1];
  const keep = ratio ? b.op('Sub', [b.scalar(1), ratio], {}, 'dropout_keep') : b.scalar(0.5);
  const zero = b.scalar(0);
  // A ratio of 1 drops everything: the gradient is 0, not 0/0.
  const scale = b.op('Where', [b.op('Greater', [keep, zero]), b.op('Div', [b.scalar(1), b.op('Max', [keep, b.scalar(1e-12)])]), zero], {}, 'dropout_scale');
  const mask = b.cast(ctx.outputs[1], 'float32', 'dropout_mask_f');
  return [b.op('Mul', [b.op('Mul', [ctx.gradOutputs[0]!, mask], {}, 'grad_dropout'), scale], {}, `grad_${ctx.inputs[0]}`), undefined, undefined];
};
