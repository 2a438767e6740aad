import { attr, type GraphBuilder } from '../../graph/ir.ts';
import { normAxis } from '../../ops/spec.ts';
import { floatAttr, type GradContext, type GradRule, intAttr, staticShape, unbroadcast } from '../rule.ts';

const range = (from: number, to: number) => Array.from({ length: Math.max(0, to - from) }, (_, i) => from + i);

/** X̂ = (X − mean)·inv with inv = 1/sqrt(var + eps), mean and (biased) var over `axes`, recomputed from X. */
function standardize(b: GraphBuilder, x: string, axes: string, eps: number): { xhat: string; inv: string } {
  const keep = { keepdims: attr.int(1) };
  const centred = b.op('Sub', [x, b.op('ReduceMean', [x, axes], keep, `${x}_mean`)], {}, `${x}_centred`);
  const variance = b.op('ReduceMean', [b.op('Mul', [centred, centred], {}, `${x}_sq_dev`), axes], keep, `${x}_var`);
  const inv = b.op('Reciprocal', [b.op('Sqrt', [b.op('Add', [variance, b.scalar(eps)], {}, `${x}_var_eps`)], {}, `${x}_std`)], {}, `${x}_inv_std`);
  return { xhat: b.op('Mul', [centred, inv], {}, `${x}_hat`), inv };
}

/**
 * dX through X̂ = (X − mean)·inv over `axes`, given G = dL/dX̂: inv·(G − mean(G) − X̂·mean(G·X̂)),
 * the mean's and the variance's gradients folded in.
 */
function throughStandardize(b: GraphBuilder, g: string, xhat: string, inv: string, axes: string, hint: string): string {
  const keep = { keepdims: attr.int(1) };
  const meanG = b.op('ReduceMean', [g, axes], keep, `${hint}_mean_g`);
  const meanGX = b.op('ReduceMean', [b.op('Mul', [g, xhat], {}, `${hint}_g_xhat`), axes], keep, `${hint}_mean_g_xhat`);
  const centred = b.op('Sub', [b.op('Sub', [g, meanG], {}, `${hint}_g_centred`), b.op('Mul', [xhat, meanGX], {}, `${hint}_via_var`)], {}, hint);
  return b.op('Mul', [centred, inv], {}, hint);
}

/** Only Y carries a gradient (Mean and InvStdDev are saved statistics). */
function onlyY(ctx: GradContext): void {
  if (ctx.gradOutputs.slice(1).some((g) => g !== undefined)) throw new Error(`autodiff: ${ctx.node.op} ${ctx.node.name}: only Y carries a gradient`);
}

/**
 * Y = X̂·Scale + B, X̂ normalising X over the axes from `axis` on (LayerNormalization): dB = Σ dY
 * and dScale = Σ dY·X̂ over the leading axes (and any Scale and B broadcast over), dX through X̂
 * with G = dY·Scale. X̂ comes from the node's Mean and InvStdDev outputs where it has them,
 * else it is recomputed from X.
 */
export const layerNormalization: GradRule = (ctx) => {
  const { b, node } = ctx;
  onlyY(ctx);
  const [x, scale, bias] = ctx.inputs;
  const xs = staticShape(ctx, x);
  const axes = b.constI(range(normAxis(intAttr(node, 'axis', -1), xs.length), xs.length));
  const dY = ctx.gradOutputs[0]!;
  const [, mean, invStd] = ctx.outputs;
  const saved = mean && invStd ? { xhat: b.op('Mul', [b.op('Sub', [x, mean], {}, `${x}_centred`), invStd], {}, `${x}_hat`), inv: invStd } : undefined;
  const { xhat, inv } = saved ?? standardize(b, x, axes, floatAttr(node, 'epsilon', 1e-5));
  b.note(xhat, 'float32', xs);
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (ctx.needsGrad[1]) {
    const dyXhat = b.op('Mul', [dY, xhat], {}, `grad_${scale}_full`);
    b.note(dyXhat, 'float32', xs);
    out[1] = unbroadcast(ctx, dyXhat, scale, x);
  }
  if (bias && ctx.needsGrad[2]) out[2] = unbroadcast(ctx, dY, bias, x);
  if (ctx.needsGrad[0]) {
    out[0] = throughStandardize(b, b.op('Mul', [dY, scale], {}, `grad_${x}_xhat`), xhat, inv, axes, `grad_${x}`);
    b.note(out[0], 'float32', xs);
  }
  return out;
};

/**
 * Y = X̂·scale + B with X [N, C, ...] normalised per (n, c) over the axes after C, scale and B
 * of [C]: dB = Σ dY and dScale = Σ dY·X̂ over N and those axes, dX through X̂ with
 * G = dY·scale. X̂ is recomputed from X.
 */
function perChannel(ctx: GradContext, x: string, dY: string, rank: number, hint: string): (string | undefined)[] {
  const { b, node } = ctx;
  const scale = ctx.inputs[1];
  const spatial = b.constI(range(2, rank));
  const { xhat, inv } = standardize(b, x, spatial, floatAttr(node, 'epsilon', 1e-5));
  const others = () => b.constI([0, ...range(2, rank)]);
  const sum = (v: string, name: string) => b.op('ReduceSum', [v, others()], { keepdims: attr.int(0) }, name);
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (ctx.needsGrad[1]) out[1] = sum(b.op('Mul', [dY, xhat], {}, `grad_${scale}_full`), `grad_${scale}`);
  if (ctx.needsGrad[2]) out[2] = sum(dY, `grad_${ctx.inputs[2]}`);
  if (ctx.needsGrad[0]) {
    const perC = b.op('Unsqueeze', [scale, b.constI(range(1, rank - 1))], {}, `${scale}_per_channel`);
    out[0] = throughStandardize(b, b.op('Mul', [dY, perC], {}, `${hint}_xhat`), xhat, inv, spatial, hint);
  }
  [1, 2].forEach((i) => out[i] && b.note(out[i]!, 'float32', staticShape(ctx, ctx.inputs[i])));
  return out;
}

/** Y = InstanceNormalization(X, scale, B): each (n, c) slice normalised over H, W (perChannel). */
export const instanceNormalization: GradRule = (ctx) => {
  const x = ctx.inputs[0];
  const xs = staticShape(ctx, x);
  const out = perChannel(ctx, x, ctx.gradOutputs[0]!, xs.length, `grad_${x}`);
  if (out[0]) ctx.b.note(out[0], 'float32', xs);
  return out;
};

/**
 * Y = GroupNormalization(X, scale, B) as opset 18 defines it (scale and B of [num_groups]): X
 * viewed as [N, G, C/G·H·W] is an instance normalisation of G channels, so perChannel on that
 * view, and dX reshaped back.
 */
export const groupNormalization: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const xs = staticShape(ctx, x);
  const groups = intAttr(node, 'num_groups', 0);
  if (groups < 1) throw new Error(`autodiff: GroupNormalization ${node.name} needs num_groups`);
  const view = (v: string) => b.op('Reshape', [v, b.constI([0, groups, -1])], {}, `${v}_groups`);
  const out = perChannel(ctx, view(x), view(ctx.gradOutputs[0]!), 3, `grad_${x}_groups`);
  if (out[0]) {
    out[0] = b.op('Reshape', [out[0], b.op('Shape', [x], {}, `${x}_shape`)], {}, `grad_${x}`);
    b.note(out[0], 'float32', xs);
  }
  return out;
};
