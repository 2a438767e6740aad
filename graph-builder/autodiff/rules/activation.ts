import { attrStr } from '../../ops/spec.ts';
import { floatAttr, type GradContext, type GradRule, unbroadcast } from '../rule.ts';
import { constantValues } from './elementwise.ts';

/**
 * A bound input's scalar value (Clip's min and max) from the Constant node or initializer that
 * holds it; undefined where the bound is absent (a missing input or the empty name '').
 */
function scalarInput(ctx: GradContext, i: number): number | undefined {
  const v = ctx.inputs[i];
  if (!v) return undefined;
  const values = constantValues(ctx, v);
  if (values?.length !== 1) throw new Error(`autodiff: ${ctx.node.op} ${ctx.node.name}: its bound ${v} must be a constant scalar`);
  return values[0];
}

/** A 0/1 float mask of `op`(x, threshold) for a Mul (see relu in elementwise.ts for why not Where). */
function mask(ctx: GradContext, op: 'Greater' | 'Less', x: string, threshold: number, hint: string): string {
  return ctx.b.cast(ctx.b.op(op, [x, ctx.b.scalar(threshold)], {}, hint), 'float32', `${hint}_f`);
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

/**
 * Y = min(max(X, lo), hi) (ReLU6 is Clip(0, 6)): dX = dY strictly inside (lo, hi), as dY times a
 * 0/1 mask; a missing bound ('' or no input) adds no test; bounds get no gradient.
 */
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
  return [inside ? b.op('Mul', [dY, b.cast(inside, 'float32', 'clip_inside_f')], {}, 'grad_clip') : dY];
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

/** Y = max(0, min(1, alpha X + beta)): dX = dY * alpha where 0 < Y < 1 (read off Y), 0 where it saturates. */
export const hardSigmoid: GradRule = (ctx) => {
  const { b } = ctx;
  const y = ctx.outputs[0];
  const linear = b.op('And', [b.op('Greater', [y, b.scalar(0)], {}, 'hsigmoid_above'), b.op('Less', [y, b.scalar(1)], {}, 'hsigmoid_below')], {}, 'hsigmoid_linear');
  const slope = b.op('Mul', [b.cast(linear, 'float32', 'hsigmoid_linear_f'), b.scalar(floatAttr(ctx.node, 'alpha', 0.2))], {}, 'hsigmoid_slope');
  return [b.op('Mul', [ctx.gradOutputs[0]!, slope], {}, 'grad_hard_sigmoid')];
};

/** Y = log(1 + exp(X)): dX = dY * sigmoid(X). */
export const softplus: GradRule = (ctx) => [ctx.b.op('Mul', [ctx.gradOutputs[0]!, ctx.b.op('Sigmoid', [ctx.inputs[0]], {}, 'softplus_slope')], {}, 'grad_softplus')];

/** Y = X / (1 + |X|): dX = dY / (1 + |X|)^2. */
export const softsign: GradRule = (ctx) => {
  const { b } = ctx;
  const denom = b.op('Add', [b.op('Abs', [ctx.inputs[0]], {}, 'softsign_abs'), b.scalar(1)], {}, 'softsign_denom');
  return [b.op('Div', [ctx.gradOutputs[0]!, b.op('Mul', [denom, denom], {}, 'softsign_denom_sq')], {}, 'grad_softsign')];
};

/**
 * The gradient of an op that is `above` X above 0 and has slope Y + offset below (the
 * exponential branch read off the output): dX = dY * (above + [X < 0] (Y + offset - above)).
 */
function exponentialBelowZero(ctx: GradContext, above: number, offset: number, hint: string): string {
  const { b } = ctx;
  const below = mask(ctx, 'Less', ctx.inputs[0], 0, `${hint}_below`);
  const step = b.op('Mul', [below, b.op('Add', [ctx.outputs[0], b.scalar(offset - above)], {}, `${hint}_step`)], {}, `${hint}_step`);
  return b.op('Mul', [ctx.gradOutputs[0]!, b.op('Add', [step, b.scalar(above)], {}, `${hint}_slope`)], {}, `grad_${hint}`);
}

/** Y = X above 0, alpha (exp(X) - 1) below: dX = dY above 0, dY * alpha exp(X) = dY * (Y + alpha) below. */
export const elu: GradRule = (ctx) => [exponentialBelowZero(ctx, 1, floatAttr(ctx.node, 'alpha', 1), 'elu')];

/** Y = gamma X above 0, gamma alpha (exp(X) - 1) below: dX = dY * gamma above 0, dY * (Y + gamma alpha) below. */
export const selu: GradRule = (ctx) => {
  const alpha = floatAttr(ctx.node, 'alpha', 1.67326319217681884765625);
  const gamma = floatAttr(ctx.node, 'gamma', 1.05070102214813232421875);
  return [exponentialBelowZero(ctx, gamma, gamma * alpha, 'selu')];
};

/**
 * Y = max(0, X) + min(0, alpha (exp(X / alpha) - 1)): dX = dY above 0 and dY exp(X / alpha) =
 * dY (1 + Y / alpha) below, both as dY * (1 + min(Y, 0) / alpha) (Y > 0 exactly above 0): no mask.
 */
export const celu: GradRule = (ctx) => {
  const { b } = ctx;
  const alpha = floatAttr(ctx.node, 'alpha', 1);
  const negativePart = b.op('Mul', [b.op('Min', [ctx.outputs[0], b.scalar(0)], {}, 'celu_negative'), b.scalar(1 / alpha)], {}, 'celu_negative');
  return [b.op('Mul', [ctx.gradOutputs[0]!, b.op('Add', [negativePart, b.scalar(1)], {}, 'celu_slope')], {}, 'grad_celu')];
};

/** Y = X above alpha, 0 otherwise: dX = dY * [X > alpha]. */
export const thresholdedRelu: GradRule = (ctx) => [
  ctx.b.op('Mul', [ctx.gradOutputs[0]!, mask(ctx, 'Greater', ctx.inputs[0], floatAttr(ctx.node, 'alpha', 1), 'thresholded_relu_mask')], {}, 'grad_thresholded_relu'),
];

/**
 * Y = X for X >= 0, slope * X below (slope broadcast to X's shape): dX = dY * (1 + [X < 0]
 * (slope - 1)); dSlope = dY * min(X, 0), summed back to the slope's shape.
 */
export const prelu: GradRule = (ctx) => {
  const { b } = ctx;
  const [x, slope] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  let dX: string | undefined;
  if (ctx.needsGrad[0]) {
    const step = b.op('Mul', [mask(ctx, 'Less', x, 0, 'prelu_below'), b.op('Sub', [slope, b.scalar(1)], {}, 'prelu_step')], {}, 'prelu_step');
    dX = b.op('Mul', [dY, b.op('Add', [step, b.scalar(1)], {}, 'prelu_slope')], {}, 'grad_prelu_x');
  }
  const dSlope = ctx.needsGrad[1] ? unbroadcast(ctx, b.op('Mul', [dY, b.op('Min', [x, b.scalar(0)], {}, 'prelu_negative')], {}, 'grad_prelu_slope'), slope, ctx.outputs[0]) : undefined;
  return [dX, dSlope];
};

/** Y = X tanh(softplus(X)): with T = tanh(softplus(X)), dX = dY * (T + X sigmoid(X) (1 - T^2)) (softplus' = sigmoid). */
export const mish: GradRule = (ctx) => {
  const { b } = ctx;
  const [x] = ctx.inputs;
  const t = b.op('Tanh', [b.op('Softplus', [x], {}, 'mish_softplus')], {}, 'mish_tanh');
  const sech2 = b.op('Sub', [b.scalar(1), b.op('Mul', [t, t], {}, 'mish_tanh_sq')], {}, 'mish_sech_sq');
  const inner = b.op('Mul', [b.op('Mul', [x, b.op('Sigmoid', [x], {}, 'mish_sigmoid')], {}, 'mish_inner'), sech2], {}, 'mish_inner');
  return [b.op('Mul', [ctx.gradOutputs[0]!, b.op('Add', [t, inner], {}, 'mish_slope')], {}, 'grad_mish')];
};

/** Y = erf(X): dX = dY * 2/sqrt(pi) exp(-X^2). */
export const erf: GradRule = (ctx) => {
  const { b } = ctx;
  const [x] = ctx.inputs;
  const bell = b.op('Exp', [b.op('Neg', [b.op('Mul', [x, x], {}, 'erf_sq')], {}, 'erf_sq')], {}, 'erf_bell');
  return [b.op('Mul', [ctx.gradOutputs[0]!, b.op('Mul', [bell, b.scalar(2 / Math.sqrt(Math.PI))], {}, 'erf_slope')], {}, 'grad_erf')];
};

/** sqrt(2/pi) and the cubic coefficient of Gelu's tanh form. */
const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;

/**
 * Gelu (opset 20; imports rewrite it into primitives, see ops/elementwise.ts). approximate 'none':
 * Y = X Phi(X), dX = dY * (Phi(X) + X phi(X)) with Phi(X) = (1 + erf(X / sqrt 2)) / 2 and
 * phi(X) = exp(-X^2 / 2) / sqrt(2 pi). 'tanh': Y = X (1 + T) / 2 with T = tanh(k (X + c X^3)),
 * dX = dY * ((1 + T) / 2 + X (1 - T^2) k (1 + 3 c X^2) / 2).
 */
export const gelu: GradRule = (ctx) => {
  const { b } = ctx;
  const [x] = ctx.inputs;
  const x2 = b.op('Mul', [x, x], {}, 'gelu_sq');
  let slope: string;
  if (attrStr(ctx.node, 'approximate', 'none') === 'tanh') {
    const cubic = b.op('Mul', [x, b.op('Add', [b.op('Mul', [x2, b.scalar(GELU_C)], {}, 'gelu_cubic'), b.scalar(1)], {}, 'gelu_cubic')], {}, 'gelu_cubic');
    const t = b.op('Tanh', [b.op('Mul', [cubic, b.scalar(GELU_K)], {}, 'gelu_inner')], {}, 'gelu_tanh');
    const du = b.op('Add', [b.op('Mul', [x2, b.scalar(3 * GELU_C * GELU_K)], {}, 'gelu_du'), b.scalar(GELU_K)], {}, 'gelu_du');
    const sech2 = b.op('Sub', [b.scalar(1), b.op('Mul', [t, t], {}, 'gelu_tanh_sq')], {}, 'gelu_sech_sq');
    const inner = b.op('Mul', [b.op('Mul', [x, b.scalar(0.5)], {}, 'gelu_half_x'), b.op('Mul', [sech2, du], {}, 'gelu_inner_slope')], {}, 'gelu_inner_slope');
    const outer = b.op('Add', [b.op('Mul', [t, b.scalar(0.5)], {}, 'gelu_outer'), b.scalar(0.5)], {}, 'gelu_outer');
    slope = b.op('Add', [outer, inner], {}, 'gelu_slope');
  } else {
    const cdf = b.op('Add', [b.op('Mul', [b.op('Erf', [b.op('Mul', [x, b.scalar(Math.SQRT1_2)], {}, 'gelu_scaled')], {}, 'gelu_erf'), b.scalar(0.5)], {}, 'gelu_cdf'), b.scalar(0.5)], {}, 'gelu_cdf');
    const pdf = b.op('Mul', [b.op('Exp', [b.op('Mul', [x2, b.scalar(-0.5)], {}, 'gelu_bell')], {}, 'gelu_bell'), b.scalar(1 / Math.sqrt(2 * Math.PI))], {}, 'gelu_pdf');
    slope = b.op('Add', [cdf, b.op('Mul', [x, pdf], {}, 'gelu_x_pdf')], {}, 'gelu_slope');
  }
  return [b.op('Mul', [ctx.gradOutputs[0]!, slope], {}, 'grad_gelu')];
};
