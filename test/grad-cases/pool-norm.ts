import type { GradRule } from '../../graph-builder/autodiff/rule.ts';
import { layerNormalization } from '../../graph-builder/autodiff/rules/norm.ts';
import { averagePool } from '../../graph-builder/autodiff/rules/pool.ts';
import { type AttrValue, attr, type GraphBuilder, type Node } from '../../graph-builder/graph/ir.ts';
import type { NormalizeContext, ShapeContext } from '../../graph-builder/ops/spec.ts';
import { opSpec } from '../../graph-builder/ops/table.ts';
import { type GradCase, type GradInput, spaced } from '../helpers/gradcheck.ts';

/** A Constant node's values in `b`, undefined for computed values. */
function constantOf(b: GraphBuilder, v: string): number[] | undefined {
  const t = b.graph.nodes.find((n) => n.op === 'Constant' && n.outputs[0] === v)?.attrs.value;
  return t?.kind === 'tensor' ? Array.from(t.value.data as ArrayLike<number | bigint>, Number) : undefined;
}

/**
 * Emits `op` as a model of `opset` writes it, through the op table's `normalize` (as the
 * importer does), noting each emitted node's output shapes; returns the node's outputs.
 */
function imported(b: GraphBuilder, opset: number, op: string, inputs: string[], attrs: Record<string, AttrValue>, outputs = 1): string[] {
  const node: Node = { op, name: b.fresh(`${op}_imported`), inputs, outputs: Array.from({ length: outputs }, () => b.fresh(op.toLowerCase())), attrs };
  const ctx: NormalizeContext = {
    opset,
    constI: (values, hint) => b.constI(values, [values.length], hint),
    constF: (values, dims, hint) => b.constF(values, dims, hint),
    constant: (v) => constantOf(b, v),
    fresh: (hint) => b.fresh(hint),
    shape: (v) => b.shapes.get(v),
  };
  const sctx: ShapeContext = { shape: (v) => b.shapes.get(v)!, constant: (v) => constantOf(b, v) };
  for (const n of opSpec(op)?.normalize?.(node, ctx) ?? [node]) {
    b.graph.nodes.push(n);
    const spec = opSpec(n.op);
    const shapes = spec?.shapes ? spec.shapes(n, sctx) : spec?.shape ? [spec.shape(n, sctx)] : [];
    n.outputs.forEach((o, i) => shapes[i] && b.note(o, 'float32', shapes[i]));
  }
  return node.outputs;
}

interface Window {
  kernel: number;
  strides?: number;
  pads?: number[];
  dilations?: number;
  ceil?: boolean;
  countIncludePad?: boolean;
  autoPad?: string;
}

/** A pool's attributes, only those given. */
function windowAttrs(w: Window): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = { kernel_shape: attr.ints([w.kernel, w.kernel]) };
  if (w.strides) out.strides = attr.ints([w.strides, w.strides]);
  if (w.pads) out.pads = attr.ints(w.pads);
  if (w.dilations) out.dilations = attr.ints([w.dilations, w.dilations]);
  if (w.ceil) out.ceil_mode = attr.int(1);
  if (w.countIncludePad !== undefined) out.count_include_pad = attr.int(w.countIncludePad ? 1 : 0);
  if (w.autoPad) out.auto_pad = attr.string(w.autoPad);
  return out;
}

/** A pool of x, emitted as it stands or, with `opset`, through normalize as imported from a model of that opset. */
const pool = (op: 'MaxPool' | 'AveragePool', name: string, x: number[], w: Window, out: number[], opset?: number): GradCase => ({
  name,
  inputs: [{ name: 'x', shape: x, values: op === 'MaxPool' ? spaced : undefined }],
  outputShape: out,
  build: (b, [xi]) => {
    if (opset !== undefined) return imported(b, opset, op, [xi], windowAttrs(w), op === 'MaxPool' ? 2 : 1)[0];
    return op === 'MaxPool' ? b.node('MaxPool', [xi], windowAttrs(w), 2)[0] : b.op('AveragePool', [xi], windowAttrs(w));
  },
});

/** A reduction of x [2, 3, 4, 4] (spaced values: Max and Min have no tie within h), axes as an input or none. */
function reduce(op: string, axes: number[] | undefined, keepdims: number, out: number[], x = [2, 3, 4, 4]): GradCase {
  return {
    name: `${op} over ${axes ? `[${axes.join(', ')}]` : 'all axes (no axes input)'} keepdims ${keepdims}`,
    inputs: [{ name: 'x', shape: x, values: spaced }],
    outputShape: out,
    build: (b, [xi]) => b.op(op, axes ? [xi, b.constI(axes)] : [xi], { keepdims: attr.int(keepdims) }),
  };
}

const param = (name: string, shape: number[]): GradInput => ({ name, shape });

/** Finite-difference cases of this family's gradient rules (test/autodiff.test.ts runs them). */
export const CASES: GradCase[] = [
  pool('MaxPool', 'MaxPool 3x3 stride 2 ceil_mode on 8x8 (SqueezeNet)', [1, 2, 8, 8], { kernel: 3, strides: 2, ceil: true }, [1, 2, 4, 4]),
  pool('MaxPool', 'MaxPool 3x3 stride 2 pad 1 ceil_mode on 7x7', [1, 2, 7, 7], { kernel: 3, strides: 2, pads: [1, 1, 1, 1], ceil: true }, [1, 2, 4, 4]),
  pool('MaxPool', 'MaxPool 3x3 dilation 2 pad 2', [1, 2, 6, 6], { kernel: 3, dilations: 2, pads: [2, 2, 2, 2] }, [1, 2, 6, 6]),
  pool('MaxPool', 'MaxPool 2x2 stride 2 dilation 2 ceil_mode on 8x8', [1, 2, 8, 8], { kernel: 2, strides: 2, dilations: 2, ceil: true }, [1, 2, 4, 4]),
  // ceil_mode where the last window would start in the right padding: ceil and floor agree, and
  // without normalize's rewrite onnxruntime's load-time shape inference expects a 5x5 output.
  pool('MaxPool', 'MaxPool 2x2 stride 2 pad 1 ceil_mode on 7x7, imported (the window in the padding dropped)', [1, 2, 7, 7], { kernel: 2, strides: 2, pads: [1, 1, 1, 1], ceil: true }, [1, 2, 4, 4], 18),
  pool('AveragePool', 'AveragePool 2x2 stride 2 pad 1 ceil_mode count_include_pad 1 on 7x7, imported', [1, 2, 7, 7], { kernel: 2, strides: 2, pads: [1, 1, 1, 1], ceil: true, countIncludePad: true }, [1, 2, 4, 4], 18),
  pool('AveragePool', 'AveragePool 3x3 stride 2 pad 1 count_include_pad 0', [1, 2, 8, 8], { kernel: 3, strides: 2, pads: [1, 1, 1, 1], countIncludePad: false }, [1, 2, 4, 4]),
  pool('AveragePool', 'AveragePool 3x3 stride 2 pad 1 count_include_pad 1', [1, 2, 8, 8], { kernel: 3, strides: 2, pads: [1, 1, 1, 1], countIncludePad: true }, [1, 2, 4, 4]),
  pool('AveragePool', 'AveragePool 2x2 stride 2 ceil_mode on 5x5', [2, 2, 5, 5], { kernel: 2, strides: 2, ceil: true }, [2, 2, 3, 3]),
  pool('AveragePool', 'AveragePool 3x3 stride 2 pad 1 ceil_mode count_include_pad 1, last window past the padding', [1, 2, 8, 8], { kernel: 3, strides: 2, pads: [1, 1, 1, 1], ceil: true, countIncludePad: true }, [1, 2, 5, 5]),
  pool('AveragePool', 'AveragePool 3x3 stride 2 auto_pad SAME_UPPER (pads [0, 0, 1, 1])', [1, 2, 6, 6], { kernel: 3, strides: 2, autoPad: 'SAME_UPPER' }, [1, 2, 3, 3]),
  pool('AveragePool', 'AveragePool 3x3 stride 1 asymmetric pads [1, 0, 0, 2]', [1, 2, 5, 5], { kernel: 3, pads: [1, 0, 0, 2] }, [1, 2, 4, 5]),
  { name: 'GlobalMaxPool', inputs: [{ name: 'x', shape: [2, 3, 4, 4], values: spaced }], outputShape: [2, 3, 1, 1], build: (b, [x]) => b.op('GlobalMaxPool', [x]) },
  reduce('ReduceMax', [2, 3], 1, [2, 3, 1, 1]),
  reduce('ReduceMax', [2, 3], 0, [2, 3]),
  reduce('ReduceMin', [1, -1], 0, [2, 4]),
  reduce('ReduceMean', [2, 3], 0, [2, 3]),
  reduce('ReduceMean', undefined, 0, []),
  reduce('ReduceSum', undefined, 1, [1, 1, 1, 1]),
  reduce('ReduceSumSquare', [1], 0, [2, 4, 4]),
  reduce('ReduceL2', [2, 3], 1, [2, 3, 1, 1]),
  reduce('ReduceLogSumExp', [1], 0, [2, 4, 4]),
  {
    name: 'ReduceMean over [2, 3] keepdims 0, axes an attribute (opset 13, the ShuffleNet head)',
    inputs: [{ name: 'x', shape: [2, 3, 4, 4] }],
    outputShape: [2, 3],
    build: (b, [x]) => imported(b, 13, 'ReduceMean', [x], { axes: attr.ints([2, 3]), keepdims: attr.int(0) })[0],
  },
  {
    name: 'ReduceSum over [1] keepdims 1, axes an attribute (opset 11)',
    inputs: [{ name: 'x', shape: [2, 3, 4] }],
    outputShape: [2, 1, 4],
    build: (b, [x]) => imported(b, 11, 'ReduceSum', [x], { axes: attr.ints([1]) })[0],
  },
  {
    name: 'LayerNormalization over the last axis with scale and bias',
    inputs: [param('x', [2, 3, 5]), param('scale', [5]), param('bias', [5])],
    outputShape: [2, 3, 5],
    build: (b, ins) => b.op('LayerNormalization', ins, { epsilon: attr.float(1e-5) }),
  },
  {
    name: 'LayerNormalization axis 1 over [C, H, W], its Mean and InvStdDev outputs saved',
    inputs: [param('x', [2, 3, 3, 3]), param('scale', [3, 3, 3]), param('bias', [3, 3, 3])],
    outputShape: [2, 3, 3, 3],
    build: (b, ins) => b.node('LayerNormalization', ins, { axis: attr.int(1) }, 3)[0],
  },
  {
    name: 'InstanceNormalization',
    inputs: [param('x', [2, 3, 4, 4]), param('scale', [3]), param('bias', [3])],
    outputShape: [2, 3, 4, 4],
    build: (b, ins) => b.op('InstanceNormalization', ins, { epsilon: attr.float(1e-5) }),
  },
  {
    name: 'GroupNormalization 2 groups on 4 channels (opset 18: scale and bias per group)',
    inputs: [param('x', [2, 4, 3, 3]), param('scale', [2]), param('bias', [2])],
    outputShape: [2, 4, 3, 3],
    build: (b, ins) => b.op('GroupNormalization', ins, { num_groups: attr.int(2), epsilon: attr.float(1e-5) }),
  },
  {
    name: 'GroupNormalization 2 groups on 4 channels (opset 21: scale and bias per channel, normalized)',
    inputs: [param('x', [2, 4, 3, 3]), param('scale', [4]), param('bias', [4])],
    outputShape: [2, 4, 3, 3],
    build: (b, ins) => imported(b, 21, 'GroupNormalization', ins, { num_groups: attr.int(2), epsilon: attr.float(1e-5), stash_type: attr.int(1) })[0],
  },
  {
    name: "GroupNorm as PyTorch's exporter writes it: Reshape, InstanceNormalization of unit scale, Reshape, Mul, Add",
    inputs: [param('x', [2, 4, 3, 3]), param('weight', [4, 1, 1]), param('bias', [4, 1, 1])],
    outputShape: [2, 4, 3, 3],
    build: (b, [x, weight, bias]) => {
      const grouped = imported(b, 17, 'Reshape', [x, b.constI([0, 2, -1])], {})[0];
      const ones = b.constF([1, 1], [2], 'instancenorm_unit');
      const zeros = b.constF([0, 0], [2], 'instancenorm_zero');
      const normed = imported(b, 17, 'InstanceNormalization', [grouped, ones, zeros], { epsilon: attr.float(1e-5) })[0];
      const back = imported(b, 17, 'Reshape', [normed, b.constI([0, 4, 3, 3])], {})[0];
      return b.op('Add', [b.op('Mul', [back, weight]), bias]);
    },
  },
];

/** A rule run on its node with some attributes replaced. */
const withAttrs = (rule: GradRule, attrs: Record<string, AttrValue>): GradRule => (ctx) => rule({ ...ctx, node: { ...ctx.node, attrs: { ...ctx.node.attrs, ...attrs } } });

/**
 * Deliberately wrong rules the finite-difference check must reject: [name, op, rule], each name
 * starting with the name of the case in CASES it is to run against.
 */
export const BROKEN: [string, string, GradRule][] = [
  ['AveragePool 3x3 stride 2 pad 1 count_include_pad 0: border windows divided by k*k', 'AveragePool', withAttrs(averagePool, { count_include_pad: attr.int(1) })],
  ['AveragePool 3x3 stride 2 pad 1 ceil_mode count_include_pad 1, last window past the padding: divided by in-bounds counts', 'AveragePool', withAttrs(averagePool, { count_include_pad: attr.int(0) })],
  ['GlobalMaxPool: dY to every element', 'GlobalMaxPool', (ctx) => [ctx.b.op('Expand', [ctx.gradOutputs[0]!, ctx.b.op('Shape', [ctx.inputs[0]])])]],
  ['LayerNormalization over the last axis with scale and bias: through X̂ without the mean and variance terms', 'LayerNormalization', (ctx) => {
    const out = layerNormalization(ctx);
    const { b } = ctx;
    const x = ctx.inputs[0];
    const variance = b.op('ReduceMean', [b.op('Mul', [x, x]), b.constI([-1])], { keepdims: attr.int(1) });
    out[0] = b.op('Div', [b.op('Mul', [ctx.gradOutputs[0]!, ctx.inputs[1]]), b.op('Sqrt', [variance])]);
    return out;
  }],
];
