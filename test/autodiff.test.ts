import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { emitBackward } from '../graph-builder/autodiff/backward.ts';
import { GRAD_RULES } from '../graph-builder/autodiff/registry.ts';
import type { GradRule } from '../graph-builder/autodiff/rule.ts';
import { attr, GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
import { emitBatchNormTraining } from '../graph-builder/train-mode.ts';
import { CASES as ACTIVATION_CASES } from './grad-cases/activation.ts';
import { BROKEN as CONV_BROKEN, CASES as CONV_CASES } from './grad-cases/conv.ts';
import { BROKEN as POOL_NORM_BROKEN, CASES as POOL_NORM_CASES } from './grad-cases/pool-norm.ts';
import { CASES as TENSOR_CASES } from './grad-cases/tensor.ts';
import { type GradCase, gradCheck, spaced } from './helpers/gradcheck.ts';

const positive = (lo: number, hi: number) => (rng: { uniform: (a: number, b: number) => number }, n: number) => Float32Array.from({ length: n }, () => rng.uniform(lo, hi));

function unary(op: string, shape: number[], values?: GradCase['inputs'][0]['values'], attrs = {}): GradCase {
  return { name: op, inputs: [{ name: 'x', shape, values }], outputShape: shape, build: (b, [x]) => b.op(op, [x], attrs) };
}

function conv(name: string, x: number[], w: number[], stride: number, pad: number, bias: boolean, out: number[]): GradCase {
  const inputs = [{ name: 'x', shape: x }, { name: 'w', shape: w }];
  if (bias) inputs.push({ name: 'b', shape: [w[0]] });
  return {
    name,
    inputs,
    outputShape: out,
    build: (b, ins) => b.op('Conv', ins, { kernel_shape: attr.ints([w[2], w[3]]), strides: attr.ints([stride, stride]), pads: attr.ints([pad, pad, pad, pad]) }),
  };
}

function maxPool(name: string, x: number[], k: number, s: number, out: number[], pad = 0): GradCase {
  return {
    name,
    inputs: [{ name: 'x', shape: x, values: spaced }],
    outputShape: out,
    build: (b, [xi]) => b.node('MaxPool', [xi], { kernel_shape: attr.ints([k, k]), strides: attr.ints([s, s]), pads: attr.ints([pad, pad, pad, pad]) }, 2)[0],
  };
}

function avgPool(name: string, x: number[], k: number, s: number, out: number[]): GradCase {
  return { name, inputs: [{ name: 'x', shape: x }], outputShape: out, build: (b, [xi]) => b.op('AveragePool', [xi], { kernel_shape: attr.ints([k, k]), strides: attr.ints([s, s]) }) };
}

function binary(op: string, a: number[], bShape: number[], out: number[], bValues?: GradCase['inputs'][0]['values']): GradCase {
  return { name: `${op} ${a.join('x')} with ${bShape.join('x')}`, inputs: [{ name: 'a', shape: a }, { name: 'b', shape: bShape, values: bValues }], outputShape: out, build: (b, [x, y]) => b.op(op, [x, y]) };
}

export const CASES: GradCase[] = [
  binary('Add', [2, 3, 4, 4], [1, 3, 1, 1], [2, 3, 4, 4]),
  binary('Sub', [2, 3, 4, 4], [3, 1, 1], [2, 3, 4, 4]),
  binary('Mul', [2, 3, 4, 4], [1, 3, 1, 1], [2, 3, 4, 4]),
  binary('Div', [2, 3, 4, 4], [1, 3, 1, 1], [2, 3, 4, 4], positive(0.5, 1.5)),
  binary('Mul', [4, 5], [4, 5], [4, 5]),
  unary('Neg', [3, 4]),
  unary('Identity', [3, 4]),
  unary('Sqrt', [3, 4], positive(0.5, 2)),
  unary('Exp', [3, 4]),
  unary('Log', [3, 4], positive(0.5, 2)),
  unary('Relu', [2, 3, 4, 4], spaced),
  unary('LeakyRelu', [2, 3, 4, 4], spaced, { alpha: attr.float(0.1) }),
  unary('Sigmoid', [3, 4]),
  unary('Tanh', [3, 4]),
  unary('HardSwish', [4, 25], (rng, n) => Float32Array.from(spaced(rng, n), (v) => v * 6)),
  {
    name: 'Clip 0..6 (ReLU6)',
    inputs: [{ name: 'x', shape: [4, 25], values: (rng, n) => Float32Array.from(spaced(rng, n), (v) => v * 6 + 3) }],
    outputShape: [4, 25],
    build: (b, [x]) => b.op('Clip', [x, b.scalar(0), b.scalar(6)]),
  },
  {
    name: 'Concat on the channel axis',
    inputs: [{ name: 'a', shape: [2, 3, 2, 2] }, { name: 'b', shape: [2, 1, 2, 2] }],
    outputShape: [2, 4, 2, 2],
    build: (b, ins) => b.op('Concat', ins, { axis: attr.int(1) }),
  },
  conv('Conv 5x5 pad 2 with bias', [2, 2, 6, 6], [3, 2, 5, 5], 1, 2, true, [2, 3, 6, 6]),
  conv('Conv 3x3 stride 2 pad 1, uneven', [2, 2, 8, 8], [3, 2, 3, 3], 2, 1, false, [2, 3, 4, 4]),
  conv('Conv 3x3 stride 2 no pad, uneven', [1, 2, 8, 8], [2, 2, 3, 3], 2, 0, true, [1, 2, 3, 3]),
  conv('Conv 1x1', [2, 4, 3, 3], [5, 4, 1, 1], 1, 0, false, [2, 5, 3, 3]),
  conv('Conv 3x3 no pad (weight gradient from unfolded rows)', [3, 2, 7, 6], [4, 2, 3, 3], 1, 0, false, [3, 4, 5, 4]),
  conv('Conv 3x2 pad 1, rectangular kernel', [2, 3, 5, 6], [2, 3, 3, 2], 1, 1, true, [2, 2, 5, 7]),
  conv('Conv 3x3 pad 1, more input than output channels (weight gradient by shifted dY)', [2, 6, 5, 5], [2, 6, 3, 3], 1, 1, false, [2, 2, 5, 5]),
  conv('Conv 3x3 pad 1, more output than input channels (weight gradient by row slices)', [2, 2, 5, 5], [6, 2, 3, 3], 1, 1, false, [2, 6, 5, 5]),
  {
    name: 'Conv depthwise 3x3 pad 1 (group = channels) with bias',
    inputs: [{ name: 'x', shape: [2, 3, 5, 5] }, { name: 'w', shape: [3, 1, 3, 3] }, { name: 'b', shape: [3] }],
    outputShape: [2, 3, 5, 5],
    build: (b, ins) => b.op('Conv', ins, { group: attr.int(3), kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) }),
  },
  {
    name: 'Conv 2 groups, stride 2',
    inputs: [{ name: 'x', shape: [2, 4, 7, 7] }, { name: 'w', shape: [6, 2, 3, 3] }],
    outputShape: [2, 6, 3, 3],
    build: (b, ins) => b.op('Conv', ins, { group: attr.int(2), kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]) }),
  },
  {
    name: 'ConvTranspose 3x3 stride 2 pad 1 output_padding 1, with bias',
    inputs: [{ name: 'x', shape: [2, 3, 4, 4] }, { name: 'w', shape: [3, 2, 3, 3] }, { name: 'b', shape: [2] }],
    outputShape: [2, 2, 8, 8],
    build: (b, ins) => b.op('ConvTranspose', ins, { kernel_shape: attr.ints([3, 3]), strides: attr.ints([2, 2]), pads: attr.ints([1, 1, 1, 1]), output_padding: attr.ints([1, 1]) }),
  },
  {
    name: 'ConvTranspose 2x2 stride 2, 2 groups',
    inputs: [{ name: 'x', shape: [1, 4, 3, 3] }, { name: 'w', shape: [4, 1, 2, 2] }],
    outputShape: [1, 2, 6, 6],
    build: (b, ins) => b.op('ConvTranspose', ins, { kernel_shape: attr.ints([2, 2]), strides: attr.ints([2, 2]), group: attr.int(2) }),
  },
  maxPool('MaxPool 2', [2, 3, 6, 6], 2, 2, [2, 3, 3, 3]),
  maxPool('MaxPool 3 with leftover rows', [1, 2, 8, 8], 3, 3, [1, 2, 2, 2]),
  maxPool('MaxPool 3 stride 2 overlapping', [1, 2, 7, 7], 3, 2, [1, 2, 3, 3]),
  maxPool('MaxPool 3 stride 2 pad 1 (ResNet stem)', [2, 2, 8, 8], 3, 2, [2, 2, 4, 4], 1),
  avgPool('AveragePool 2', [2, 3, 6, 6], 2, 2, [2, 3, 3, 3]),
  avgPool('AveragePool 3 with leftover rows', [1, 2, 8, 8], 3, 3, [1, 2, 2, 2]),
  avgPool('AveragePool 6 (global by window)', [2, 4, 6, 6], 6, 6, [2, 4, 1, 1]),
  { name: 'GlobalAveragePool', inputs: [{ name: 'x', shape: [2, 3, 5, 5] }], outputShape: [2, 3, 1, 1], build: (b, [x]) => b.op('GlobalAveragePool', [x]) },
  {
    name: 'Gemm transB with bias',
    inputs: [{ name: 'x', shape: [3, 5] }, { name: 'w', shape: [4, 5] }, { name: 'c', shape: [4] }],
    outputShape: [3, 4],
    build: (b, ins) => b.op('Gemm', ins, { transB: attr.int(1) }),
  },
  {
    name: 'Gemm transA, alpha 0.5',
    inputs: [{ name: 'x', shape: [5, 3] }, { name: 'w', shape: [5, 4] }],
    outputShape: [3, 4],
    build: (b, ins) => b.op('Gemm', ins, { transA: attr.int(1), alpha: attr.float(0.5) }),
  },
  { name: 'MatMul', inputs: [{ name: 'x', shape: [3, 5] }, { name: 'w', shape: [5, 4] }], outputShape: [3, 4], build: (b, ins) => b.op('MatMul', ins) },
  { name: 'Reshape', inputs: [{ name: 'x', shape: [2, 3, 4] }], outputShape: [6, 4], build: (b, [x]) => b.op('Reshape', [x, b.constI([6, 4])]) },
  { name: 'Flatten', inputs: [{ name: 'x', shape: [2, 3, 2, 2] }], outputShape: [2, 12], build: (b, [x]) => b.op('Flatten', [x], { axis: attr.int(1) }) },
  { name: 'Transpose', inputs: [{ name: 'x', shape: [2, 3, 4] }], outputShape: [4, 2, 3], build: (b, [x]) => b.op('Transpose', [x], { perm: attr.ints([2, 0, 1]) }) },
  { name: 'ReduceSum keepdims 0', inputs: [{ name: 'x', shape: [2, 3, 4] }], outputShape: [2, 4], build: (b, [x]) => b.op('ReduceSum', [x, b.constI([1])], { keepdims: attr.int(0) }) },
  { name: 'ReduceMean over N,H,W', inputs: [{ name: 'x', shape: [3, 2, 4, 4] }], outputShape: [1, 2, 1, 1], build: (b, [x]) => b.op('ReduceMean', [x, b.constI([0, 2, 3])], { keepdims: attr.int(1) }) },
  unary('LogSoftmax', [3, 10], undefined, { axis: attr.int(1) }),
  unary('Softmax', [3, 10], undefined, { axis: attr.int(1) }),
  {
    name: 'BatchNormTraining (composite: closed-form gradient)',
    inputs: [{ name: 'x', shape: [4, 3, 3, 3] }, { name: 'gamma', shape: [3], values: positive(0.5, 1.5) }, { name: 'beta', shape: [3] }],
    outputShape: [4, 3, 3, 3],
    build: (b, [x, gamma, beta]) => emitBatchNormTraining(b, x, gamma, beta, { channels: 3, eps: 1e-5, name: 'bn' }).y,
  },
  {
    name: 'fan-out: x used twice, and as both inputs of Mul',
    inputs: [{ name: 'x', shape: [3, 4], values: spaced }],
    outputShape: [3, 4],
    build: (b, [x]) => b.op('Add', [b.op('Mul', [x, x]), b.op('Add', [b.op('Relu', [x]), b.op('Exp', [x])])]),
  },
  ...CONV_CASES,
  ...ACTIVATION_CASES,
  ...TENSOR_CASES,
  ...POOL_NORM_CASES,
];

describe('every gradient rule matches central finite differences', () => {
  for (const c of CASES) {
    it(c.name, async () => {
      // Shapes of the intermediate values in the fan-out case, for the broadcast-aware rules.
      const report = await gradCheck(c);
      assert.ok(report.worst <= 1, `${c.name}: ${report.details.slice(0, 3).join('; ')}`);
    });
  }

  it('covers every op in the registry', () => {
    const tested = new Set<string>();
    for (const c of CASES) {
      const b = new GraphBuilder('probe');
      c.build(b, c.inputs.map((i) => b.input(i.name, 'float32', i.shape)));
      for (const n of b.graph.nodes) tested.add(n.op);
      for (const k of b.composites) tested.add(k.op);
    }
    tested.add('Dropout'); // checked exactly below: its mask is random per run, so no finite differences
    assert.deepEqual(Object.keys(GRAD_RULES).filter((op) => !tested.has(op)), []);
  });
});

describe('the check catches broken rules', () => {
  const broken: [string, string, GradRule][] = [
    ['Relu passing every gradient', 'Relu', (ctx) => [ctx.gradOutputs[0]]],
    ['AveragePool without the 1/(k*k)', 'AveragePool', (ctx) => {
      const dX = GRAD_RULES.AveragePool(ctx)[0]!;
      return [ctx.b.op('Mul', [dX, ctx.b.scalar(4)])];
    }],
    ['Sub with the wrong sign on B', 'Sub', (ctx) => GRAD_RULES.Add(ctx)],
    ['Conv with the weight gradient not transposed back', 'Conv', (ctx) => {
      const out = GRAD_RULES.Conv(ctx);
      out[1] = ctx.b.op('Transpose', [out[1]!], { perm: attr.ints([0, 1, 3, 2]) });
      return out;
    }],
    ['Conv with the input gradient through an unrotated kernel (5x5 pad 2)', 'Conv', (ctx) => {
      const out = GRAD_RULES.Conv(ctx);
      const swapped = ctx.b.op('Transpose', [ctx.inputs[1]], { perm: attr.ints([1, 0, 2, 3]) });
      out[0] = ctx.b.op('Conv', [ctx.gradOutputs[0]!, swapped], { kernel_shape: attr.ints([5, 5]), pads: attr.ints([2, 2, 2, 2]) });
      return out;
    }],
    ['MaxPool spreading dY over the window', 'MaxPool', (ctx) => {
      const shaped = { ...ctx, node: { ...ctx.node, op: 'AveragePool' } };
      ctx.b.shapes.set(ctx.inputs[0], [2, 3, 6, 6]);
      return GRAD_RULES.AveragePool(shaped);
    }],
    ...CONV_BROKEN,
    ...POOL_NORM_BROKEN,
  ];
  for (const [name, op, rule] of broken) {
    it(name, async () => {
      // A family's broken rule names its case ("<case name>: what is wrong"); the rest take the op's first case.
      const c = CASES.find((k) => name.startsWith(`${k.name}:`)) ?? CASES.find((k) => k.build.toString().includes(`'${op}'`) || k.name.startsWith(op))!;
      const report = await gradCheck(c, { ...GRAD_RULES, [op]: rule });
      assert.ok(report.worst > 1, `${name} passed the check (worst ${report.worst})`);
    });
  }
});

describe('Dropout op rule', () => {
  it('passes the gradient through the mask, scaled by 1/(1 - ratio)', async () => {
    const b = new GraphBuilder('dropout');
    const x = b.input('x', 'float32', [4, 50]);
    const w = b.input('w', 'float32', [4, 50]);
    const [y, mask] = b.node('Dropout', [x, b.scalar(0.3), b.op('Cast', [b.constI([1], [])], { to: attr.int(9) })], {}, 2);
    b.note(y, 'float32', [4, 50]);
    const prod = b.op('Mul', [y, w]);
    b.note(prod, 'float32', [4, 50]);
    const loss = b.op('ReduceSum', [prod], { keepdims: attr.int(0) });
    const g = emitBackward(b, loss, ['x']).get('x')!;
    b.expose(g, 'gx', 'float32');
    b.expose(mask, 'm', 'bool');
    const s = await ort.InferenceSession.create(encodeModel(b.graph));
    const wv = Float32Array.from({ length: 200 }, (_, i) => (i % 7) - 3);
    const out = await s.run({ x: new ort.Tensor('float32', new Float32Array(200).fill(1), [4, 50]), w: new ort.Tensor('float32', wv, [4, 50]) });
    const m = out.m.data as Uint8Array;
    const gx = out.gx.data as Float32Array;
    let kept = 0;
    for (let i = 0; i < 200; i++) {
      kept += m[i] ? 1 : 0;
      assert.ok(Math.abs(gx[i] - (m[i] ? wv[i] / 0.7 : 0)) < 1e-5);
    }
    assert.ok(kept > 100 && kept < 180, `kept ${kept} of 200`);
  });
});

describe('autodiff walk', () => {
  it('names an op without a rule', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', 'float32', [3]);
    const y = b.op('Cos', [x]);
    const loss = b.op('ReduceSum', [y], { keepdims: attr.int(0) });
    assert.throws(() => emitBackward(b, loss, ['x']), /no gradient rule for op Cos/);
  });

  it('refuses a parameter that does not reach the loss', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', 'float32', [3]);
    b.input('unused', 'float32', [3]);
    const loss = b.op('ReduceSum', [x], { keepdims: attr.int(0) });
    assert.throws(() => emitBackward(b, loss, ['x', 'unused']), /unused does not reach the loss/);
  });

  it('refuses a composite whose inner value reaches the loss from outside it', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', 'float32', [2, 3, 2, 2]);
    const g = b.input('g', 'float32', [3]);
    const be = b.input('be', 'float32', [3]);
    const { y, mean } = emitBatchNormTraining(b, x, g, be, { channels: 3, eps: 1e-5, name: 'bn' });
    const loss = b.op('Add', [b.op('ReduceSum', [y], { keepdims: attr.int(0) }), b.op('ReduceSum', [mean], { keepdims: attr.int(0) })]);
    assert.throws(() => emitBackward(b, loss, ['x', 'g', 'be']), /bn_mean, inside composite BatchNormTraining_composite\w*, is used on a path to the loss outside it/);
  });

  it('refuses a composite that reads a differentiable value it does not declare', () => {
    const b = new GraphBuilder('g');
    const x = b.input('x', 'float32', [3]);
    const w = b.input('w', 'float32', [3]);
    const [y] = b.composite('Mul', [x], () => [b.op('Mul', [x, w])]);
    const loss = b.op('ReduceSum', [y], { keepdims: attr.int(0) });
    assert.throws(() => emitBackward(b, loss, ['x', 'w']), /composite Mul_composite reads w without declaring it an input/);
  });
});
