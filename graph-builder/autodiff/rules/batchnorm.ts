import { attr } from '../../graph/ir.ts';
import { type GradRule, staticShape } from '../rule.ts';

/**
 * Y = BatchNormTraining(X, gamma, beta): the composite train-mode.ts emits from standard ops,
 * with outputs Y, X̂ (X normalised by the batch statistics) and k = gamma / σ per channel.
 * Over the M = N·H·W values of each channel: dbeta = Σ dY, dgamma = Σ dY·X̂ and
 * dX = k·dY − X̂·(k·dgamma/M) − k·dbeta/M (the mean's and variance's gradients folded in):
 * five full-size passes, where differentiating the primitives one by one took about fourteen.
 */
export const batchNormTraining: GradRule = (ctx) => {
  const { b } = ctx;
  const [x, gamma] = ctx.inputs;
  const [, xhat, k] = ctx.outputs;
  if (ctx.gradOutputs.slice(1).some((g) => g !== undefined)) throw new Error(`autodiff: ${ctx.node.name}: only Y carries a gradient`);
  const dY = ctx.gradOutputs[0]!;
  const c = staticShape(ctx, gamma)[0] as number;
  const axes = b.constI([0, 2, 3]);
  const perChannel = (v: string) => b.op('Reshape', [v, b.constI([c])], {}, `${v}_flat`);
  const dBeta = b.op('ReduceSum', [dY, axes], { keepdims: attr.int(1) }, 'grad_bn_beta');
  const dGamma = b.op('ReduceSum', [b.op('Mul', [dY, xhat], {}, 'grad_bn_dy_xhat'), axes], { keepdims: attr.int(1) }, 'grad_bn_gamma');
  const out: (string | undefined)[] = [undefined, ctx.needsGrad[1] ? perChannel(dGamma) : undefined, ctx.needsGrad[2] ? perChannel(dBeta) : undefined];
  if (ctx.needsGrad[0]) {
    const count = b.op('Div', [b.cast(b.op('Size', [dY]), 'float32'), b.scalar(c)], {}, 'grad_bn_count');
    const kOverM = b.op('Div', [k, count], {}, 'grad_bn_k_m');
    const direct = b.op('Mul', [dY, k], {}, 'grad_bn_direct');
    const viaVar = b.op('Mul', [xhat, b.op('Mul', [dGamma, kOverM])], {}, 'grad_bn_via_var');
    out[0] = b.op('Sub', [b.op('Sub', [direct, viaVar], {}, 'grad_bn'), b.op('Mul', [dBeta, kOverM])], {}, `grad_${x}`);
    b.note(out[0], 'float32', staticShape(ctx, x));
  }
  return out;
};
