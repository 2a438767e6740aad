import type { Rng } from '../../common/rng.ts';
import { attr, type AttrValue, type GraphBuilder } from '../../graph-builder/graph/ir.ts';
import { ELEMENTWISE_OPS } from '../../graph-builder/ops/elementwise.ts';
import { OPS } from '../../graph-builder/ops/table.ts';
import { type GradCase, spaced } from '../helpers/gradcheck.ts';

type Values = (rng: Rng, n: number) => Float32Array;

/** `spaced` values times `scale`: (k + 1/2) * 0.05 * scale, so no value within 0.025 * scale of a kink at a multiple of 0.05 * scale. */
const spread = (scale: number): Values => (rng, n) => Float32Array.from(spaced(rng, n), (v) => v * scale);

/** Uniform values in [lo, hi). */
const uniform = (lo: number, hi: number): Values => (rng, n) => Float32Array.from({ length: n }, () => rng.uniform(lo, hi));

/**
 * Distinct shuffled values on the lattice offset + k * 0.1 (k around 0): inputs of Min and Max on
 * lattices with offsets 0, 0.025 and 0.05 stay at least 0.025 apart, so no tie within h = 1e-2.
 */
const lattice = (offset: number): Values => (rng, n) => Float32Array.from(rng.permutation(n), (p) => (p - Math.floor(n / 2)) * 0.1 + offset);

function unary(name: string, op: string, shape: number[], values?: Values, attrs: Record<string, AttrValue> = {}): GradCase {
  return { name, inputs: [{ name: 'x', shape, values }], outputShape: shape, build: (b, [x]) => b.op(op, [x], attrs) };
}

/**
 * Emits an imported node as the op table's normalize rewrites it (opset `opset`), noting each new
 * value's shape by the table's shape rules as the importer does; returns the node's output.
 */
function normalized(b: GraphBuilder, op: string, inputs: string[], attrs: Record<string, AttrValue>, opset: number): string {
  const node = { op, name: b.fresh(`${op.toLowerCase()}_node`), inputs, outputs: [b.fresh(op.toLowerCase())], attrs };
  const nodes = ELEMENTWISE_OPS[op].normalize!(node, {
    opset,
    constI: (values, hint) => b.constI(values, [values.length], hint),
    constF: (values, dims, hint) => b.constF(values, dims, hint),
    constant: () => undefined,
    fresh: (hint) => b.fresh(hint),
    shape: (v) => b.shapes.get(v),
  });
  const constant = (v: string) => {
    const t = b.graph.nodes.find((n) => n.op === 'Constant' && n.outputs[0] === v)?.attrs.value;
    return t?.kind === 'tensor' ? Array.from(t.value.data as ArrayLike<number | bigint>, Number) : undefined;
  };
  for (const n of nodes) {
    b.graph.nodes.push(n);
    b.note(n.outputs[0], 'float32', OPS[n.op].shape!(n, { shape: (v) => b.shapes.get(v)!, constant }));
  }
  return node.outputs[0];
}

/** N-ary op over inputs a, b (and c), each differentiated. */
function variadic(op: string, shapes: number[][], out: number[], values: Values[] = []): GradCase {
  const names = ['a', 'b', 'c'];
  return {
    name: `${op} of ${shapes.map((s) => s.join('x')).join(', ')}`,
    inputs: shapes.map((shape, i) => ({ name: names[i], shape, values: values[i] })),
    outputShape: out,
    build: (b, ins) => b.op(op, ins),
  };
}

/** Finite-difference cases of this family's gradient rules (test/autodiff.test.ts runs them). */
export const CASES: GradCase[] = [
  // Kinks at -2.5 and 2.5 (default alpha 0.2, beta 0.5) and at -3 and 3 (PyTorch's 1/6, 0.5).
  unary('HardSigmoid (alpha 0.2, beta 0.5)', 'HardSigmoid', [4, 25], spread(2)),
  unary('HardSigmoid (alpha 1/6, beta 0.5: PyTorch Hardsigmoid)', 'HardSigmoid', [4, 25], spread(2), { alpha: attr.float(1 / 6), beta: attr.float(0.5) }),
  unary('Softplus', 'Softplus', [4, 25], spread(2)),
  unary('Softsign', 'Softsign', [4, 25], spread(2)),
  unary('Elu (alpha 0.7)', 'Elu', [4, 25], spread(1), { alpha: attr.float(0.7) }),
  unary('Selu', 'Selu', [4, 25], spread(1)),
  unary('Celu (alpha 1.5)', 'Celu', [4, 25], spread(1), { alpha: attr.float(1.5) }),
  unary('ThresholdedRelu (alpha 0.5)', 'ThresholdedRelu', [4, 25], spread(2), { alpha: attr.float(0.5) }),
  unary('Mish', 'Mish', [4, 25], spread(2)),
  unary('Erf', 'Erf', [4, 25], spread(1)),
  unary('Abs', 'Abs', [4, 25], spread(1)),
  unary('Reciprocal (positive)', 'Reciprocal', [4, 25], uniform(0.5, 1.5)),
  {
    name: 'PRelu with a [3, 1, 1] slope',
    inputs: [{ name: 'x', shape: [2, 3, 4, 4], values: spaced }, { name: 'slope', shape: [3, 1, 1] }],
    outputShape: [2, 3, 4, 4],
    build: (b, ins) => b.op('PRelu', ins),
  },
  {
    name: 'PRelu with a [1] slope',
    inputs: [{ name: 'x', shape: [2, 3, 4, 4], values: spaced }, { name: 'slope', shape: [1] }],
    outputShape: [2, 3, 4, 4],
    build: (b, ins) => b.op('PRelu', ins),
  },
  {
    name: 'Gelu as normalized primitives (approximate none)',
    inputs: [{ name: 'x', shape: [4, 25], values: spread(2) }],
    outputShape: [4, 25],
    build: (b, [x]) => normalized(b, 'Gelu', [x], {}, 18),
  },
  {
    name: 'Gelu as normalized primitives (approximate tanh)',
    inputs: [{ name: 'x', shape: [4, 25], values: spread(2) }],
    outputShape: [4, 25],
    build: (b, [x]) => normalized(b, 'Gelu', [x], { approximate: attr.string('tanh') }, 18),
  },
  {
    // onnxruntime runs no Gelu node in an opset-18 model: the op's own rule (approximate none)
    // differentiates the primitives marked as one Gelu composite.
    name: 'Gelu op rule over its primitives as a composite',
    inputs: [{ name: 'x', shape: [4, 25], values: spread(2) }],
    outputShape: [4, 25],
    build: (b, [x]) => b.composite('Gelu', [x], () => [normalized(b, 'Gelu', [x], {}, 18)])[0],
  },
  {
    name: 'Pow with a constant exponent 2',
    inputs: [{ name: 'x', shape: [4, 25] }],
    outputShape: [4, 25],
    build: (b, [x]) => b.op('Pow', [x, b.scalar(2)]),
  },
  {
    name: 'Pow with a constant exponent 0.5 (positive base)',
    inputs: [{ name: 'x', shape: [4, 25], values: uniform(0.5, 2) }],
    outputShape: [4, 25],
    build: (b, [x]) => b.op('Pow', [x, b.scalar(0.5)]),
  },
  {
    name: 'Pow with a broadcast tensor exponent (base and exponent differentiated)',
    inputs: [{ name: 'x', shape: [3, 4], values: uniform(0.5, 2) }, { name: 'e', shape: [4] }],
    outputShape: [3, 4],
    build: (b, ins) => b.op('Pow', ins),
  },
  variadic('Max', [[2, 3, 4], [3, 1]], [2, 3, 4], [lattice(0.05), lattice(0)]),
  variadic('Min', [[2, 3, 4], [3, 1]], [2, 3, 4], [lattice(0.05), lattice(0)]),
  variadic('Max', [[2, 3, 4], [3, 1], [4]], [2, 3, 4], [lattice(0.05), lattice(0), lattice(0.025)]),
  variadic('Min', [[2, 3, 4], [3, 1], [4]], [2, 3, 4], [lattice(0.05), lattice(0), lattice(0.025)]),
  variadic('Sum', [[2, 3, 4], [3, 1], [4]], [2, 3, 4]),
  variadic('Mean', [[2, 3, 4], [3, 1], [1, 4]], [2, 3, 4]),
  {
    name: 'Clip with no lower bound and an initializer upper bound',
    inputs: [{ name: 'x', shape: [4, 25], values: spread(2) }],
    outputShape: [4, 25],
    build: (b, [x]) => b.op('Clip', [x, '', b.initializer({ name: 'clip_hi', dtype: 'float32', dims: [], data: Float32Array.of(1) })]),
  },
  {
    name: 'Clip opset 6 (min 0, max 6 attributes, normalized to inputs)',
    inputs: [{ name: 'x', shape: [4, 25], values: (rng, n) => Float32Array.from(spaced(rng, n), (v) => v * 6 + 3) }],
    outputShape: [4, 25],
    build: (b, [x]) => normalized(b, 'Clip', [x], { min: attr.float(0), max: attr.float(6) }, 6),
  },
  {
    name: 'Clip opset 6 with max only (min at its no-bound default)',
    inputs: [{ name: 'x', shape: [4, 25], values: spread(2) }],
    outputShape: [4, 25],
    build: (b, [x]) => normalized(b, 'Clip', [x], { min: attr.float(-3.4028234663852886e38), max: attr.float(1) }, 6),
  },
  {
    name: 'Mul opset 6 (broadcast 1, axis 1: [3] on [2, 3, 4, 4], normalized by a Reshape)',
    inputs: [{ name: 'a', shape: [2, 3, 4, 4] }, { name: 'b', shape: [3] }],
    outputShape: [2, 3, 4, 4],
    build: (b, ins) => normalized(b, 'Mul', ins, { broadcast: attr.int(1), axis: attr.int(1), consumed_inputs: attr.ints([0, 0]) }, 5),
  },
];
