import { attr } from '../../graph/ir.ts';
import { windowPads } from '../../ops/window.ts';
import { type GradContext, type GradRule, intAttr, intsAttr, staticShape } from '../rule.ts';

/**
 * Y = Conv(X, W, B); groups and dilations through groupedConv. kernel_shape defaults to W's
 * spatial dims and auto_pad is resolved here too (the import's normalize makes both explicit).
 * dX: for stride 1, a Conv of dY with W flipped and its channel axes swapped (inputGradConv);
 *     else a ConvTranspose of dY with W.
 * dW: batched GEMMs over an unfolded X for stride 1 (weightGradUnfolded); for larger strides
 *     the same per phase of the strided input (weightGradByPhases).
 * dB: dY summed over batch and space.
 */
export const conv: GradRule = (ctx) => {
  const { b, node } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const xShape = staticShape(ctx, x);
  const [, , h, wd] = xShape as [unknown, unknown, number, number];
  const kernel = node.attrs.kernel_shape ? intsAttr(node, 'kernel_shape', []) : (staticShape(ctx, w) as number[]).slice(2);
  const strides = intsAttr(node, 'strides', [1, 1]);
  const dilations = intsAttr(node, 'dilations', [1, 1]);
  const pads = windowPads(node, [h, wd], kernel, strides, dilations);
  const groups = intAttr(node, 'group', 1);
  if (groups !== 1 || dilations.some((d) => d !== 1)) return groupedConv(ctx, { groups, h, wd, kernel, strides, pads, dilations });
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
    out[1] = strides.every((s) => s === 1) ? weightGradUnfolded(ctx, x, dY, { cIn, cOut, h, wd, kernel, pads }) : weightGradByPhases(ctx, x, dY, { cIn, cOut, h, wd, kernel, strides, pads });
  }
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) out[2] = biasGrad(ctx, dY);
  return out;
};

/**
 * Y = ConvTranspose(X, W, B), the adjoint of the Conv that maps Y's space to X's with the same
 * W, strides, pads, dilations and groups: dX = Conv(dY, W), and dW is that Conv's weight
 * gradient with dY as its input and X as its output gradient (so the Conv rule serves both).
 */
export const convTranspose: GradRule = (ctx) => {
  const { b, node } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const nonDefault = (k: string) => node.attrs[k] && !(k === 'dilations' && intsAttr(node, k, [1, 1]).every((d) => d === 1));
  const keep = ['kernel_shape', 'strides', 'pads', 'group', 'dilations'].filter(nonDefault);
  const asConv = { ...node, op: 'Conv', attrs: Object.fromEntries(keep.map((k) => [k, node.attrs[k]])) };
  b.note(dY, 'float32', staticShape(ctx, ctx.outputs[0]));
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (ctx.needsGrad[0]) {
    out[0] = b.op('Conv', [dY, w], asConv.attrs, `grad_${x}`);
    b.note(out[0], 'float32', staticShape(ctx, x));
  }
  if (ctx.needsGrad[1]) out[1] = conv({ ...ctx, node: asConv, inputs: [dY, w], outputs: [x], gradOutputs: [x], needsGrad: [false, true] })[1];
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) out[2] = biasGrad(ctx, dY);
  return out;
};

/** dB: dY summed over batch and space. */
function biasGrad(ctx: GradContext, dY: string): string {
  return ctx.b.op('ReduceSum', [dY, ctx.b.constI([0, 2, 3])], { keepdims: attr.int(0) }, `grad_${ctx.inputs[2]}`);
}

/** A Conv's window, defaults filled in and pads explicit [top, left, bottom, right]. */
type Geometry = { groups: number; h: number; wd: number; kernel: number[]; strides: number[]; pads: number[]; dilations: number[] };

/**
 * The gradient of a grouped (depthwise included) or dilated Conv, a few nodes for any group count.
 * dX: for stride 1 and pads up to d*(k-1), a Conv of dY with W rotated 180 degrees and each
 *     group's in/out channel axes swapped ([C, M/g, kh, kw]), same groups and dilations, pads
 *     d*(k-1)-p (groupedInputGradConv); else a ConvTranspose of dY with W, same attributes (dY
 *     spread with zeros and then the stride-1 Conv measured 1.6x to 2x slower, depthwise 3x3 and
 *     5x5 stride 2: bench/grouped-conv.ts, 'dX zero-insert').
 * dW: for stride 1, batched GEMMs over X unfolded along its width against dY shifted by each
 *     kernel row (groupedWeightGradUnfolded); else one Conv over the batch: each group's input
 *     channels as the batch of a Conv whose g groups hold N channels each, dY^T ([M, N, Ho, Wo])
 *     as its kernel (groupedWeightGradConv).
 */
function groupedConv(ctx: GradContext, geo: Geometry): (string | undefined)[] {
  const { b } = ctx;
  const [x, w] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const xShape = staticShape(ctx, x);
  const [m, cg] = staticShape(ctx, w) as number[];
  const fullPads = geo.pads.map((p, i) => geo.dilations[i % 2] * (geo.kernel[i % 2] - 1) - p);
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  if (ctx.needsGrad[0]) {
    const asConv = geo.strides.every((s) => s === 1) && fullPads.every((p) => p >= 0);
    out[0] = asConv ? groupedInputGradConv(ctx, dY, w, { ...geo, m, cg, fullPads }) : inputGradConvTranspose(ctx, x, dY, w, geo);
    b.note(out[0], 'float32', xShape);
  }
  if (ctx.needsGrad[1]) {
    const shape = { ...geo, c: xShape[1] as number, m };
    const unfolded = geo.strides.every((st) => st === 1);
    out[1] = unfolded ? groupedWeightGradUnfolded(ctx, x, dY, w, shape) : groupedWeightGradConv(ctx, x, dY, w, shape);
    b.note(out[1], 'float32', [m, cg, ...geo.kernel]);
  }
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) out[2] = biasGrad(ctx, dY);
  return out;
}

/**
 * dX for stride 1 of a grouped or dilated Conv: Conv(dY, W'), W' = W rotated 180 degrees with
 * [M, C/g] read as [g, M/g, C/g] and swapped to [g, C/g, M/g] (a Reshape alone where C/g or
 * M/g is 1, nothing where both are: depthwise).
 */
function groupedInputGradConv(ctx: GradContext, dY: string, w: string, s: Geometry & { m: number; cg: number; fullPads: number[] }): string {
  const { b } = ctx;
  const x = ctx.inputs[0];
  const [kh, kw] = s.kernel;
  const mg = s.m / s.groups;
  const c = s.cg * s.groups;
  let flipped = b.op('Slice', [w, b.constI([-1, -1]), b.constI([-(2 ** 31), -(2 ** 31)]), b.constI([2, 3]), b.constI([-1, -1])], {}, `${w}_rotated`);
  if (s.groups === 1) flipped = b.op('Transpose', [flipped], { perm: attr.ints([1, 0, 2, 3]) }, `${w}_rotated_T`);
  else if (s.cg !== 1 && mg !== 1) {
    const split = b.op('Reshape', [flipped, b.constI([s.groups, mg, s.cg, kh, kw])], {}, `${w}_rotated_groups`);
    const swapped = b.op('Transpose', [split], { perm: attr.ints([0, 2, 1, 3, 4]) }, `${w}_rotated_groups_T`);
    flipped = b.op('Reshape', [swapped, b.constI([c, mg, kh, kw])], {}, `${w}_rotated_T`);
  } else if (mg !== 1) flipped = b.op('Reshape', [flipped, b.constI([c, mg, kh, kw])], {}, `${w}_rotated_T`);
  const attrs: Record<string, ReturnType<typeof attr.ints>> = { kernel_shape: attr.ints(s.kernel), pads: attr.ints(s.fullPads) };
  if (s.dilations.some((d) => d !== 1)) attrs.dilations = attr.ints(s.dilations);
  if (s.groups !== 1) attrs.group = attr.int(s.groups);
  return b.op('Conv', [dY, flipped], attrs, `grad_${x}`);
}

/**
 * dW of a grouped or dilated Conv as one Conv: X as [C/g, g*N, H, W] (group j's channel c at
 * [c, j*N + n]), dY^T ([M, N, Ho, Wo], M's order being group-major already) as the kernel, g
 * groups, dilated by the stride and strided by the dilation, forward pads; [C/g, M, kh', kw']
 * sliced to the kernel where the stride left extra rows, then transposed to [M, C/g, kh, kw].
 */
function groupedWeightGradConv(ctx: GradContext, x: string, dY: string, w: string, s: Geometry & { c: number; m: number }): string {
  const { b } = ctx;
  const cg = s.c / s.groups;
  const perm = attr.ints([1, 0, 2, 3]);
  let xs: string;
  if (cg === 1 || s.groups === 1) {
    xs = b.op('Transpose', [x], { perm }, `${x}_T`);
    if (s.groups !== 1) xs = b.op('Reshape', [xs, b.constI([1, -1, s.h, s.wd])], {}, `${x}_T_groups`);
  } else {
    const split = b.op('Reshape', [x, b.constI([0, s.groups, cg, s.h, s.wd])], {}, `${x}_groups`);
    const swapped = b.op('Transpose', [split], { perm: attr.ints([2, 1, 0, 3, 4]) }, `${x}_groups_T`);
    xs = b.op('Reshape', [swapped, b.constI([cg, -1, s.h, s.wd])], {}, `${x}_T_groups`);
  }
  const dYT = b.op('Transpose', [dY], { perm }, `${dY}_T`);
  const attrs: Record<string, ReturnType<typeof attr.ints>> = { pads: attr.ints(s.pads), dilations: attr.ints(s.strides), strides: attr.ints(s.dilations) };
  if (s.groups !== 1) attrs.group = attr.int(s.groups);
  let dWT = b.op('Conv', [xs, dYT], attrs, `grad_${w}_T`);
  const spanned = [0, 1].map((i) => Math.floor(((i === 0 ? s.h : s.wd) + s.pads[i] + s.pads[i + 2] - s.strides[i] * (outSize(s, i) - 1) - 1) / s.dilations[i]) + 1);
  if (spanned.some((k, i) => k !== s.kernel[i])) dWT = b.op('Slice', [dWT, b.constI([0, 0]), b.constI(s.kernel), b.constI([2, 3])], {}, `grad_${w}_T`);
  return b.op('Transpose', [dWT], { perm }, `grad_${w}`);
}

/**
 * Stride-1 dW of a grouped or dilated Conv as weightGradUnfolded's shifted-dY GEMM, batched over
 * the groups: X padded and unfolded along its width ([N, g, C/g*kw, Hp*Wo], column j taken at
 * j*d), dY shifted down by i*d rows for each kernel row i ([N, g, Hp*Wo, kh*M/g]), one MatMul
 * per image and group, summed over the images.
 * Against one grouped Conv (groupedWeightGradConv, whose im2col copies a 3x3 output's taps three
 * floats at a time), CPU EP, 2 threads, CPU ms, median of 20 interleaved rounds, this vs Conv,
 * `npx tsx bench/grouped-conv.ts --shape N,C,H,W [--kernel 5] [--group G] --only 'dW rule,dW conv'`
 * (earlier runs in brackets): depthwise 3x3 [8,96,56,56] 42 vs 58 (34 vs 38);
 * [32,96,56,56] 160 vs 188; [8,32,112,112] 44 vs 70 (38 vs 48); [32,32,112,112] 180 vs 260
 * (157 vs 209); 5x5 [8,240,28,28] 54 vs 58 (32 vs 38); 32 groups [8,128,56,56] 38 vs 56; a tie
 * at 28x28: [8,144,28,28] 16 vs 19 (13 vs 14, 16 vs 15), [32,144,28,28] 65 vs 57 (58 vs 60).
 * (k*k shifted slices of X times dY, reduced: 0.7x to 1.1x the Conv's time at stride 1, 2x at
 * stride 2. One ungrouped gradient per group, O(groups) nodes, is up to 1.6x faster still at
 * 28x28: its channel-sized copies stay in cache.) For strides above 1 the Conv is used: the
 * unfold would copy the skipped columns too.
 */
function groupedWeightGradUnfolded(ctx: GradContext, x: string, dY: string, w: string, s: Geometry & { c: number; m: number }): string {
  const { b } = ctx;
  const [kh, kw] = s.kernel;
  const [dh, dw] = s.dilations;
  const [pt, pl, pb, pr] = s.pads;
  const [g, cg, mg] = [s.groups, s.c / s.groups, s.m / s.groups];
  const hp = s.h + pt + pb;
  const [ho, wo] = [hp - dh * (kh - 1), s.wd + pl + pr - dw * (kw - 1)];
  const name = (n: string) => `${w}_${n}`;
  // [N, C, kw, Hp, Wo]: channel c's column j of every window.
  const padded = pt + pl + pb + pr > 0 ? b.op('Pad', [x, b.constI([0, 0, pt, pl, 0, 0, pb, pr])], {}, name('padded')) : x;
  const cols: string[] = [];
  for (let j = 0; j < kw; j++) {
    const col = kw > 1 ? b.op('Slice', [padded, b.constI([j * dw]), b.constI([j * dw + wo]), b.constI([3])], {}, name(`col${j}`)) : padded;
    cols.push(b.op('Unsqueeze', [col, b.constI([2])], {}, name(`col${j}`)));
  }
  const columns = cols.length > 1 ? b.op('Concat', cols, { axis: attr.int(2) }, name('cols')) : cols[0];
  const unfolded = b.op('Reshape', [columns, b.constI([0, g, cg * kw, hp * wo])], {}, name('unfolded'));
  // [N, g, kh*M/g, Hp*Wo]: dY moved down by i*d rows, zeros around it, for each kernel row i.
  const dYFlat = b.op('Reshape', [dY, b.constI([0, g, mg, ho * wo])], {}, name('dy_flat'));
  const shifted: string[] = [];
  for (let i = 0; i < kh; i++) {
    const [before, after] = [i * dh * wo, (kh - 1 - i) * dh * wo];
    shifted.push(before + after > 0 ? b.op('Pad', [dYFlat, b.constI([0, 0, 0, before, 0, 0, 0, after])], {}, name(`dy_shift${i}`)) : dYFlat);
  }
  const stacked = shifted.length > 1 ? b.op('Concat', shifted, { axis: attr.int(2) }, name('dy_shifted')) : shifted[0];
  const stackedT = b.op('Transpose', [stacked], { perm: attr.ints([0, 1, 3, 2]) }, name('dy_shifted_T'));
  const perImage = b.op('MatMul', [unfolded, stackedT], {}, name('rows_per_image'));
  const rows = b.op('ReduceSum', [perImage, b.constI([0])], { keepdims: attr.int(0) }, name('rows'));
  // [g, C/g, kw, kh, M/g] -> [g, M/g, C/g, kh, kw] -> [M, C/g, kh, kw].
  const split = b.op('Reshape', [rows, b.constI([g, cg, kw, kh, mg])], {}, name('rows_split'));
  const ordered = b.op('Transpose', [split], { perm: attr.ints([0, 4, 1, 3, 2]) }, name('rows_T'));
  return b.op('Reshape', [ordered, b.constI([s.m, cg, kh, kw])], {}, `grad_${w}`);
}

/** The forward output's size along spatial axis i (0: height, 1: width). */
function outSize(s: Geometry, i: number): number {
  const n = i === 0 ? s.h : s.wd;
  return Math.floor((n + s.pads[i] + s.pads[i + 2] - s.dilations[i] * (s.kernel[i] - 1) - 1) / s.strides[i]) + 1;
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

/**
 * dX for any stride: a ConvTranspose of dY with W (output_padding restores rows a stride dropped;
 * dilations and groups as the forward's where not 1).
 */
function inputGradConvTranspose(
  ctx: GradContext,
  x: string,
  dY: string,
  w: string,
  s: { h: number; wd: number; kernel: number[]; strides: number[]; pads: number[]; dilations?: number[]; groups?: number },
): string {
  const d = s.dilations ?? [1, 1];
  const extra = [0, 1].map((i) => ((i === 0 ? s.h : s.wd) + s.pads[i] + s.pads[i + 2] - d[i] * (s.kernel[i] - 1) - 1) % s.strides[i]);
  const attrs: Record<string, ReturnType<typeof attr.ints>> = { kernel_shape: attr.ints(s.kernel), strides: attr.ints(s.strides), pads: attr.ints(s.pads) };
  if (d.some((v) => v !== 1)) attrs.dilations = attr.ints(d);
  if (s.groups !== undefined && s.groups !== 1) attrs.group = attr.int(s.groups);
  if (extra.some((e) => e !== 0)) attrs.output_padding = attr.ints(extra);
  return ctx.b.op('ConvTranspose', [dY, w], attrs, `grad_${x}`);
}

/**
 * dW for stride 1 as batched GEMMs (about 2x faster than a Conv of X^T with dY^T as its kernel on
 * onnxruntime's CPU EP for our presets' shapes, whose Conv lowers a 14x14 "kernel" to a thin im2col GEMM):
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

/**
 * dW for strides above 1, from stride-1 weight gradients: the kernel taps (a, b) with a = p and
 * b = q modulo the strides read only the padded input's phase X[p::s_h, q::s_w], at stride 1, so
 * each phase's taps are weightGradUnfolded of that phase (a kernel of ceil((k - p) / s) rows),
 * and the phases' kernels interleave back into [C_out, C_in, k_h, k_w]. The Conv of X^T with dY^T
 * as a dilated kernel, used before, ran its im2col over the whole input per output tap:
 * ResNet-18's stride-2 convs at batch 32 took 64-108 ms each that way (bench/conv-layouts.ts).
 */
function weightGradByPhases(
  ctx: GradContext,
  x: string,
  dY: string,
  s: { cIn: number; cOut: number; h: number; wd: number; kernel: number[]; strides: number[]; pads: number[] },
): string {
  const { b } = ctx;
  const [kh, kw] = s.kernel;
  const [sh, sw] = s.strides;
  const [pt, pl, pb, pr] = s.pads;
  const ho = Math.floor((s.h + pt + pb - kh) / sh) + 1;
  const wo = Math.floor((s.wd + pl + pr - kw) / sw) + 1;
  const g = (name: string) => `${ctx.inputs[1]}_${name}`;
  const padded = pt + pb + pl + pr > 0 ? b.op('Pad', [x, b.constI([0, 0, pt, pl, 0, 0, pb, pr])], {}, g('padded')) : x;
  // Phases p < min(s, k): [C_out, C_in, Kp, 1, Kq, 1] each, Kp = ceil(k_h / s_h) taps (zeros past the kernel).
  const [phasesH, phasesW, tapsH, tapsW] = [Math.min(sh, kh), Math.min(sw, kw), Math.ceil(kh / sh), Math.ceil(kw / sw)];
  const rows: string[] = [];
  for (let p = 0; p < phasesH; p++) {
    const cols: string[] = [];
    for (let q = 0; q < phasesW; q++) {
      const [kp, kq] = [Math.ceil((kh - p) / sh), Math.ceil((kw - q) / sw)];
      const phase = b.op('Slice', [padded, b.constI([p, q]), b.constI([p + sh * (ho + kp - 2) + 1, q + sw * (wo + kq - 2) + 1]), b.constI([2, 3]), b.constI([sh, sw])], {}, g(`phase${p}${q}`));
      let dW = weightGradUnfolded(ctx, phase, dY, { cIn: s.cIn, cOut: s.cOut, h: ho + kp - 1, wd: wo + kq - 1, kernel: [kp, kq], pads: [0, 0, 0, 0] });
      if (kp < tapsH || kq < tapsW) dW = b.op('Pad', [dW, b.constI([0, 0, 0, 0, 0, 0, tapsH - kp, tapsW - kq])], {}, g(`phase${p}${q}_taps`));
      cols.push(b.op('Reshape', [dW, b.constI([s.cOut, s.cIn, tapsH, 1, tapsW, 1])], {}, g(`phase${p}${q}_taps`)));
    }
    rows.push(cols.length > 1 ? b.op('Concat', cols, { axis: attr.int(5) }, g(`phases${p}`)) : cols[0]);
  }
  const phases = rows.length > 1 ? b.op('Concat', rows, { axis: attr.int(3) }, g('phases')) : rows[0];
  // Tap a' of phase p is kernel row a' * s_h + p (where a phase is missing, k < s and a' is 0).
  let dW = b.op('Reshape', [phases, b.constI([s.cOut, s.cIn, tapsH * phasesH, tapsW * phasesW])], {}, g('interleaved'));
  if (tapsH * phasesH > kh || tapsW * phasesW > kw) dW = b.op('Slice', [dW, b.constI([0, 0]), b.constI([kh, kw]), b.constI([2, 3])], {}, g('interleaved'));
  return dW;
}
