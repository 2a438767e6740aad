import { concat, reshape, transpose } from '../autodiff/rules/shape.ts';
import { expand, fullPads, gather, pad, resize, resizeMatrix, type ResizeMode, resizeScales, slice, sliceRange, split, tile, wholeAxis } from '../autodiff/rules/tensor.ts';
import { attr, broadcastShapes, type Dim, type Node } from '../graph/ir.ts';
import { attrFloat, attrFloats, attrInt, attrInts, attrStr, type NormalizeContext, normAxis, type OpTable, type ShapeContext, staticDim, withoutAttrs } from './spec.ts';

/** Reshape's output from its (constant) target: 0 copies the input's dimension, -1 takes the rest. */
export function reshapeTarget(input: Dim[], target: number[] | undefined): Dim[] {
  if (!target) throw new Error('needs a constant target shape (a Constant, an initialiser or a foldable shape computation)');
  const out: (Dim | undefined)[] = target.map((t, i) => (t === 0 ? input[i] : t === -1 ? undefined : t));
  const staticPart = (dims: (Dim | undefined)[]) => dims.reduce<number>((a, d) => (typeof d === 'number' ? a * d : a), 1);
  const hasN = (dims: (Dim | undefined)[]) => dims.includes('N');
  const free = out.indexOf(undefined);
  if (free >= 0) {
    const rest = staticPart(input) / staticPart(out);
    const batch = hasN(input) && !hasN(out);
    if (batch && rest !== 1) throw new Error(`folds the batch axis into other dimensions (target [${target.join(', ')}]); keep the batch as the first axis`);
    if (!Number.isInteger(rest)) throw new Error(`cannot reshape [${input.join(', ')}] to [${target.join(', ')}]`);
    out[free] = batch ? 'N' : rest;
  }
  if (hasN(input) !== hasN(out) || staticPart(input) !== staticPart(out)) throw new Error(`cannot reshape [${input.join(', ')}] to [${target.join(', ')}]`);
  return out as Dim[];
}

/** Int64 bounds as an exact int64 constant takes them (INT64_MAX read as a double is 2^63, past int64). */
const safeInts = (values: number[]) => values.map((v) => Math.max(-Number.MAX_SAFE_INTEGER, Math.min(Number.MAX_SAFE_INTEGER, v)));

/** An input's constant values, or an error naming what needed them; undefined where the input is absent. */
function constantInput(n: Node, c: Pick<ShapeContext, 'constant'>, i: number, what: string): number[] | undefined {
  if (!n.inputs[i]) return undefined;
  const v = c.constant(n.inputs[i]);
  if (!v) throw new Error(`needs constant ${what}`);
  return v;
}

/** The node with an old opset's int attributes moved to int64 constant inputs (in `keys` order, absent ones left off the end). */
function attrsToInputs(n: Node, c: NormalizeContext, keys: string[]): Node {
  const given = keys.map((k) => (n.attrs[k] ? c.constI(attrInts(n, k, []), `${n.name}_${k}`) : ''));
  while (given.length > 0 && given[given.length - 1] === '') given.pop();
  return { ...n, inputs: [n.inputs[0], ...given], attrs: withoutAttrs(n, keys) };
}

/** Pad's output: pads (and opset 18's axes) constant; modes constant, reflect and edge; negative pads crop in constant mode. */
function padShape(n: Node, c: ShapeContext): Dim[] {
  const s = c.shape(n.inputs[0]);
  const mode = attrStr(n, 'mode', 'constant');
  if (!['constant', 'reflect', 'edge'].includes(mode)) throw new Error(`supports mode constant, reflect and edge, found ${mode}`);
  const pads = fullPads(constantInput(n, c, 1, 'pads') ?? [], constantInput(n, c, 3, 'axes'), s.length);
  return s.map((d, a) => {
    const [p, q] = [pads[a], pads[s.length + a]];
    if (p === 0 && q === 0) return d;
    if (typeof d !== 'number') throw new Error(`pads axis ${a} of symbolic size ${d}; cnnlab pads static axes only`);
    if (mode !== 'constant' && (p < 0 || q < 0)) throw new Error(`supports negative pads (cropping) in mode constant only, found mode ${mode}`);
    if (mode === 'reflect' && Math.max(p, q) > d - 1) throw new Error(`reflects ${Math.max(p, q)} rows of an axis of size ${d}; reflect padding takes at most ${d - 1}`);
    if (d + p + q < 0) throw new Error(`crops ${-p - q} rows of an axis of size ${d}`);
    return d + p + q;
  });
}

/** Pad as opset 18 writes it: opset 2-10's pads/value attributes (opset 1's paddings) as inputs; opset 18's axes folded into full-rank pads. */
function padNormalize(n: Node, c: NormalizeContext): Node[] {
  const x = n.inputs[0];
  if (n.attrs.pads || n.attrs.paddings) {
    const inputs = [x, c.constI(attrInts(n, n.attrs.pads ? 'pads' : 'paddings', []), `${n.name}_pads`)];
    const value = attrFloat(n, 'value', 0);
    if (attrStr(n, 'mode', 'constant') === 'constant' && value !== 0) inputs.push(c.constF([value], [], `${n.name}_value`));
    return [{ ...n, inputs, attrs: withoutAttrs(n, ['pads', 'paddings', 'value']) }];
  }
  const [pads, axes, rank] = [n.inputs[1] ? c.constant(n.inputs[1]) : undefined, n.inputs[3] ? c.constant(n.inputs[3]) : undefined, c.shape(x)?.length];
  if (!axes || !pads || rank === undefined) return [n];
  return [{ ...n, inputs: [x, c.constI(fullPads(pads, axes, rank), `${n.name}_pads`), ...(n.inputs[2] ? [n.inputs[2]] : [])] }];
}

/** Slice's output: constant starts, ends, axes and steps, clamped as ONNX defines; a symbolic axis only whole. */
function sliceShape(n: Node, c: ShapeContext): Dim[] {
  const s = c.shape(n.inputs[0]);
  const starts = constantInput(n, c, 1, 'starts');
  const ends = constantInput(n, c, 2, 'ends');
  if (!starts || !ends) throw new Error('needs constant starts and ends');
  const axes = constantInput(n, c, 3, 'axes') ?? starts.map((_, i) => i);
  const steps = constantInput(n, c, 4, 'steps') ?? starts.map(() => 1);
  const out = [...s];
  axes.forEach((a0, j) => {
    const a = normAxis(a0, s.length);
    const d = s[a];
    if (typeof d === 'number') out[a] = sliceRange(d, starts[j], ends[j], steps[j]).count;
    else if (!wholeAxis(starts[j], ends[j], steps[j])) throw new Error(`slices axis ${a} of symbolic size ${d}; cnnlab slices static axes only`);
  });
  return out;
}

/** Slice as opset 10+ writes it: opset 1-9's starts/ends/axes attributes as inputs; bounds past int64 clamped. */
function sliceNormalize(n: Node, c: NormalizeContext): Node[] {
  if (n.attrs.starts) {
    const clamped = { ...n, attrs: { ...n.attrs, starts: attr.ints(safeInts(attrInts(n, 'starts', []))), ends: attr.ints(safeInts(attrInts(n, 'ends', []))) } };
    return [attrsToInputs(clamped, c, ['starts', 'ends', 'axes'])];
  }
  const inputs = n.inputs.map((v, i) => {
    const values = (i === 1 || i === 2) && v ? c.constant(v) : undefined;
    return values && values.some((x) => Math.abs(x) > Number.MAX_SAFE_INTEGER) ? c.constI(safeInts(values), `${n.name}_${i === 1 ? 'starts' : 'ends'}`) : v;
  });
  return [{ ...n, inputs }];
}

/** Split's outputs: sizes from the split input (opset 13+) or attribute (older), else num_outputs (opset 18; the last part smaller) or equal parts. */
function splitShapes(n: Node, c: ShapeContext): Dim[][] {
  const s = c.shape(n.inputs[0]);
  const axis = normAxis(attrInt(n, 'axis', 0), s.length);
  const d = s[axis];
  if (typeof d !== 'number') throw new Error(`splits axis ${axis} of symbolic size ${d}; cnnlab splits static axes only`);
  let sizes = constantInput(n, c, 1, 'split sizes') ?? (n.attrs.split ? attrInts(n, 'split', []) : undefined);
  if (!sizes) {
    const k = attrInt(n, 'num_outputs', n.outputs.length);
    const chunk = Math.ceil(d / k);
    sizes = Array.from({ length: k }, (_, i) => Math.max(0, Math.min(chunk, d - chunk * i)));
  }
  if (sizes.length !== n.outputs.length || sizes.some((k) => k < 0) || sizes.reduce((a, k) => a + k, 0) !== d) {
    throw new Error(`splits an axis of size ${d} into [${sizes.join(', ')}] for ${n.outputs.length} outputs`);
  }
  return sizes.map((k) => s.map((v, i) => (i === axis ? k : v)));
}

/** Split as opset 18 writes it: opset 2-12's split attribute as an input; no sizes at all as num_outputs. */
function splitNormalize(n: Node, c: NormalizeContext): Node[] {
  if (n.attrs.split) return [attrsToInputs(n, c, ['split'])];
  if (!n.inputs[1] && !n.attrs.num_outputs) return [{ ...n, inputs: [n.inputs[0]], attrs: { ...n.attrs, num_outputs: attr.int(n.outputs.length) } }];
  return [n];
}

/** The axes of Squeeze or Unsqueeze: the input (opset 13+) or the attribute (older); undefined where absent. */
const axesOf = (n: Node, c: ShapeContext) => constantInput(n, c, 1, 'axes') ?? (n.attrs.axes ? attrInts(n, 'axes', []) : undefined);

/** Squeeze's output: the listed axes (each of size 1) removed, or every axis of size 1 where none are listed. */
function squeezeShape(n: Node, c: ShapeContext): Dim[] {
  const s = c.shape(n.inputs[0]);
  const axes = axesOf(n, c)?.map((a) => normAxis(a, s.length));
  if (!axes) return s.filter((d) => d !== 1);
  for (const a of axes) if (s[a] !== 1) throw new Error(`squeezes axis ${a} of size ${s[a]}; only axes of size 1 can be squeezed`);
  return s.filter((_, i) => !axes.includes(i));
}

/** Unsqueeze's output: axes of size 1 inserted where the output's axes list says. */
function unsqueezeShape(n: Node, c: ShapeContext): Dim[] {
  const s = c.shape(n.inputs[0]);
  const given = axesOf(n, c);
  if (!given) throw new Error('needs constant axes');
  const rank = s.length + given.length;
  const axes = given.map((a) => normAxis(a, rank));
  const rest = [...s];
  return Array.from({ length: rank }, (_, i) => (axes.includes(i) ? 1 : rest.shift()!));
}

/** Resize's output: floor(size * scale), or sizes; a symbolic axis keeps its size (scale 1). */
function resizeShape(n: Node, c: ShapeContext): Dim[] {
  const s = c.shape(n.inputs[0]);
  const ctm = attrStr(n, 'coordinate_transformation_mode', 'half_pixel');
  if (ctm === 'tf_crop_and_resize') throw new Error('supports every coordinate_transformation_mode but tf_crop_and_resize');
  const axesAttr = n.attrs.axes ? attrInts(n, 'axes', []) : undefined;
  const scales = constantInput(n, c, 2, 'scales');
  const sizes = constantInput(n, c, 3, 'sizes');
  if (sizes && sizes.length > 0 && attrStr(n, 'keep_aspect_ratio_policy', 'stretch') !== 'stretch') throw new Error(`supports keep_aspect_ratio_policy stretch, found ${attrStr(n, 'keep_aspect_ratio_policy', '')}`);
  const full = resizeScales(s.length, s, scales, sizes, axesAttr);
  const bySize = !(scales && scales.length > 0);
  const on = (axesAttr ?? s.map((_, i) => i)).map((a) => normAxis(a, s.length));
  return s.map((d, a) => {
    if (typeof d !== 'number') {
      if (bySize && on.includes(a)) throw new Error(`resizes to fixed sizes on axis ${a} of symbolic size ${d}; export it with scale factors`);
      if (full[a] !== 1) throw new Error(`resizes axis ${a} of symbolic size ${d}`);
      return d;
    }
    return bySize && on.includes(a) ? sizes![on.indexOf(a)] : Math.floor(d * full[a]);
  });
}

/**
 * Resize as opset 18 writes it. Opset 10 (X, scales) maps as Upsample does (asymmetric, floor);
 * opset 11-12's roi becomes '' (it only counts for tf_crop_and_resize), empty scales ''; sizes
 * with integer ratios become scales (the batch entry 1); tf_half_pixel_for_nn, which opset 13
 * dropped, becomes asymmetric/floor where the two pick the same pixels.
 */
function resizeNormalize(n: Node, c: NormalizeContext): Node[] {
  const x = n.inputs[0];
  if (c.opset < 11) return [{ ...n, op: 'Resize', inputs: [x, '', n.inputs[1]], attrs: upsampleAttrs(attrStr(n, 'mode', 'nearest')) }];
  const shape = c.shape(x);
  let attrs = n.attrs;
  let [scales, sizes] = [n.inputs[2] ?? '', n.inputs[3] ?? ''];
  if (scales && c.constant(scales)?.length === 0) scales = '';
  const sizeValues = sizes ? c.constant(sizes) : undefined;
  if (!scales && sizeValues && shape && !n.attrs.axes && sizeValues.length === shape.length) {
    const ratios = shape.map((d, i) => (typeof d === 'number' ? sizeValues[i] / d : 1));
    if (ratios.every((r) => Number.isInteger(r) && r >= 1)) [scales, sizes] = [c.constF(ratios, [ratios.length], `${n.name}_scales`), ''];
  }
  if (attrStr(n, 'coordinate_transformation_mode', 'half_pixel') === 'tf_half_pixel_for_nn') {
    const mode: ResizeMode = { mode: attrStr(n, 'mode', 'nearest'), transform: 'tf_half_pixel_for_nn', nearest: attrStr(n, 'nearest_mode', 'round_prefer_floor') };
    const asymmetric: ResizeMode = { mode: mode.mode, transform: 'asymmetric', nearest: 'floor' };
    const full = shape && resizeScales(shape.length, shape, scales ? c.constant(scales) : undefined, sizeValues, undefined);
    const same = full && shape.every((d, a) => typeof d !== 'number' || full[a] === 1 || JSON.stringify(resizeMatrix(mode, d, Math.floor(d * full[a]), full[a])) === JSON.stringify(resizeMatrix(asymmetric, d, Math.floor(d * full[a]), full[a])));
    if (!same) throw new Error('uses coordinate_transformation_mode tf_half_pixel_for_nn (dropped in opset 13) where it differs from asymmetric with nearest_mode floor');
    attrs = { ...attrs, coordinate_transformation_mode: attr.string('asymmetric'), nearest_mode: attr.string('floor') };
  }
  const roi = attrStr(n, 'coordinate_transformation_mode', 'half_pixel') === 'tf_crop_and_resize' ? (n.inputs[1] ?? '') : '';
  return [{ ...n, inputs: sizes ? [x, roi, scales, sizes] : [x, roi, scales], attrs }];
}

/** Resize attributes of Upsample's pixel mapping (opset 7-9, and Resize 10): asymmetric coordinates, nearest rounding down. */
function upsampleAttrs(mode: string): Node['attrs'] {
  const m = mode === 'bilinear' ? 'linear' : mode;
  if (m !== 'nearest' && m !== 'linear') throw new Error(`supports mode nearest and linear, found ${mode}`);
  return { mode: attr.string(m), coordinate_transformation_mode: attr.string('asymmetric'), ...(m === 'nearest' ? { nearest_mode: attr.string('floor') } : {}) };
}

/** Upsample's scales: the attribute (opset 7-8) or the constant input (opset 9). */
function upsampleScales(n: Node, c: Pick<ShapeContext, 'constant'>): number[] {
  const scales = n.attrs.scales ? attrFloats(n, 'scales', []) : constantInput(n, c, 1, 'scales');
  if (!scales) throw new Error('needs scales (an attribute, or a constant input from opset 9)');
  return scales;
}

export const TENSOR_OPS: OpTable = {
  Reshape: {
    shape: (n, c) => reshapeTarget(c.shape(n.inputs[0]), c.constant(n.inputs[1])),
    grad: reshape,
    constantInputs: (i) => i === 1,
    // Opset 1-4: the target as an attribute.
    normalize: (n, c) => (n.attrs.shape ? [attrsToInputs(n, c, ['shape'])] : [n]),
  },
  Flatten: {
    shape: (n, c) => {
      const s = c.shape(n.inputs[0]);
      const axis = normAxis(attrInt(n, 'axis', 1), s.length);
      const size = (dims: Dim[]) => dims.reduce<number>((a, d) => a * staticDim(d, 'size'), 1);
      if (typeof s[0] === 'number') return [size(s.slice(0, axis)), size(s.slice(axis))];
      if (axis !== 1) throw new Error(`supports axis 1 after the batch axis only, found axis ${axis}`);
      return [s[0], size(s.slice(1))];
    },
    grad: reshape,
  },
  Transpose: {
    shape: (n, c) => {
      const s = c.shape(n.inputs[0]);
      return attrInts(n, 'perm', s.map((_, i) => s.length - 1 - i)).map((p) => s[p]);
    },
    grad: transpose,
  },
  Concat: {
    shape: (n, c) => {
      const shapes = n.inputs.map(c.shape);
      const axis = normAxis(attrInt(n, 'axis', 0), shapes[0].length);
      const out = [...shapes[0]];
      out[axis] = shapes.reduce((a, s) => a + staticDim(s[axis], 'size on the concatenation axis'), 0);
      return out;
    },
    grad: concat,
    // Opset 1-3: axis optional, default 1.
    normalize: (n, c) => (c.opset < 4 && !n.attrs.axis ? [{ ...n, attrs: { ...n.attrs, axis: attr.int(1) } }] : [n]),
  },
  Pad: { shape: padShape, grad: pad, constantInputs: (i) => i > 0, normalize: padNormalize },
  Slice: { shape: sliceShape, grad: slice, constantInputs: (i) => i > 0, normalize: sliceNormalize },
  Split: { shape: (n, c) => splitShapes(n, c)[0], shapes: splitShapes, grad: split, constantInputs: (i) => i === 1, normalize: splitNormalize },
  // Opset 1-12: axes as an attribute.
  Squeeze: { shape: squeezeShape, grad: reshape, constantInputs: (i) => i === 1, normalize: (n, c) => (n.attrs.axes ? [attrsToInputs(n, c, ['axes'])] : [n]) },
  Unsqueeze: { shape: unsqueezeShape, grad: reshape, constantInputs: (i) => i === 1, normalize: (n, c) => (n.attrs.axes ? [attrsToInputs(n, c, ['axes'])] : [n]) },
  Gather: {
    shape: (n, c) => {
      const s = c.shape(n.inputs[0]);
      const axis = normAxis(attrInt(n, 'axis', 0), s.length);
      if (typeof s[axis] !== 'number') throw new Error(`gathers on axis ${axis} of symbolic size ${s[axis]}; cnnlab gathers on static axes only`);
      return [...s.slice(0, axis), ...c.shape(n.inputs[1]), ...s.slice(axis + 1)];
    },
    grad: gather,
    constantInputs: (i) => i === 1,
  },
  Expand: {
    shape: (n, c) => {
      const s = c.shape(n.inputs[0]);
      const target = constantInput(n, c, 1, 'shape') ?? [];
      const out = broadcastShapes([s, target]);
      if (!out) throw new Error(`cannot expand [${s.join(', ')}] to [${target.join(', ')}]`);
      return out;
    },
    grad: expand,
    constantInputs: (i) => i === 1,
  },
  Tile: {
    shape: (n, c) => {
      const s = c.shape(n.inputs[0]);
      const repeats = constantInput(n, c, 1, 'repeats') ?? [];
      if (repeats.length !== s.length) throw new Error(`has ${repeats.length} repeats for a rank-${s.length} input`);
      return s.map((d, i) => {
        if (repeats[i] === 1) return d;
        if (typeof d !== 'number') throw new Error(`repeats axis ${i} of symbolic size ${d} (the batch); cnnlab keeps the batch size symbolic`);
        return d * repeats[i];
      });
    },
    grad: tile,
    constantInputs: (i) => i === 1,
  },
  Resize: { shape: resizeShape, grad: resize, constantInputs: (i) => i > 0, normalize: resizeNormalize },
  Upsample: {
    shape: (n, c) => {
      const s = c.shape(n.inputs[0]);
      const scales = upsampleScales(n, c);
      return s.map((d, a) => (scales[a] === 1 ? d : Math.floor(staticDim(d, `size on upsampled axis ${a}`) * scales[a])));
    },
    normalize: (n, c) => {
      const scales = upsampleScales(n, c);
      return [{ op: 'Resize', name: n.name, inputs: [n.inputs[0], '', c.constF(scales, [scales.length], `${n.name}_scales`)], outputs: n.outputs, attrs: upsampleAttrs(attrStr(n, 'mode', 'nearest')) }];
    },
  },
};

