import { attr } from '../../graph/ir.ts';
import { constInts, type GradContext, type GradRule, intAttr } from '../rule.ts';

/**
 * The reduced axes as the node gives them (input 1, absent or empty for all), and whether it
 * reduces nothing (noop_with_empty_axes with no axes: Y = X).
 */
function axesOf(ctx: GradContext): { axes: number[]; noop: boolean } {
  const axes = ctx.inputs[1] ? constInts(ctx, ctx.inputs[1]) : [];
  return { axes, noop: axes.length === 0 && intAttr(ctx.node, 'noop_with_empty_axes', 0) === 1 };
}

/** A reduced value (Y, dY) with the reduced axes put back as 1s (keepdims 0), so that it broadcasts against X. */
function kept(ctx: GradContext, v: string): string {
  const { axes } = axesOf(ctx);
  // Without axes everything is reduced: the scalar broadcasts as it is.
  if (intAttr(ctx.node, 'keepdims', 1) === 1 || axes.length === 0) return v;
  return ctx.b.op('Unsqueeze', [v, ctx.b.constI(axes)], {}, `${v}_kept`);
}

/** dY brought back to X's rank and broadcast to X's shape. */
function spread(ctx: GradContext): string {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const dY = ctx.gradOutputs[0]!;
  if (axesOf(ctx).noop) return dY;
  return b.op('Expand', [kept(ctx, dY), b.op('Shape', [x], {}, `${x}_shape`)], {}, `grad_${x}`);
}

/** The node's axes as an input of a new reduction (none: all axes). */
function sameAxes(ctx: GradContext): string[] {
  const { axes } = axesOf(ctx);
  return axes.length ? [ctx.b.constI(axes)] : [];
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

/**
 * Y = ReduceMax(X, axes) or ReduceMin: dY goes to the elements equal to their Y, split evenly
 * among ties (a subgradient; PyTorch's amax/amin split the same way, max(dim) picks one index).
 */
export const reduceExtreme: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  if (axesOf(ctx).noop) return [ctx.gradOutputs[0], undefined];
  const mask = b.cast(b.op('Equal', [x, kept(ctx, ctx.outputs[0])], {}, `${x}_is_extreme`), 'float32');
  const ties = b.op('ReduceSum', [mask, ...sameAxes(ctx)], { keepdims: attr.int(1) }, `${x}_extreme_ties`);
  const share = b.op('Div', [kept(ctx, ctx.gradOutputs[0]!), ties], {}, `grad_${x}_per_tie`);
  return [b.op('Mul', [mask, share], {}, `grad_${x}`), undefined];
};

/** Y = ReduceSumSquare(X, axes) = Σ X²: dX = 2·X·dY. */
export const reduceSumSquare: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  return [b.op('Mul', [b.op('Mul', [x, b.scalar(2)], {}, `${x}_twice`), spread(ctx)], {}, `grad_${x}`), undefined];
};

/** Y = ReduceL2(X, axes) = sqrt(Σ X²): dX = X·dY / Y, and 0 where Y = 0 (then X = 0 there too). */
export const reduceL2: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const y = kept(ctx, ctx.outputs[0]);
  const perNorm = b.op('Div', [kept(ctx, ctx.gradOutputs[0]!), y], {}, `grad_${x}_per_norm`);
  const safe = b.op('Where', [b.op('Greater', [y, b.scalar(0)], {}, `${x}_norm_positive`), perNorm, b.scalar(0)], {}, `grad_${x}_per_norm`);
  return [b.op('Mul', [x, safe], {}, `grad_${x}`), undefined];
};

/** Y = ReduceLogSumExp(X, axes): dX = exp(X − Y)·dY, the softmax over the reduced axes. */
export const reduceLogSumExp: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const softmax = b.op('Exp', [b.op('Sub', [x, kept(ctx, ctx.outputs[0])], {}, `${x}_minus_lse`)], {}, `${x}_softmax`);
  return [b.op('Mul', [softmax, kept(ctx, ctx.gradOutputs[0]!)], {}, `grad_${x}`), undefined];
};
