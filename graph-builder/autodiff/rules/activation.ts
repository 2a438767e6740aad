import { floatAttr, type GradContext, type GradRule } from '../rule.ts';

/** A constant input's scalar value (Clip's min and max), from the Constant node that makes it. */
function scalarInput(ctx: GradContext, i: number): number | undefined {
  const v = ctx.inputs[i];
  if (!v) return undefined;
  const producer = ctx.b.graph.nodes.find((n) => n.outputs.includes(v));
  const t = producer?.op === 'Constant' ? producer.attrs.value : undefined;
  if (t?.kind !== 'tensor' || t.value.data.length !== 1) throw new Error(`autodiff: Clip ${ctx.node.name}: its bound ${v} must be a constant scalar`);
  return Number(t.value.data[0]);
}

/** Y = X for X >= 0, alpha X below: dX = dY * (X >= 0 ? 1 : alpha). */
export const leakyRelu: GradRule = (ctx) => {
  const { b } = ctx;
  const alpha = floatAttr(ctx.node, 'alpha', 0.01);
  const slope = b.op('Where', [b.op('Greater', [ctx.inputs[0], b.scalar(0)], {}, 'leaky_mask'), b.scalar(1), b.scalar(alpha)], {}, 'leaky_slope');
  return [b.op('Mul', [ctx.gradOutputs[0]!, slope], {}, 'grad_leaky_relu')];
};

/** Y = 1 / (1 + exp(-X)): dX = dY * Y * (1 - Y). */
export const sigmoid: GradRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.outputs[0];
  return [b.op('Mul', [ctx.gradOutputs[0]!, b.op('Mul', [y, b.op('Sub', [b.scalar(1), y], {}, 'grad_sigmoid')], {}, 'grad_sigmoid')], {}, 'grad_sigmoid')];
};

/** Y = tanh(X): dX = dY * (1 - Y^2). */
export const tanh: GradRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.outputs[0];
  return [b.op('Mul', [ctx.gradOutputs[0]!, b.op('Sub', [b.scalar(1), b.op('Mul', [y, y], {}, 'grad_tanh')], {}, 'grad_tanh')], {}, 'grad_tanh')];
};

/** Y = min(max(X, lo), hi) (ReLU6 is Clip(0, 6)): dX = dY strictly inside (lo, hi); bounds get no gradient. */
export const clip: GradRule = (ctx) => {
  const { b } = ctx;
  const [x] = ctx.inputs;
  const lo = scalarInput(ctx, 1);
  const hi = scalarInput(ctx, 2);
  let inside: string | undefined;
  const and = (m: string) => (inside = inside ? b.op('And', [inside, m], {}, 'clip_inside') : m);
  if (lo !== undefined) and(b.op('Greater', [x, b.scalar(lo)], {}, 'clip_above'));
  if (hi !== undefined) and(b.op('Less', [x, b.scalar(hi)], {}, 'clip_below'));
  const dY = ctx.gradOutputs[0]!;
  return [inside ? b.op('Where', [inside, dY, b.scalar(0)], {}, 'grad_clip') : dY];
};

/** Y = X * relu6(X + 3) / 6: dX = dY * (0 below -3; (2X + 3) / 6 in between; 1 above 3). */
export const hardSwish: GradRule = (ctx) => {
  const { b } = ctx;
  const [x] = ctx.inputs;
  const middle = b.op('Div', [b.op('Add', [b.op('Mul', [x, b.scalar(2)], {}, 'hswish'), b.scalar(3)], {}, 'hswish'), b.scalar(6)], {}, 'hswish_slope');
  const upper = b.op('Where', [b.op('Greater', [x, b.scalar(3)], {}, 'hswish_high'), b.scalar(1), middle], {}, 'hswish_slope');
  const slope = b.op('Where', [b.op('Less', [x, b.scalar(-3)], {}, 'hswish_low'), b.scalar(0), upper], {}, 'hswish_slope');
  return [b.op('Mul', [ctx.gradOutputs[0]!, slope], {}, 'grad_hard_swish')];
};
