import { type GradRule, unbroadcast } from '../rule.ts';

/** Y = A + B: dA = dY, dB = dY, each summed back over broadcast axes. */
export const add: GradRule = (ctx) => {
  const [a, b] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  return [ctx.needsGrad[0] ? unbroadcast(ctx, dY, a, ctx.outputs[0]) : undefined, ctx.needsGrad[1] ? unbroadcast(ctx, dY, b, ctx.outputs[0]) : undefined];
};

/** Y = A - B: dA = dY, dB = -dY. */
export const sub: GradRule = (ctx) => {
  const [a, b] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  return [
    ctx.needsGrad[0] ? unbroadcast(ctx, dY, a, ctx.outputs[0]) : undefined,
    ctx.needsGrad[1] ? unbroadcast(ctx, ctx.b.op('Neg', [dY], {}, 'grad_neg'), b, ctx.outputs[0]) : undefined,
  ];
};

/** Y = A * B: dA = dY * B, dB = dY * A. */
export const mul: GradRule = (ctx) => {
  const [a, b] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const y = ctx.outputs[0];
  return [
    ctx.needsGrad[0] ? unbroadcast(ctx, ctx.b.op('Mul', [dY, b], {}, 'grad_mul'), a, y) : undefined,
    ctx.needsGrad[1] ? unbroadcast(ctx, ctx.b.op('Mul', [dY, a], {}, 'grad_mul'), b, y) : undefined,
  ];
};

/** Y = A / B: dA = dY / B, dB = -dY * Y / B. */
export const div: GradRule = (ctx) => {
  const { b: g } = ctx;
  const [a, b] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const y = ctx.outputs[0];
  const dA = ctx.needsGrad[0] || ctx.needsGrad[1] ? g.op('Div', [dY, b], {}, 'grad_div') : undefined;
  return [
    ctx.needsGrad[0] ? unbroadcast(ctx, dA!, a, y) : undefined,
    ctx.needsGrad[1] ? unbroadcast(ctx, g.op('Neg', [g.op('Mul', [dA!, y], {}, 'grad_div')], {}, 'grad_div'), b, y) : undefined,
  ];
};

/** Y = -X. */
export const neg: GradRule = (ctx) => [ctx.b.op('Neg', [ctx.gradOutputs[0]!], {}, 'grad_neg')];

/** Y = X. */
export const identity: GradRule = (ctx) => [ctx.gradOutputs[0]];

/** Y = sqrt(X): dX = dY / (2 Y). */
export const sqrt: GradRule = (ctx) => {
  const { b } = ctx;
  const twoY = b.op('Mul', [ctx.outputs[0], b.scalar(2)], {}, 'grad_sqrt');
  return [b.op('Div', [ctx.gradOutputs[0]!, twoY], {}, 'grad_sqrt')];
};

/** Y = exp(X): dX = dY * Y. */
export const exp: GradRule = (ctx) => [ctx.b.op('Mul', [ctx.gradOutputs[0]!, ctx.outputs[0]], {}, 'grad_exp')];

/** Y = log(X): dX = dY / X. */
export const log: GradRule = (ctx) => [ctx.b.op('Div', [ctx.gradOutputs[0]!, ctx.inputs[0]], {}, 'grad_log')];

/** Y = max(X, 0): dX = dY where Y > 0. */
export const relu: GradRule = (ctx) => {
  const { b } = ctx;
  const zero = b.scalar(0);
  const positive = b.op('Greater', [ctx.outputs[0], zero], {}, 'relu_mask');
  return [b.op('Where', [positive, ctx.gradOutputs[0]!, zero], {}, 'grad_relu')];
};
