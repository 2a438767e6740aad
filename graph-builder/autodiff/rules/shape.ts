import { attr } from '../../graph/ir.ts';
import { type GradRule, intsAttr } from '../rule.ts';

/** Reshape and Flatten move no values: dX = dY reshaped to X's shape. */
export const reshape: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const dX = b.op('Reshape', [ctx.gradOutputs[0]!, b.op('Shape', [x], {}, `${x}_shape`)], {}, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/** Y = Transpose(X, perm): dX = Transpose(dY, inverse(perm)). */
export const transpose: GradRule = (ctx) => {
  const perm = intsAttr(ctx.node, 'perm', []);
  if (perm.length === 0) throw new Error(`autodiff: Transpose ${ctx.node.name}: perm must be given`);
  const inverse = perm.map((_, i) => perm.indexOf(i));
  return [ctx.b.op('Transpose', [ctx.gradOutputs[0]!], { perm: attr.ints(inverse) }, `grad_${ctx.inputs[0]}`)];
};
