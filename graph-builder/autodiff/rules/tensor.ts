/**
 * Gradient rules of the tensor-manipulation ops (Pad, Slice, Split, Squeeze, Unsqueeze, Gather,
 * Expand, Tile, Resize) and the index geometry their shape rules share (ops/tensor.ts).
 */
import { attr, type Dim, type GraphBuilder } from '../../graph/ir.ts';
import { attrInt, attrInts, attrStr, normAxis, staticDim } from '../../ops/spec.ts';
import { constInts, type GradContext, type GradRule, staticShape, unbroadcast } from '../rule.ts';

/** A Slice end past any dimension (ONNX clamps it): 'to the end' for positive steps, 'to the start' negated. */
export const SLICE_END = 2 ** 31;

/** Full-rank Pad amounts [begin..., end...] from Pad's pads and its optional axes (opset 18). */
export function fullPads(pads: number[], axes: number[] | undefined, rank: number): number[] {
  if (!axes) {
    if (pads.length !== 2 * rank) throw new Error(`has ${pads.length} pads for a rank-${rank} input; expected ${2 * rank}`);
    return pads;
  }
  if (pads.length !== 2 * axes.length) throw new Error(`has ${pads.length} pads for ${axes.length} axes; expected ${2 * axes.length}`);
  const full = new Array<number>(2 * rank).fill(0);
  axes.forEach((a, j) => {
    full[normAxis(a, rank)] = pads[j];
    full[rank + normAxis(a, rank)] = pads[axes.length + j];
  });
  return full;
}

/** The elements one Slice axis picks, as ONNX clamps starts and ends: indices start, start + step, ... (count of them). */
export function sliceRange(d: number, start: number, end: number, step: number): { start: number; count: number } {
  if (step === 0) throw new Error('has a step of 0');
  const at = (v: number) => (v < 0 ? v + d : v);
  const clamp = (v: number, lo: number, hi: number) => Math.max(lo, Math.min(hi, v));
  if (step > 0) {
    const [s, e] = [clamp(at(start), 0, d), clamp(at(end), 0, d)];
    return { start: s, count: Math.max(0, Math.ceil((e - s) / step)) };
  }
  const [s, e] = [clamp(at(start), 0, d - 1), clamp(at(end), -1, d - 1)];
  return { start: s, count: Math.max(0, Math.ceil((s - e) / -step)) };
}

/** Whether a Slice axis keeps every element in order (the only slice of a symbolic batch axis cnnlab takes). */
export const wholeAxis = (start: number, end: number, step: number) => step === 1 && start === 0 && end >= SLICE_END - 1;

/** Resize's attributes that decide which input elements feed an output element (defaults of opset 18). */
export interface ResizeMode {
  mode: string;
  transform: string;
  nearest: string;
}

/**
 * The 1-D map of Resize along one axis as ONNX defines it (onnxruntime's float32 arithmetic):
 * row i of the returned D x d matrix holds the weights of the input elements output i reads.
 * Nearest and linear only; input coordinates outside [0, d - 1] take the edge element.
 */
export function resizeMatrix(m: ResizeMode, d: number, D: number, scale: number): number[][] {
  const f = Math.fround;
  const s = f(scale);
  const original = (i: number): number => {
    switch (m.transform) {
      case 'half_pixel':
        return f(f(f(i + 0.5) / s) - 0.5);
      case 'pytorch_half_pixel':
        return D > 1 ? f(f(f(i + 0.5) / s) - 0.5) : 0;
      case 'align_corners':
        return D === 1 ? 0 : f(f(i * (d - 1)) / (D - 1));
      case 'asymmetric':
        return f(i / s);
      case 'tf_half_pixel_for_nn':
        return f(f(i + 0.5) / s);
      default:
        throw new Error(`supports coordinate_transformation_mode half_pixel, pytorch_half_pixel, align_corners and asymmetric, found ${m.transform}`);
    }
  };
  const nearest = (x: number): number => {
    const frac = x - Math.floor(x);
    switch (m.nearest) {
      case 'round_prefer_floor':
        return frac === 0.5 ? Math.floor(x) : Math.round(x);
      case 'round_prefer_ceil':
        return frac === 0.5 ? Math.ceil(x) : Math.round(x);
      case 'floor':
        return Math.floor(x);
      case 'ceil':
        return Math.ceil(x);
      default:
        throw new Error(`supports nearest_mode round_prefer_floor, round_prefer_ceil, floor and ceil, found ${m.nearest}`);
    }
  };
  const edge = (k: number) => Math.max(0, Math.min(d - 1, k));
  return Array.from({ length: D }, (_, i) => {
    const row = new Array<number>(d).fill(0);
    const x = original(i);
    if (m.mode === 'nearest') {
      row[edge(nearest(x))] = 1;
    } else if (m.mode === 'linear') {
      const c = Math.max(0, Math.min(d - 1, x));
      const lo = Math.floor(c);
      const w = c - lo;
      row[lo] += 1 - w;
      row[edge(lo + 1)] += w;
    } else {
      throw new Error(`supports mode nearest and linear, found ${m.mode}`);
    }
    return row;
  });
}

/** The integer factor s where a Resize map is nearest's block copy (output i reads input floor(i / s)); undefined otherwise. */
export function blockFactor(matrix: number[][], d: number): number | undefined {
  const D = matrix.length;
  if (D % d !== 0) return undefined;
  const s = D / d;
  return matrix.every((row, i) => row[Math.floor(i / s)] === 1 && row.reduce((a, v) => a + Math.abs(v), 0) === 1) ? s : undefined;
}

/** The values and dims of the Constant node (int64 or float) that makes `value`, or an error naming the node that needs them. */
function constTensor(ctx: GradContext, value: string, what: string): { values: number[]; dims: number[] } {
  const producer = ctx.b.graph.nodes.find((n) => n.outputs.includes(value));
  const t = producer?.op === 'Constant' ? producer.attrs.value : undefined;
  if (t?.kind !== 'tensor') throw new Error(`autodiff: ${ctx.node.op} node ${ctx.node.name} needs its ${what} ${value} to be a constant`);
  return { values: Array.from(t.value.data as ArrayLike<number | bigint>, Number), dims: t.value.dims };
}

/** Pad of `v` on one axis only (zeros; full-rank pads, which every execution provider takes). */
function padAxis(b: GraphBuilder, v: string, rank: number, axis: number, begin: number, end: number, hint: string): string {
  const pads = new Array<number>(2 * rank).fill(0);
  pads[axis] = begin;
  pads[rank + axis] = end;
  return b.op('Pad', [v, b.constI(pads)], {}, hint);
}

/** Slice of `v` on one axis. */
function sliceAxis(b: GraphBuilder, v: string, axis: number, start: number, end: number, step: number, hint: string): string {
  const inputs = [v, b.constI([start]), b.constI([end]), b.constI([axis])];
  return b.op('Slice', step === 1 ? inputs : [...inputs, b.constI([step])], {}, hint);
}

/** The sum over `axis` of `v`, that axis kept (size 1). */
const sumAxis = (b: GraphBuilder, v: string, axis: number, hint: string) => b.op('ReduceSum', [v, b.constI([axis])], { keepdims: attr.int(1) }, hint);

/**
 * Adjoint of edge padding on one axis (begin p, end q): the core rows, plus the sums of the
 * padded strips added onto the first and last rows.
 */
function edgeAdjoint(b: GraphBuilder, g: string, rank: number, axis: number, d: number, p: number, q: number, hint: string): string {
  const parts = [sliceAxis(b, g, axis, p, q > 0 ? -q : SLICE_END, 1, `${hint}_core`)];
  if (p > 0) parts.push(padAxis(b, sumAxis(b, sliceAxis(b, g, axis, 0, p, 1, `${hint}_head`), axis, `${hint}_head`), rank, axis, 0, d - 1, `${hint}_head`));
  if (q > 0) parts.push(padAxis(b, sumAxis(b, sliceAxis(b, g, axis, -q, SLICE_END, 1, `${hint}_tail`), axis, `${hint}_tail`), rank, axis, d - 1, 0, `${hint}_tail`));
  return parts.length > 1 ? b.op('Sum', parts, {}, hint) : parts[0];
}

/**
 * Adjoint of reflect padding on one axis (begin p, end q <= d - 1): Y[p - k] = X[k] and
 * Y[p + d - 1 + k] = X[d - 1 - k] for k >= 1, so each padded strip, reversed (Slice step -1),
 * adds onto rows 1..p and d - 1 - q..d - 2.
 */
function reflectAdjoint(b: GraphBuilder, g: string, rank: number, axis: number, d: number, p: number, q: number, hint: string): string {
  const parts = [sliceAxis(b, g, axis, p, q > 0 ? -q : SLICE_END, 1, `${hint}_core`)];
  if (p > 0) parts.push(padAxis(b, sliceAxis(b, g, axis, p - 1, -SLICE_END, -1, `${hint}_head`), rank, axis, 1, d - 1 - p, `${hint}_head`));
  if (q > 0) parts.push(padAxis(b, sliceAxis(b, g, axis, -1, -(q + 1), -1, `${hint}_tail`), rank, axis, d - 1 - q, 1, `${hint}_tail`));
  return parts.length > 1 ? b.op('Sum', parts, {}, hint) : parts[0];
}

/**
 * Y = Pad(X, pads, value, axes). Constant mode: dX is dY's inner block (a Slice), with zeros
 * where negative pads cropped X. Edge and reflect: per padded axis, the inner rows plus the
 * padded strips folded back onto the rows they copy (Pad is separable, so axis by axis).
 */
export const pad: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const shape = staticShape(ctx, x);
  const rank = shape.length;
  const pads = fullPads(constInts(ctx, ctx.inputs[1]), ctx.inputs[3] ? constInts(ctx, ctx.inputs[3]) : undefined, rank);
  const mode = attrStr(node, 'mode', 'constant');
  const hint = `grad_${x}`;
  let g = ctx.gradOutputs[0]!;
  const axes = shape.map((_, a) => a).filter((a) => pads[a] !== 0 || pads[rank + a] !== 0);
  if (mode === 'constant') {
    const grown = axes.filter((a) => pads[a] > 0 || pads[rank + a] > 0);
    if (grown.length > 0) {
      const starts = grown.map((a) => Math.max(0, pads[a]));
      const ends = grown.map((a) => (pads[rank + a] > 0 ? -pads[rank + a] : SLICE_END));
      g = b.op('Slice', [g, b.constI(starts), b.constI(ends), b.constI(grown)], {}, `${hint}_inner`);
    }
    const cropped = pads.map((p) => Math.max(0, -p));
    if (cropped.some((p) => p > 0)) g = b.op('Pad', [g, b.constI(cropped)], {}, `${hint}_uncrop`);
  } else {
    const adjoint = mode === 'edge' ? edgeAdjoint : reflectAdjoint;
    for (const a of axes) g = adjoint(b, g, rank, a, staticDim(shape[a], `size on padded axis ${a}`), pads[a], pads[rank + a], `${hint}_axis${a}`);
  }
  if (g === ctx.gradOutputs[0]) g = b.op('Identity', [g], {}, hint);
  b.note(g, 'float32', shape);
  return [g];
};

/**
 * Y = Slice(X, starts, ends, axes, steps). Per axis with step s picking `count` elements from
 * `lo` upward (a negative step is the reversed positive one): dY interleaved with s - 1 zeros
 * (Unsqueeze, Pad, Reshape) lands on lo, lo + s, ...; one Pad of zeros for all axes puts the
 * rows at their offsets.
 */
export const slice: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const shape = staticShape(ctx, x);
  const rank = shape.length;
  const starts = constInts(ctx, ctx.inputs[1]);
  const ends = constInts(ctx, ctx.inputs[2]);
  const axes = ctx.inputs[3] ? constInts(ctx, ctx.inputs[3]).map((a) => normAxis(a, rank)) : starts.map((_, i) => i);
  const steps = ctx.inputs[4] ? constInts(ctx, ctx.inputs[4]) : starts.map(() => 1);
  const hint = `grad_${x}`;
  const ranges = axes.map((a, j) => {
    const d = shape[a];
    if (typeof d === 'number') return sliceRange(d, starts[j], ends[j], steps[j]);
    if (wholeAxis(starts[j], ends[j], steps[j])) return undefined;
    throw new Error(`autodiff: Slice node ${node.name} slices axis ${a} of symbolic size ${d}; cnnlab slices static axes only`);
  });
  // dY's shape, brought back to X's axis by axis.
  const current: Dim[] = [...shape];
  axes.forEach((a, j) => {
    if (ranges[j]) current[a] = ranges[j].count;
  });
  const pads = new Array<number>(2 * rank).fill(0);
  let g = ctx.gradOutputs[0]!;
  axes.forEach((a, j) => {
    const range = ranges[j];
    if (!range) return;
    const d = shape[a] as number;
    const { start, count } = range;
    const s = Math.abs(steps[j]);
    const lo = count === 0 ? 0 : steps[j] > 0 ? start : start - (count - 1) * s;
    if (steps[j] < 0 && count > 1) g = sliceAxis(b, g, a, -1, -SLICE_END, -1, `${hint}_reversed`);
    let length = count;
    if (s > 1 && count > 1) {
      const spread = padAxis(b, b.op('Unsqueeze', [g, b.constI([a + 1])], {}, `${hint}_rows`), rank + 1, a + 1, 0, s - 1, `${hint}_spread`);
      const target = [...current.slice(0, a).map(() => 0), count * s, ...current.slice(a + 1).map((v, k) => staticDim(v, `size on axis ${a + 1 + k}`))];
      g = b.op('Reshape', [spread, b.constI(target)], {}, `${hint}_interleaved`);
      length = count * s;
      if (lo + length > d) {
        length = (count - 1) * s + 1;
        g = sliceAxis(b, g, a, 0, length, 1, `${hint}_interleaved`);
      }
    }
    current[a] = length;
    pads[a] = lo;
    pads[rank + a] = d - lo - length;
  });
  if (pads.some((p) => p !== 0)) g = b.op('Pad', [g, b.constI(pads)], {}, hint);
  else if (g === ctx.gradOutputs[0]) g = b.op('Identity', [g], {}, hint);
  b.note(g, 'float32', shape);
  return [g];
};

/** [Y1, ..., Yk] = Split(X): dX is the Concat of the dYi, zeros (shaped as Yi) where Yi got no gradient. */
export const split: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const parts = ctx.outputs.map((y, k) => ctx.gradOutputs[k] ?? b.op('ConstantOfShape', [b.op('Shape', [y], {}, `${y}_shape`)], {}, `grad_${y}_zeros`));
  const dX = b.op('Concat', parts, { axis: attr.int(attrInt(node, 'axis', 0)) }, `grad_${x}`);
  b.note(dX, 'float32', b.shapes.get(x));
  return [dX];
};

/**
 * Y = Gather(X, indices, axis) with constant indices. A scalar index: dY re-inserted as one row
 * among zeros (Unsqueeze, Pad). Otherwise dX = onehot^T @ dY over the gathered axis, [d, k]
 * times dY viewed as [..., k, rest]: repeated indices add up, and every execution provider has
 * MatMul.
 */
export const gather: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const shape = staticShape(ctx, x);
  const axis = normAxis(attrInt(node, 'axis', 0), shape.length);
  const d = staticDim(shape[axis], `size on the gathered axis ${axis}`);
  const { values, dims } = constTensor(ctx, ctx.inputs[1], 'indices');
  const indices = values.map((i) => (i < 0 ? i + d : i));
  const hint = `grad_${x}`;
  let dX: string;
  if (dims.length === 0) {
    const row = b.op('Unsqueeze', [ctx.gradOutputs[0]!, b.constI([axis])], {}, `${hint}_row`);
    dX = padAxis(b, row, shape.length, axis, indices[0], d - 1 - indices[0], hint);
  } else {
    const k = indices.length;
    const onehotT = new Array<number>(d * k).fill(0);
    indices.forEach((i, m) => {
      onehotT[i * k + m] = 1;
    });
    const rows = b.op('Reshape', [ctx.gradOutputs[0]!, b.constI([...shape.slice(0, axis).map(() => 0), k, -1])], {}, `${hint}_rows`);
    const summed = b.op('MatMul', [b.constF(onehotT, [d, k], `${hint}_onehot`), rows], {}, `${hint}_rows`);
    dX = b.op('Reshape', [summed, b.op('Shape', [x], {}, `${x}_shape`)], {}, hint);
  }
  b.note(dX, 'float32', shape);
  return [dX];
};

/** Y = Expand(X, shape): dX is dY summed over the broadcast axes. */
export const expand: GradRule = (ctx) => [unbroadcast(ctx, ctx.gradOutputs[0]!, ctx.inputs[0], ctx.outputs[0])];

/**
 * dY viewed with each listed axis split in two ([r, d] for Tile's copies, [d, s] for Resize's
 * blocks) and summed over the copy part: dX with X's shape.
 */
function foldCopies(ctx: GradContext, shape: Dim[], copies: number[], copiesFirst: boolean): string {
  const { b } = ctx;
  const target: number[] = [];
  const sumAxes: number[] = [];
  shape.forEach((d, i) => {
    if (copies[i] === 1) {
      target.push(i === 0 ? 0 : staticDim(d, `size on axis ${i}`));
      return;
    }
    const size = staticDim(d, `size on axis ${i}`);
    sumAxes.push(target.length + (copiesFirst ? 0 : 1));
    target.push(...(copiesFirst ? [copies[i], size] : [size, copies[i]]));
  });
  const hint = `grad_${ctx.inputs[0]}`;
  const dX =
    sumAxes.length === 0
      ? b.op('Identity', [ctx.gradOutputs[0]!], {}, hint)
      : b.op('ReduceSum', [b.op('Reshape', [ctx.gradOutputs[0]!, b.constI(target)], {}, `${hint}_blocks`), b.constI(sumAxes)], { keepdims: attr.int(0) }, hint);
  b.note(dX, 'float32', shape);
  return dX;
}

/** Y = Tile(X, repeats): Y viewed as [r0, d0, r1, d1, ...]; dX sums dY over the r axes. */
export const tile: GradRule = (ctx) => {
  const shape = staticShape(ctx, ctx.inputs[0]);
  const repeats = constInts(ctx, ctx.inputs[1]);
  if (repeats[0] !== 1 && typeof shape[0] !== 'number') throw new Error(`autodiff: Tile node ${ctx.node.name} repeats the batch axis; cnnlab keeps the batch size symbolic`);
  return [foldCopies(ctx, shape, repeats, true)];
};

/** Resize's scale on every axis, from its scales input or (as sizes / input sizes) its sizes input; `axes` (opset 18) fills the rest with 1. */
export function resizeScales(rank: number, inShape: Dim[], scales: number[] | undefined, sizes: number[] | undefined, axes: number[] | undefined): number[] {
  const on = (axes ?? inShape.map((_, i) => i)).map((a) => normAxis(a, rank));
  const given = scales && scales.length > 0 ? scales : sizes?.map((s, j) => (typeof inShape[on[j]] === 'number' ? s / (inShape[on[j]] as number) : 1));
  if (!given || given.length !== on.length) throw new Error(`needs constant scales or sizes, one for each of its ${on.length} axes`);
  const full = new Array<number>(rank).fill(1);
  on.forEach((a, j) => {
    full[a] = given[j];
  });
  return full;
}

/** Y = Resize(X): nearest with integer factors sums each block of dY; otherwise dX = A_H^T dY A_W over the last two axes, A being each axis's interpolation matrix. */
export const resize: GradRule = (ctx) => {
  const { b, node } = ctx;
  const x = ctx.inputs[0];
  const shape = staticShape(ctx, x);
  const rank = shape.length;
  const floats = (i: number, what: string) => (ctx.inputs[i] ? constTensor(ctx, ctx.inputs[i], what).values : undefined);
  const axesAttr = node.attrs.axes ? attrInts(node, 'axes', []) : undefined;
  const scales = resizeScales(rank, shape, floats(2, 'scales'), floats(3, 'sizes'), axesAttr);
  const mode: ResizeMode = { mode: attrStr(node, 'mode', 'nearest'), transform: attrStr(node, 'coordinate_transformation_mode', 'half_pixel'), nearest: attrStr(node, 'nearest_mode', 'round_prefer_floor') };
  const where = `autodiff: Resize node ${node.name}`;
  if (mode.mode !== 'nearest' && mode.mode !== 'linear') throw new Error(`${where} supports mode nearest and linear, found ${mode.mode}`);
  const scaled = shape.map((_, a) => a).filter((a) => scales[a] !== 1);
  if (attrInt(node, 'antialias', 0) === 1 && scaled.some((a) => scales[a] < 1)) throw new Error(`${where} supports antialias only where it has no effect (upsampling), found scales [${scales.join(', ')}]`);
  if (scaled.includes(0) && typeof shape[0] !== 'number') throw new Error(`${where} resizes the batch axis; cnnlab keeps the batch size symbolic`);
  const outShape = b.shapes.get(ctx.outputs[0]);
  const matrices = new Map(
    scaled.map((a) => {
      const d = staticDim(shape[a], `size on resized axis ${a}`);
      const D = typeof outShape?.[a] === 'number' ? outShape[a] : Math.floor(d * scales[a]);
      return [a, resizeMatrix(mode, d, D, scales[a])];
    }),
  );
  const factors = shape.map((d, a) => (matrices.has(a) ? blockFactor(matrices.get(a)!, d as number) : 1));
  if (factors.every((f) => f !== undefined)) return [foldCopies(ctx, shape, factors as number[], false)];
  if (scaled.some((a) => a < rank - 2)) throw new Error(`${where} supports ${mode.mode} resizing of the last two axes only (or nearest with integer scales), found scales [${scales.join(', ')}]`);
  let g = ctx.gradOutputs[0]!;
  const hint = `grad_${x}`;
  const flat = (m: number[][], transpose: boolean) => (transpose ? m[0].flatMap((_, j) => m.map((row) => row[j])) : m.flat());
  const w = matrices.get(rank - 1);
  if (w) g = b.op('MatMul', [g, b.constF(flat(w, false), [w.length, w[0].length], `${hint}_interp_w`)], {}, `${hint}_w`);
  const h = matrices.get(rank - 2);
  if (h) g = b.op('MatMul', [b.constF(flat(h, true), [h[0].length, h.length], `${hint}_interp_h`), g], {}, hint);
  b.note(g, 'float32', shape);
  return [g];
};
