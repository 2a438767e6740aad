import { type AttrValue, broadcastShapes, type Dim, type Node } from '../graph/ir.ts';

/** Static shapes of imported values, batch axis 'N'; a problem is thrown as a sentence about the node. */
export type ShapeOf = (value: string) => Dim[];

const ints = (attrs: Record<string, AttrValue>, key: string, fallback: number[]): number[] => {
  const a = attrs[key];
  return a?.kind === 'ints' ? a.value : fallback;
};
const int = (attrs: Record<string, AttrValue>, key: string, fallback: number): number => {
  const a = attrs[key];
  return a?.kind === 'int' ? a.value : fallback;
};
const str = (attrs: Record<string, AttrValue>, key: string, fallback: string): string => {
  const a = attrs[key];
  return a?.kind === 'string' ? a.value : fallback;
};

function spatial(d: Dim, what: string): number {
  if (typeof d !== 'number') throw new Error(`needs a static ${what}, found '${d}'`);
  return d;
}

/**
 * Explicit pads [top, left, bottom, right] for a window op, resolving auto_pad as ONNX defines
 * it (SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the start).
 */
export function windowPads(attrs: Record<string, AttrValue>, input: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const auto = str(attrs, 'auto_pad', 'NOTSET');
  if (auto === 'NOTSET') return ints(attrs, 'pads', [0, 0, 0, 0]);
  if (auto === 'VALID') return [0, 0, 0, 0];
  const pads = [0, 0, 0, 0];
  for (let i = 0; i < 2; i++) {
    const out = Math.ceil(input[i] / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - input[i]);
    const small = Math.floor(total / 2);
    [pads[i], pads[i + 2]] = auto === 'SAME_LOWER' ? [total - small, small] : [small, total - small];
  }
  return pads;
}

function windowOut(op: string, x: Dim[], attrs: Record<string, AttrValue>, kernel: number[], channels: Dim): Dim[] {
  const hw = [spatial(x[2], 'height'), spatial(x[3], 'width')];
  const strides = ints(attrs, 'strides', [1, 1]);
  const dilations = ints(attrs, 'dilations', [1, 1]);
  const pads = windowPads(attrs, hw, kernel, strides, dilations);
  const ceil = int(attrs, 'ceil_mode', 0) === 1;
  const out = hw.map((n, i) => {
    const span = n + pads[i] + pads[i + 2] - dilations[i] * (kernel[i] - 1) - 1;
    if (span < 0) throw new Error(`receives ${hw.join('x')} maps, smaller than its ${kernel.join('x')} window`);
    return (ceil ? Math.ceil(span / strides[i]) : Math.floor(span / strides[i])) + 1;
  });
  if (op === 'MaxPool' && ceil) throw new Error('ceil_mode=1 is not supported; export with ceil_mode=False');
  return [x[0], channels, ...out];
}

/** The output shape of a supported forward op, from its input shapes, attributes and constant inputs. */
export function inferShape(node: Node, shapeOf: ShapeOf, constant: (value: string) => number[] | undefined): Dim[] {
  const { op, attrs } = node;
  const x = () => shapeOf(node.inputs[0]);
  switch (op) {
    case 'Conv': {
      const w = shapeOf(node.inputs[1]) as number[];
      return windowOut(op, x(), attrs, ints(attrs, 'kernel_shape', w.slice(2)), w[0]);
    }
    case 'ConvTranspose': {
      const xs = x();
      const w = shapeOf(node.inputs[1]) as number[];
      const kernel = ints(attrs, 'kernel_shape', w.slice(2));
      const strides = ints(attrs, 'strides', [1, 1]);
      const dilations = ints(attrs, 'dilations', [1, 1]);
      if (str(attrs, 'auto_pad', 'NOTSET') !== 'NOTSET' || attrs.output_shape) throw new Error('auto_pad and output_shape are not supported; export with explicit padding');
      const pads = ints(attrs, 'pads', [0, 0, 0, 0]);
      const extra = ints(attrs, 'output_padding', [0, 0]);
      const hw = [spatial(xs[2], 'height'), spatial(xs[3], 'width')];
      return [xs[0], w[1] * int(attrs, 'group', 1), ...hw.map((n, i) => (n - 1) * strides[i] - pads[i] - pads[i + 2] + dilations[i] * (kernel[i] - 1) + extra[i] + 1)];
    }
    case 'MaxPool':
    case 'AveragePool':
      return windowOut(op, x(), attrs, ints(attrs, 'kernel_shape', []), x()[1]);
    case 'GlobalAveragePool':
    case 'GlobalMaxPool':
      return [x()[0], x()[1], 1, 1];
    case 'Gemm': {
      const a = shapeOf(node.inputs[0]);
      const b = shapeOf(node.inputs[1]);
      if (a.length !== 2 || b.length !== 2) throw new Error(`needs 2-D inputs, found [${a}] and [${b}]`);
      return [int(attrs, 'transA', 0) ? a[1] : a[0], int(attrs, 'transB', 0) ? b[0] : b[1]];
    }
    case 'MatMul': {
      const a = shapeOf(node.inputs[0]);
      const b = shapeOf(node.inputs[1]);
      if (a.length !== 2 || b.length !== 2) throw new Error(`supports 2-D inputs only, found [${a}] and [${b}]`);
      return [a[0], b[1]];
    }
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      const out = broadcastShapes(node.inputs.map(shapeOf));
      if (!out) throw new Error(`cannot broadcast [${node.inputs.map((i) => shapeOf(i).join(', ')).join('] and [')}]`);
      return out;
    }
    case 'Flatten': {
      const s = x();
      const axis = int(attrs, 'axis', 1);
      if (axis !== 1 || s[0] !== 'N') throw new Error(`supports axis 1 after the batch axis only, found axis ${axis}`);
      return ['N', s.slice(1).reduce<number>((a, d) => a * spatial(d, 'size'), 1)];
    }
    case 'Reshape':
      return reshapeTarget(x(), constant(node.inputs[1]));
    case 'Transpose': {
      const s = x();
      const perm = ints(attrs, 'perm', s.map((_, i) => s.length - 1 - i));
      return perm.map((p) => s[p]);
    }
    case 'Concat': {
      const shapes = node.inputs.map(shapeOf);
      const axis = (int(attrs, 'axis', 0) + shapes[0].length) % shapes[0].length;
      const out = [...shapes[0]];
      out[axis] = shapes.reduce((a, s) => a + spatial(s[axis], 'size on the concatenation axis'), 0);
      return out;
    }
    case 'Relu':
    case 'LeakyRelu':
    case 'Sigmoid':
    case 'Tanh':
    case 'Clip':
    case 'HardSwish':
    case 'Identity':
    case 'Dropout':
    case 'Softmax':
    case 'LogSoftmax':
    case 'BatchNormalization':
      return x();
    default:
      throw new Error('is not an op cnnlab can import');
  }
}

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
