import { attr } from '../../graph/ir.ts';
import { type GradContext, type GradRule, intAttr, intsAttr, staticShape } from '../rule.ts';

/**
 * Y = Conv(X, W, B), no dilation (groups through groupedConv).
 * dX: for stride 1, a Conv of dY with W flipped and its channel axes swapped (inputGradConv);
 *     else a ConvTranspose of dY with W.
 * dW: batched GEMMs over an unfolded X for stride 1 (weightGradUnfolded), else a Conv of X^T
 *     with dY^T as the kernel (weightGradConv).
 * dB: dY summed over batch and space.
 */
export const conv: GradRule = (ctx) => {
  const { b, node } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const groups = intAttr(node, 'group', 1);
  if (groups !== 1) return groupedConv(ctx, groups);
  if (intsAttr(node, 'dilations', [1, 1]).some((d) => d !== 1)) throw new Error(`autodiff: Conv ${node.name}: dilations are not supported`);
  const kernel = intsAttr(node, 'kernel_shape', []);
  const strides = intsAttr(node, 'strides', [1, 1]);
  const pads = intsAttr(node, 'pads', [0, 0, 0, 0]);
  const xShape = staticShape(ctx, x);
  const [, , h, wd] = xShape as [unknown, unknown, number, number];
  const out: (string | undefined)[] = [undefined, undefined, undefined];

  if (ctx.needsGrad[0]) {
    // A full Conv needs stride 1 and pads below the kernel size (its own pads are k-1-p).
    const asFullConv = strides.every((st) => st === 1) && pads.every((p, i) => p < kernel[i % 2]);
    out[0] = asFullConv ? inputGradConv(ctx, x, dY, w, kernel, pads) : inputGradConvTranspose(ctx, x, dY, w, { h, wd, kernel, strides, pads });
    b.note(out[0], 'float32', xShape);
  }
  if (ctx.needsGrad[1]) {
    const cIn = xShape[1] as number;
    const cOut = staticShape(ctx, w)[0] as number;
    out[1] = strides.every((s) => s === 1) ? weightGradUnfolded(ctx, x, dY, { cIn, cOut, h, wd, kernel, pads }) : weightGradConv(ctx, x, dY, w, kernel, strides, pads);
  }
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) {
    out[2] = b.op('ReduceSum', [dY, b.constI([0, 2, 3])], { keepdims: attr.int(0) }, `grad_${ctx.inputs[2]}`);
  }
  return out;
};

/**
 * Y = ConvTranspose(X, W, B), the adjoint of the Conv that maps Y's space to X's with the same
 * W, strides and pads: dX = Conv(dY, W), and dW is that Conv's weight gradient with dY as its
 * input and X as its output gradient (so the Conv rule, groups included, serves both).
 */
export const convTranspose: GradRule = (ctx) => {
  const { b, node } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  if (intsAttr(node, 'dilations', [1, 1]).some((d) => d !== 1)) throw new Error(`autodiff: ConvTranspose ${node.name}: dilations are not supported`);
  const keep = ['kernel_shape', 'strides', 'pads', 'group'].filter((k) => node.attrs[k]);
  const asConv = { ...node, op: 'Conv', attrs: Object.fromEntries(keep.map((k) => [k, node.attrs[k]])) };
  b.note(dY, 'float32', staticShape(ctx, ctx.outputs[0]));
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (ctx.needsGrad[0]) {
    out[0] = b.op('Conv', [dY, w], asConv.attrs, `grad_${x}`);
    b.note(out[0], 'float32', staticShape(ctx, x));
  }
  if (ctx.needsGrad[1]) out[1] = conv({ ...ctx, node: asConv, inputs: [dY, w], outputs: [x], gradOutputs: [x], needsGrad: [false, true] })[1];
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) out[2] = b.op('ReduceSum', [dY, b.constI([0, 2, 3])], { keepdims: attr.int(0) }, `grad_${ctx.inputs[2]}`);
  return out;
};

/**
 * A grouped (or depthwise) Conv's gradient as one ungrouped gradient per group: X's and dY's
 * channels and W's output channels sliced per group, the parts concatenated back. Correct for
 * any group count; a depthwise layer of C channels emits C small gradients (no fused kernel).
 */
function groupedConv(ctx: GradContext, groups: number): (string | undefined)[] {
  const { b, node } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const [n, c, h, wd] = staticShape(ctx, x);
  const [m, cg, kh, kw] = staticShape(ctx, w) as number[];
  const [, , ho, wo] = staticShape(ctx, ctx.outputs[0]);
  const mg = m / groups;
  const slice = (v: string, axis: number, from: number, size: number, shape: (number | string)[]) => {
    const s = b.op('Slice', [v, b.constI([from]), b.constI([from + size]), b.constI([axis])], {}, `${v}_group`);
    b.note(s, 'float32', shape);
    return s;
  };
  const ungrouped = { ...node, attrs: { ...node.attrs, group: attr.int(1) } };
  const dX: string[] = [];
  const dW: string[] = [];
  for (let g = 0; g < groups; g++) {
    const part = conv({
      ...ctx,
      node: ungrouped,
      inputs: [slice(x, 1, g * cg, cg, [n, cg, h, wd]), slice(w, 0, g * mg, mg, [mg, cg, kh, kw])],
      gradOutputs: [slice(dY, 1, g * mg, mg, [n, mg, ho, wo])],
      needsGrad: [ctx.needsGrad[0], ctx.needsGrad[1]],
    });
    if (part[0]) dX.push(part[0]);
    if (part[1]) dW.push(part[1]);
  }
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (ctx.needsGrad[0]) out[0] = b.op('Concat', dX, { axis: attr.int(1) }, `grad_${x}`);
  if (ctx.needsGrad[1]) out[1] = b.op('Concat', dW, { axis: attr.int(0) }, `grad_${w}`);
  if (ctx.needsGrad[0]) b.note(out[0]!, 'float32', [n, c, h, wd]);
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) out[2] = b.op('ReduceSum', [dY, b.constI([0, 2, 3])], { keepdims: attr.int(0) }, `grad_${ctx.inputs[2]}`);
  return out;
}

/**
 * dX for stride 1 as a "full" Conv: dY padded by k-1-p with W rotated 180 degrees and its in/out
 * channels swapped. The same arithmetic as ConvTranspose, but onnxruntime's CPU Conv (im2col +
 * GEMM) beats its ConvTranspose (GEMM + col2im): partB and fashion-best steps 10% faster.
 */
function inputGradConv(ctx: GradContext, x: string, dY: string, w: string, kernel: number[], pads: number[]): string {
  const { b } = ctx;
  const rotated = b.op('Slice', [w, b.constI([-1, -1]), b.constI([-(2 ** 31), -(2 ** 31)]), b.constI([2, 3]), b.constI([-1, -1])], {}, `${w}_rotated`);
  const swapped = b.op('Transpose', [rotated], { perm: attr.ints([1, 0, 2, 3]) }, `${w}_rotated_T`);
  const fullPads = pads.map((p, i) => kernel[i % 2] - 1 - p);
  return b.op('Conv', [dY, swapped], { kernel_shape: attr.ints(kernel), pads: attr.ints(fullPads) }, `grad_${x}`);
}

/** dX for any stride: a ConvTranspose of dY with W (output_padding restores rows a stride dropped). */
function inputGradConvTranspose(
  ctx: GradContext,
  x: string,
  dY: string,
  w: string,
  s: { h: number; wd: number; kernel: number[]; strides: number[]; pads: number[] },
): string {
  const extra = [0, 1].map((i) => ((i === 0 ? s.h : s.wd) + s.pads[i] + s.pads[i + 2] - s.kernel[i]) % s.strides[i]);
  const attrs: Record<string, ReturnType<typeof attr.ints>> = { kernel_shape: attr.ints(s.kernel), strides: attr.ints(s.strides), pads: attr.ints(s.pads) };
  if (extra.some((e) => e !== 0)) attrs.output_padding = attr.ints(extra);
  return ctx.b.op('ConvTranspose', [dY, w], attrs, `grad_${x}`);
}

/**
 * dW for stride 1 as batched GEMMs (about 2x faster than weightGradConv on onnxruntime's CPU EP
 * for our presets' shapes, whose Conv lowers a 14x14 "kernel" to a thin im2col GEMM):
 * X is padded and unfolded along its width (k_w column slices stacked after the channel axis);
 * for each kernel row, a slice of the padded rows times dY^T gives that row of dW per image
 * ([N, C_in*k_w, C_out]), summed over the images; or, where that copies more, dY shifted by each
 * kernel row meets all the padded rows in one GEMM per image. (The unfold was first a Conv with a one-hot
 * kernel: onnxruntime runs that in its blocked NCHWc layout, padding k_w channels to 8 and
 * reordering back, which cost eva-best 11% of its step; the slices cost 7%.)
 */
function weightGradUnfolded(
  ctx: GradContext,
  x: string,
  dY: string,
  s: { cIn: number; cOut: number; h: number; wd: number; kernel: number[]; pads: number[] },
): string {
  const { b } = ctx;
  const [kh, kw] = s.kernel;
  const [pt, pl, pb, pr] = s.pads;
  const hp = s.h + pt + pb;
  const ho = hp - kh + 1;
  const wo = s.wd + pl + pr - kw + 1;
  const g = (name: string) => `${ctx.inputs[1]}_${name}`;
  // The unfolded input: [N, C_in*k_w, H + pads, Wo], channel c*k_w + j holding column offset j.
  let unfolded = x;
  if (kw > 1 || pt + pb + pl + pr > 0) {
    const padded = pt + pb + pl + pr > 0 ? b.op('Pad', [x, b.constI([0, 0, pt, pl, 0, 0, pb, pr])], {}, g('padded')) : x;
    const cols: string[] = [];
    for (let j = 0; j < kw; j++) {
      const col = kw > 1 ? b.op('Slice', [padded, b.constI([j]), b.constI([j + wo]), b.constI([3])], {}, g(`col${j}`)) : padded;
      cols.push(b.op('Unsqueeze', [col, b.constI([2])], {}, g(`col${j}`)));
    }
    const columns = cols.length > 1 ? b.op('Concat', cols, { axis: attr.int(2) }, g('cols')) : cols[0];
    unfolded = b.op('Reshape', [columns, b.constI([-1, s.cIn * kw, hp, wo])], {}, g('unfolded'));
  }
  // Each kernel row i pairs the unfolded rows i..i+Ho-1 with dY. Either those rows are sliced
  // out of the unfolded input (kh copies of C_in*k_w channels), or dY is shifted down by i rows
  // instead, zeros around it (kh copies of C_out channels, written twice: Pad, Concat) and one
  // GEMM per image takes every row at once. Whichever copies less.
  const shiftDy = kh > 1 && 2 * s.cOut * hp < s.cIn * kw * ho;
  const dYFlat = b.op('Reshape', [dY, b.constI([0, s.cOut, ho * wo])], {}, g('dy_flat'));
  const rowsOf = shiftDy ? weightRowsByShiftedDy : weightRowsBySlices;
  const perRow = rowsOf(ctx, unfolded, dYFlat, { ...s, hp, ho, wo }, g);
  // [C_in, k_w, k_h, C_out] (shifted dY) or [k_h, C_in, k_w, C_out] -> [C_out, C_in, k_h, k_w].
  const shaped = b.op('Reshape', [perRow, b.constI(shiftDy ? [s.cIn, kw, kh, s.cOut] : [kh, s.cIn, kw, s.cOut])], {}, g('rows_shaped'));
  return b.op('Transpose', [shaped], { perm: attr.ints(shiftDy ? [3, 0, 2, 1] : [3, 1, 0, 2]) }, `grad_${ctx.inputs[1]}`);
}

type UnfoldedShape = { cIn: number; cOut: number; kernel: number[]; hp: number; ho: number; wo: number };

/**
 * Row i of dW per kernel row: a slice of the unfolded rows times dY^T per image, summed over the
 * images; [k_h, C_in*k_w, C_out]. dYFlat is dY as [N, C_out, Ho*Wo]; g names the nodes.
 */
function weightRowsBySlices(ctx: GradContext, unfolded: string, dYFlat: string, s: UnfoldedShape, g: (name: string) => string): string {
  const { b } = ctx;
  const [kh, kw] = s.kernel;
  // dY^T per image: [N, Ho*Wo, C_out].
  const dYT = b.op('Transpose', [dYFlat], { perm: attr.ints([0, 2, 1]) }, g('dy_T'));
  const rows: string[] = [];
  for (let i = 0; i < kh; i++) {
    const rowsIn = kh > 1 ? b.op('Slice', [unfolded, b.constI([i]), b.constI([i + s.ho]), b.constI([2])], {}, g(`rows${i}`)) : unfolded;
    const flat = b.op('Reshape', [rowsIn, b.constI([0, s.cIn * kw, s.ho * s.wo])], {}, g(`rows${i}_flat`));
    const perImage = b.op('MatMul', [flat, dYT], {}, g(`row${i}_per_image`));
    rows.push(b.op('ReduceSum', [perImage, b.constI([0])], { keepdims: attr.int(1) }, g(`row${i}`)));
  }
  return rows.length > 1 ? b.op('Concat', rows, { axis: attr.int(0) }, g('rows')) : rows[0];
}

/**
 * Every row of dW in one GEMM per image: dY flattened and shifted down by i rows (i*Wo zeros
 * before, (k_h-1-i)*Wo after) for each kernel row i, stacked as k_h*C_out channels, against all
 * H + pads unfolded rows; [C_in*k_w, k_h*C_out] summed over the images.
 */
function weightRowsByShiftedDy(ctx: GradContext, unfolded: string, dYFlat: string, s: UnfoldedShape, g: (name: string) => string): string {
  const { b } = ctx;
  const [kh, kw] = s.kernel;
  const shifted: string[] = [];
  for (let i = 0; i < kh; i++) {
    shifted.push(b.op('Pad', [dYFlat, b.constI([0, 0, i * s.wo, 0, 0, (kh - 1 - i) * s.wo])], {}, g(`dy_shift${i}`)));
  }
  const stacked = b.op('Concat', shifted, { axis: attr.int(1) }, g('dy_shifted'));
  const stackedT = b.op('Transpose', [stacked], { perm: attr.ints([0, 2, 1]) }, g('dy_shifted_T'));
  const flat = b.op('Reshape', [unfolded, b.constI([0, s.cIn * kw, s.hp * s.wo])], {}, g('unfolded_flat'));
  const perImage = b.op('MatMul', [flat, stackedT], {}, g('rows_per_image'));
  return b.op('ReduceSum', [perImage, b.constI([0])], { keepdims: attr.int(0) }, g('rows'));
}

/** dW for any stride: a Conv of X^T (channels as batch) with dY^T as the kernel, dilated by the stride. */
function weightGradConv(ctx: GradContext, x: string, dY: string, w: string, kernel: number[], strides: number[], pads: number[]): string {
  const { b } = ctx;
  const perm = attr.ints([1, 0, 2, 3]);
  const xT = b.op('Transpose', [x], { perm }, `${x}_T`);
  const dYT = b.op('Transpose', [dY], { perm }, `${dY}_T`);
  let dWT = b.op('Conv', [xT, dYT], { pads: attr.ints(pads), dilations: attr.ints(strides) }, `grad_${w}_T`);
  if (strides.some((st) => st !== 1)) {
    // Rows beyond the kernel (when the stride did not divide evenly) are sliced off.
    dWT = b.op('Slice', [dWT, b.constI([0, 0]), b.constI(kernel), b.constI([2, 3])], {}, `grad_${w}_T`);
  }
  return b.op('Transpose', [dWT], { perm }, `grad_${w}`);
}
