import { attr } from '../../graph/ir.ts';
import { type GradRule, intAttr, intsAttr, staticShape } from '../rule.ts';

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

/** Y = Concat(X1, ..., Xn) along `axis`: dXi is dY's slice of Xi's extent on that axis. */
export const concat: GradRule = (ctx) => {
  const { b } = ctx;
  const shapes = ctx.inputs.map((v) => staticShape(ctx, v));
  const rank = shapes[0].length;
  const axis = (intAttr(ctx.node, 'axis', 0) + rank) % rank;
  let start = 0;
  return ctx.inputs.map((v, i) => {
    const extent = shapes[i][axis];
    if (typeof extent !== 'number') throw new Error(`autodiff: Concat ${ctx.node.name}: input ${v} needs a static size on axis ${axis}`);
    const from = start;
    start += extent;
    if (!ctx.needsGrad[i]) return undefined;
    const g = b.op('Slice', [ctx.gradOutputs[0]!, b.constI([from]), b.constI([from + extent]), b.constI([axis])], {}, `grad_${v}`);
    b.note(g, 'float32', shapes[i]);
    return g;
  });
};
