import { attr } from '../../graph/ir.ts';
import { type GradRule, intAttr, intsAttr, staticShape } from '../rule.ts';

/**
 * Y, I = MaxPool(X): each dY lands on the input position its Indices output names.
 * Indices are flat over the whole NCHW tensor and ignore padding (ONNX's definition), so padded
 * pools need nothing more; one ScatterElements (add, for overlapping
 * windows) into a flat zero tensor does it.
 */
export const maxPool: GradRule = (ctx) => {
  const { b, node } = ctx;
  if (ctx.outputs.length < 2) throw new Error(`autodiff: MaxPool ${node.name} must be emitted with its Indices output in training graphs`);
  const x = ctx.inputs[0];
  const flat = b.constI([-1]);
  const xShape = b.op('Shape', [x], {}, `${x}_shape`);
  const count = b.op('Reshape', [b.op('Size', [x], {}, `${x}_size`), b.constI([1])], {}, `${x}_size`);
  const zerosFlat = b.op('ConstantOfShape', [count], {}, `${x}_zeros`);
  const idx = b.op('Reshape', [ctx.outputs[1], flat], {}, `${ctx.outputs[1]}_flat`);
  const g = b.op('Reshape', [ctx.gradOutputs[0]!, flat], {}, `${ctx.gradOutputs[0]}_flat`);
  const scattered = b.op('ScatterElements', [zerosFlat, idx, g], { axis: attr.int(0), reduction: attr.string('add') }, `grad_${x}_flat`);
  const dX = b.op('Reshape', [scattered, xShape], {}, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/**
 * The max-pool gradient for onnxruntime's CPU kernels (the CPU EP and onnxruntime-web's wasm
 * backend share them): MaxUnpool puts each dY at its Indices position in one kernel, about 3x
 * faster than ConstantOfShape + ScatterElements. Only for windows that do not overlap, where
 * every index is named once and placing equals adding (the gradient is the same to the bit);
 * overlapping or padded pools keep the portable rule. The CUDA EP has no MaxUnpool kernel.
 */
export const maxPoolUnpool: GradRule = (ctx) => {
  const { b, node } = ctx;
  const kernel = intsAttr(node, 'kernel_shape', []);
  const strides = intsAttr(node, 'strides', kernel.map(() => 1));
  const pads = intsAttr(node, 'pads', kernel.map(() => 0).concat(kernel.map(() => 0)));
  const dilated = intsAttr(node, 'dilations', kernel.map(() => 1)).some((d) => d !== 1);
  const overlapping = kernel.some((k, i) => strides[i] < k);
  if (ctx.outputs.length < 2 || dilated || overlapping || pads.some((p) => p !== 0) || intAttr(node, 'ceil_mode', 0) !== 0) return maxPool(ctx);
  const x = ctx.inputs[0];
  const dX = b.op('MaxUnpool', [ctx.gradOutputs[0]!, ctx.outputs[1], b.op('Shape', [x], {}, `${x}_shape`)], { kernel_shape: attr.ints(kernel), strides: attr.ints(strides) }, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/**
 * Y = AveragePool(X) without padding: every dY spreads evenly over its window, which is a
 * depthwise ConvTranspose with a constant kernel of 1/(k*k) per channel.
 */
export const averagePool: GradRule = (ctx) => {
  const { b, node } = ctx;
  if (intsAttr(node, 'pads', [0, 0, 0, 0]).some((p) => p !== 0)) throw new Error(`autodiff: AveragePool ${node.name}: padding is not supported`);
  const x = ctx.inputs[0];
  const [, c, h, w] = staticShape(ctx, x) as [unknown, number, number, number];
  const k = intsAttr(node, 'kernel_shape', []);
  const s = intsAttr(node, 'strides', [1, 1]);
  const kernel = b.constF(new Float32Array(c * k[0] * k[1]).fill(1 / (k[0] * k[1])), [c, 1, k[0], k[1]], 'avgpool_grad_kernel');
  const extra = [(h - k[0]) % s[0], (w - k[1]) % s[1]];
  const attrs: Record<string, ReturnType<typeof attr.int>> = { group: attr.int(c), kernel_shape: attr.ints(k), strides: attr.ints(s) };
  if (extra.some((e) => e !== 0)) attrs.output_padding = attr.ints(extra);
  const dX = b.op('ConvTranspose', [ctx.gradOutputs[0]!, kernel], attrs, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/** Y = GlobalAveragePool(X): dX = dY broadcast over H x W, divided by H*W. */
export const globalAveragePool: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const [, , h, w] = staticShape(ctx, x) as [unknown, unknown, number, number];
  const spread = b.op('Expand', [ctx.gradOutputs[0]!, b.op('Shape', [x])], {}, `grad_${x}`);
  const dX = b.op('Div', [spread, b.scalar(h * w)], {}, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};
