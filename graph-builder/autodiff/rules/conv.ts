import { attr } from '../../graph/ir.ts';
import { type GradRule, intAttr, intsAttr, staticShape } from '../rule.ts';

/**
 * Y = Conv(X, W, B), groups 1, no dilation.
 * dX: a ConvTranspose of dY with the same W (output_padding restores rows a stride dropped).
 * dW: a Conv of X^T (channels as batch) with dY^T as the kernel, dilated by the stride;
 *     rows beyond the kernel (when the stride did not divide evenly) are sliced off.
 * dB: dY summed over batch and space.
 */
export const conv: GradRule = (ctx) => {
  const { b, node } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  if (intAttr(node, 'group', 1) !== 1) throw new Error(`autodiff: Conv ${node.name}: only group=1 is supported`);
  if (intsAttr(node, 'dilations', [1, 1]).some((d) => d !== 1)) throw new Error(`autodiff: Conv ${node.name}: dilations are not supported`);
  const kernel = intsAttr(node, 'kernel_shape', []);
  const strides = intsAttr(node, 'strides', [1, 1]);
  const pads = intsAttr(node, 'pads', [0, 0, 0, 0]);
  const xShape = staticShape(ctx, x);
  const [, , h, wd] = xShape as [unknown, unknown, number, number];
  const out: (string | undefined)[] = [undefined, undefined, undefined];

  if (ctx.needsGrad[0]) {
    const extra = [0, 1].map((i) => ((i === 0 ? h : wd) + pads[i] + pads[i + 2] - kernel[i]) % strides[i]);
    const attrs: Record<string, ReturnType<typeof attr.ints>> = { kernel_shape: attr.ints(kernel), strides: attr.ints(strides), pads: attr.ints(pads) };
    if (extra.some((e) => e !== 0)) attrs.output_padding = attr.ints(extra);
    out[0] = b.op('ConvTranspose', [dY, w], attrs, `grad_${x}`);
    b.note(out[0], 'float32', xShape);
  }
  if (ctx.needsGrad[1]) {
    const perm = attr.ints([1, 0, 2, 3]);
    const xT = b.op('Transpose', [x], { perm }, `${x}_T`);
    const dYT = b.op('Transpose', [dY], { perm }, `${dY}_T`);
    let dWT = b.op('Conv', [xT, dYT], { pads: attr.ints(pads), dilations: attr.ints(strides) }, `grad_${w}_T`);
    if (strides.some((s) => s !== 1)) {
      dWT = b.op('Slice', [dWT, b.constI([0, 0]), b.constI(kernel), b.constI([2, 3])], {}, `grad_${w}_T`);
    }
    out[1] = b.op('Transpose', [dWT], { perm }, `grad_${w}`);
  }
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) {
    out[2] = b.op('ReduceSum', [dY, b.constI([0, 2, 3])], { keepdims: attr.int(0) }, `grad_${ctx.inputs[2]}`);
  }
  return out;
};
