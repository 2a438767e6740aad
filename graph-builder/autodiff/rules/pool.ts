import { type AttrValue, attr } from '../../graph/ir.ts';
import { attrStr, staticDim } from '../../ops/spec.ts';
import { spatialHW, windowOf, windowOutHW } from '../../ops/window.ts';
import { type GradRule, intAttr, intsAttr, staticShape } from '../rule.ts';

/**
 * Y, I = MaxPool(X): each dY lands on the input position its Indices output names.
 * Indices are flat over the whole NCHW tensor (storage_order 0) and name only elements inside
 * the input (ONNX's definition), so pads, dilations and ceil_mode windows need nothing more; one
 * ScatterElements (add, for overlapping windows) into a flat zero tensor does it.
 */
export const maxPool: GradRule = (ctx) => {
  const { b, node } = ctx;
  if (ctx.outputs.length < 2) throw new Error(`autodiff: MaxPool ${node.name} must be emitted with its Indices output in training graphs`);
  if (intAttr(node, 'storage_order', 0) !== 0) throw new Error(`autodiff: MaxPool ${node.name}: its Indices must be in storage_order 0`);
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
 * overlapping, dilated, padded (auto_pad included) and ceil_mode pools keep the portable rule.
 * The CUDA EP has no MaxUnpool kernel.
 */
export const maxPoolUnpool: GradRule = (ctx) => {
  const { b, node } = ctx;
  const kernel = intsAttr(node, 'kernel_shape', []);
  const strides = intsAttr(node, 'strides', kernel.map(() => 1));
  const pads = intsAttr(node, 'pads', kernel.map(() => 0).concat(kernel.map(() => 0)));
  const dilated = intsAttr(node, 'dilations', kernel.map(() => 1)).some((d) => d !== 1);
  const overlapping = kernel.some((k, i) => strides[i] < k);
  const padded = pads.some((p) => p !== 0) || !['NOTSET', 'VALID'].includes(attrStr(node, 'auto_pad', 'NOTSET'));
  if (ctx.outputs.length < 2 || dilated || overlapping || padded || intAttr(node, 'ceil_mode', 0) !== 0) return maxPool(ctx);
  const x = ctx.inputs[0];
  const dX = b.op('MaxUnpool', [ctx.gradOutputs[0]!, ctx.outputs[1], b.op('Shape', [x], {}, `${x}_shape`)], { kernel_shape: attr.ints(kernel), strides: attr.ints(strides) }, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/**
 * The divisor of each output position along one axis, as onnxruntime and PyTorch divide: with
 * count_include_pad 0 the window's elements inside the input; with 1 those inside the padded
 * input [-head, n + tail), so a ceil_mode window reaching past the padding counts fewer than k.
 */
export function windowCounts(n: number, k: number, s: number, d: number, head: number, tail: number, out: number, includePad: boolean): number[] {
  const [lo, hi] = includePad ? [-head, n + tail] : [0, n];
  return Array.from({ length: out }, (_, o) => {
    let count = 0;
    for (let t = 0; t < k; t++) {
      const at = o * s - head + t * d;
      if (at >= lo && at < hi) count++;
    }
    return count;
  });
}

/**
 * Y = AveragePool(X): every dY[o] / count[o] spreads over its window's input elements, a
 * depthwise ConvTranspose with an all-ones kernel. The counts (windowCounts) are a [1, 1, Ho, Wo]
 * constant from the static shape; where all are equal (no padding, floor mode) 1/count sits in
 * the kernel instead. Geometry: the pool's head pads are cropped at the start; ceil_mode windows
 * reaching past the input leave rows to crop at the end, and output_padding adds rows no window
 * reached. The ConvTranspose crops min(head, tail) on both sides and a Slice the rest, since the
 * CUDA EP runs no ConvTranspose with asymmetric pads (it hands such nodes to the CPU).
 */
export const averagePool: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const xs = staticShape(ctx, x);
  const c = staticDim(xs[1], 'channel count');
  const hw = spatialHW(xs);
  const w = windowOf(node, hw);
  const out = windowOutHW(hw, w);
  const includePad = intAttr(node, 'count_include_pad', 0) === 1;
  const counts = [0, 1].map((i) => windowCounts(hw[i], w.kernel[i], w.strides[i], w.dilations[i], w.pads[i], w.pads[i + 2], out[i], includePad));
  const uniform = counts.every((axis) => axis.every((v) => v === axis[0]));
  let dY = ctx.gradOutputs[0]!;
  if (!uniform) {
    const map = counts[0].flatMap((ch) => counts[1].map((cw) => ch * cw));
    dY = b.op('Div', [dY, b.constF(map, [1, 1, out[0], out[1]], 'avgpool_counts')], {}, `${dY}_per_count`);
  }
  const weight = uniform ? 1 / (counts[0][0] * counts[1][0]) : 1;
  const kernel = b.constF(new Float32Array(c * w.kernel[0] * w.kernel[1]).fill(weight), [c, 1, w.kernel[0], w.kernel[1]], 'avgpool_grad_kernel');
  const head = [w.pads[0], w.pads[1]];
  const tail = [0, 0];
  const extra = [0, 0];
  for (let i = 0; i < 2; i++) {
    const reach = (out[i] - 1) * w.strides[i] + w.dilations[i] * (w.kernel[i] - 1) + 1;
    tail[i] = Math.max(0, reach - hw[i] - head[i]);
    extra[i] = Math.max(0, hw[i] + head[i] - reach);
  }
  const both = [0, 1].map((i) => Math.min(head[i], tail[i]));
  const attrs: Record<string, AttrValue> = { group: attr.int(c), kernel_shape: attr.ints(w.kernel), strides: attr.ints(w.strides), pads: attr.ints([...both, ...both]) };
  if (w.dilations.some((v) => v !== 1)) attrs.dilations = attr.ints(w.dilations);
  if (extra.some((e) => e !== 0)) attrs.output_padding = attr.ints(extra);
  let dX = b.op('ConvTranspose', [dY, kernel], attrs, `grad_${x}`);
  if (head.some((h, i) => h !== tail[i])) {
    const start = [0, 1].map((i) => head[i] - both[i]);
    dX = b.op('Slice', [dX, b.constI(start), b.constI(start.map((s0, i) => s0 + hw[i])), b.constI([2, 3])], {}, `grad_${x}`);
  }
  b.note(dX, 'float32', xs);
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

/**
 * Y = GlobalMaxPool(X): dY goes to the elements equal to their channel's maximum, split evenly
 * among ties (after a ReLU a whole channel may tie at 0, where routing dY to every zero would
 * multiply it by H*W). Without ties this is PyTorch's adaptive max pool, which routes to one argmax.
 */
export const globalMaxPool: GradRule = (ctx) => {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const rank = staticShape(ctx, x).length;
  const mask = b.cast(b.op('Equal', [x, ctx.outputs[0]], {}, `${x}_is_max`), 'float32');
  const ties = b.op('ReduceSum', [mask, b.constI(Array.from({ length: rank - 2 }, (_, i) => i + 2))], { keepdims: attr.int(1) }, `${x}_max_ties`);
  const dX = b.op('Mul', [mask, b.op('Div', [ctx.gradOutputs[0]!, ties], {}, `grad_${x}_per_tie`)], {}, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/**
 * The max-pool gradient without an Indices output, for the WebGPU EP (its MaxPool kernel does
 * not write Indices). For each window offset (i, j) in row-major order, a strided Slice of X
 * (padded with the lowest float, and at the end as far as ceil_mode windows reach) equals Y
 * where that offset holds the window's maximum; a running `taken` mask keeps only the first
 * such offset, the element CPU MaxPool's Indices name. The masked dY of every offset, stacked
 * to [N*C, k*k, Ho, Wo], goes back through one ConvTranspose with one-hot kernels (ungrouped: a
 * grouped one with one output channel per group gives wrong values on the WebGPU EP, see
 * docs/webgpu.md), then the padding is cut off. Overlapping windows add, as they must.
 */
export const maxPoolMasks: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const xShape = staticShape(ctx, x);
  const hw = spatialHW(xShape);
  const w = windowOf(node, hw);
  const out = windowOutHW(hw, w);
  const [kh, kw] = w.kernel;
  // How far the windows reach past the top-left padding, and the tail that reach needs beyond the input.
  const reach = [0, 1].map((i) => (out[i] - 1) * w.strides[i] + (w.kernel[i] - 1) * w.dilations[i] + 1);
  const tail = [0, 1].map((i) => Math.max(w.pads[i + 2], reach[i] - w.pads[i] - hw[i]));
  const lowest = b.constF([-3.4028234663852886e38], [], `${x}_lowest`);
  const padded = b.op('Pad', [x, b.constI([0, 0, w.pads[0], w.pads[1], 0, 0, tail[0], tail[1]]), lowest], {}, `${x}_pool_padded`);
  const y = ctx.outputs[0];
  const dY = ctx.gradOutputs[0]!;
  let taken: string | undefined;
  const parts: string[] = [];
  for (let i = 0; i < kh; i++) {
    for (let j = 0; j < kw; j++) {
      const start = [i * w.dilations[0], j * w.dilations[1]];
      const at = b.op('Slice', [padded, b.constI(start), b.constI(start.map((s, a) => s + w.strides[a] * (out[a] - 1) + 1)), b.constI([2, 3]), b.constI(w.strides)], {}, `${x}_win${i}_${j}`);
      const hit = b.cast(b.op('Equal', [at, y], {}, `${x}_is_max${i}_${j}`), 'float32', `${x}_hit${i}_${j}`);
      const first = taken ? b.op('Mul', [hit, b.op('Sub', [b.scalar(1), taken], {}, `${x}_free${i}_${j}`)], {}, `${x}_first${i}_${j}`) : hit;
      taken = taken ? b.op('Add', [taken, first], {}, `${x}_taken${i}_${j}`) : first;
      parts.push(b.op('Unsqueeze', [b.op('Mul', [first, dY], {}, `${x}_dy${i}_${j}`), b.constI([2])], {}, `${x}_dy${i}_${j}_u`));
    }
  }
  const stacked = b.op('Reshape', [parts.length > 1 ? b.op('Concat', parts, { axis: attr.int(2) }, `${x}_dy_offsets`) : parts[0], b.constI([-1, kh * kw, ...out])], {}, `${x}_dy_stacked`);
  const oneHot = new Float32Array(kh * kw * kh * kw);
  for (let t = 0; t < kh * kw; t++) oneHot[t * kh * kw + t] = 1;
  const spread = b.op('ConvTranspose', [stacked, b.constF(oneHot, [kh * kw, 1, kh, kw])], { kernel_shape: attr.ints([kh, kw]), strides: attr.ints(w.strides), dilations: attr.ints(w.dilations) }, `${x}_dy_spread`);
  // Rows and columns no window reaches (floor mode) get no gradient: zeros after the spread.
  const short = [0, 1].map((i) => Math.max(0, w.pads[i] + hw[i] - reach[i]));
  const full = short.some((n) => n > 0) ? b.op('Pad', [spread, b.constI([0, 0, 0, 0, 0, 0, short[0], short[1]])], {}, `${x}_dy_full`) : spread;
  const inside = b.op('Slice', [full, b.constI(w.pads.slice(0, 2)), b.constI([w.pads[0] + hw[0], w.pads[1] + hw[1]]), b.constI([2, 3])], {}, `${x}_dy_inside`);
  const dX = b.op('Reshape', [inside, b.op('Shape', [x], {}, `${x}_shape`)], {}, `grad_${x}`);
  b.note(dX, 'float32', xShape);
  return [dX];
};
