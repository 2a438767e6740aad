import { attr } from '../../graph/ir.ts';
import { constInts, type GradContext, type GradRule, intAttr } from '../rule.ts';

/** dY brought back to X's rank (re-inserting reduced axes) and broadcast to X's shape. */
function spread(ctx: GradContext): string {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  let g = ctx.gradOutputs[0]!;
  // Without axes everything is reduced and the scalar broadcasts as it is.
  if (intAttr(node, 'keepdims', 1) === 0 && ctx.inputs.length > 1 && ctx.inputs[1] !== '') {
    g = b.op('Unsqueeze', [g, b.constI(constInts(ctx, ctx.inputs[1]))], {}, `grad_${x}`);
  }
  return b.op('Expand', [g, b.op('Shape', [x], {}, `${x}_shape`)], {}, `grad_${x}`);
}

/** Y = ReduceSum(X, axes): every X element gets its sum's gradient. */
export const reduceSum: GradRule = (ctx) => [spread(ctx), undefined];

/**
 * Y = ReduceMean(X, axes): as ReduceSum, divided by the count of reduced elements, taken as
 * Size(X) / Size(Y) so that a dynamic batch dimension is handled.
 */
export const reduceMean: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const toFloat = (v: string) => b.cast(b.op('Size', [v]), 'float32');
  const count = b.op('Div', [toFloat(x), toFloat(ctx.outputs[0])], {}, `${x}_reduced_count`);
  return [b.op('Div', [spread(ctx), count], {}, `grad_${x}`), undefined];
};
