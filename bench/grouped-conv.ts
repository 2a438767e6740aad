/**
 * The input and weight gradients of one depthwise (or grouped) Conv on the CPU EP (2 threads),
 * each formulation in its own session, runs interleaved (this VM's speed drifts 15% within
 * minutes); prints the median wall and CPU time of each and the node count of its graph.
 * dW: 'rule' is the rule's (for stride 1 the groups' unfolded X against shifted dY in one batched
 * MatMul, else 'conv'); 'conv' is one grouped Conv of X over dY^T; 'shifted' is k*k strided
 * slices of the padded X times dY, reduced over batch and space (depthwise only); 'taps-matmul'
 * the same products as batched MatMuls over [N, C]; 'per-group' is one ungrouped gradient per
 * group (Slice + Concat). dX: 'rule' is the rule's (a Conv for stride 1, else a ConvTranspose);
 * 'zero-insert' spreads dY with zeros between its pixels and runs the stride-1 Conv form;
 * 'per-group' as for dW.
 *
 *   npx tsx bench/grouped-conv.ts [--shape 8,96,56,56] [--kernel 3] [--stride 1] [--group C] [--rounds 12] [--only 'dW rule,dW conv']
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import type { GradContext } from '../graph-builder/autodiff/rule.ts';
import { conv } from '../graph-builder/autodiff/rules/conv.ts';
import { type Dim, GraphBuilder, type Node, attr } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';

const { values } = parseArgs({
  options: {
    shape: { type: 'string', default: '8,96,56,56' },
    kernel: { type: 'string', default: '3' },
    stride: { type: 'string', default: '1' },
    group: { type: 'string' },
    rounds: { type: 'string', default: '12' },
    only: { type: 'string' },
  },
});
const [N, C, H, W] = values.shape.split(',').map(Number);
const k = Number(values.kernel);
const s = Number(values.stride);
const g = Number(values.group ?? C);
const p = Math.floor(k / 2);
const [Ho, Wo] = [H, W].map((n) => Math.floor((n + 2 * p - k) / s) + 1);
const wShape = [C, C / g, k, k];
const attrs = { group: attr.int(g), kernel_shape: attr.ints([k, k]), strides: attr.ints([s, s]), pads: attr.ints([p, p, p, p]) };

type Variant = (ctx: GradContext, grad: 0 | 1) => string;

/** The rule as it stands. */
const rule: Variant = (ctx, grad) => conv(ctx)[grad]!;

/** One ungrouped gradient per group: X's, W's and dY's channels sliced, the parts concatenated. */
const perGroup: Variant = (ctx, grad) => {
  const { b } = ctx;
  const [cg, mg] = [C / g, C / g];
  const slice = (v: string, from: number, size: number, shape: Dim[]) => {
    const out = b.op('Slice', [v, b.constI([from]), b.constI([from + size]), b.constI([v === ctx.inputs[1] ? 0 : 1])]);
    b.note(out, 'float32', shape);
    return out;
  };
  const parts: string[] = [];
  for (let j = 0; j < g; j++) {
    const node = { ...ctx.node, attrs: { ...ctx.node.attrs, group: attr.int(1) } };
    const inputs = [slice(ctx.inputs[0], j * cg, cg, ['N', cg, H, W]), slice(ctx.inputs[1], j * mg, mg, [mg, cg, k, k])];
    const gradOutputs = [slice(ctx.gradOutputs[0]!, j * mg, mg, ['N', mg, Ho, Wo])];
    parts.push(conv({ ...ctx, node, inputs, gradOutputs, needsGrad: [grad === 0, grad === 1] })[grad]!);
  }
  return b.op('Concat', parts, { axis: attr.int(grad === 0 ? 1 : 0) });
};

/** Depthwise dW: for each kernel offset, the strided slice of the padded X times dY, summed over N, H, W. */
const shifted: Variant = (ctx, grad) => {
  if (grad !== 1 || g !== C) throw new Error('shifted: depthwise dW only');
  const { b } = ctx;
  const padded = b.op('Pad', [ctx.inputs[0], b.constI([0, 0, p, p, 0, 0, p, p])]);
  const taps: string[] = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const tap = b.op('Slice', [padded, b.constI([i, j]), b.constI([i + s * (Ho - 1) + 1, j + s * (Wo - 1) + 1]), b.constI([2, 3]), b.constI([s, s])]);
      const prod = b.op('Mul', [tap, ctx.gradOutputs[0]!]);
      taps.push(b.op('ReduceSum', [prod, b.constI([0, 2, 3])], { keepdims: attr.int(0) }));
    }
  }
  const stacked = b.op('Concat', taps.map((t) => b.op('Unsqueeze', [t, b.constI([1])])), { axis: attr.int(1) });
  return b.op('Reshape', [stacked, b.constI([C, 1, k, k])]);
};

/** Depthwise dW: for each kernel offset, the strided slice of the padded X against dY as a batched dot product (MatMul over [N, C]). */
const tapsMatMul: Variant = (ctx, grad) => {
  if (grad !== 1 || g !== C) throw new Error('taps-matmul: depthwise dW only');
  const { b } = ctx;
  const padded = b.op('Pad', [ctx.inputs[0], b.constI([0, 0, p, p, 0, 0, p, p])]);
  const dYCol = b.op('Reshape', [ctx.gradOutputs[0]!, b.constI([0, C, Ho * Wo, 1])]);
  const taps: string[] = [];
  for (let i = 0; i < k; i++) {
    for (let j = 0; j < k; j++) {
      const tap = b.op('Slice', [padded, b.constI([i, j]), b.constI([i + s * (Ho - 1) + 1, j + s * (Wo - 1) + 1]), b.constI([2, 3]), b.constI([s, s])]);
      taps.push(b.op('MatMul', [b.op('Reshape', [tap, b.constI([0, C, 1, Ho * Wo])]), dYCol]));
    }
  }
  const perImage = b.op('Concat', taps, { axis: attr.int(2) });
  return b.op('Reshape', [b.op('ReduceSum', [perImage, b.constI([0])], { keepdims: attr.int(0) }), b.constI([C, 1, k, k])]);
};

/**
 * dW as one grouped Conv (the rule's form for strides above 1): X as [C/g, g*N, H, W], dY^T as the
 * kernel, dilated by the stride; [C/g, C, k', k'] cut to the kernel and transposed.
 */
const groupedConv: Variant = (ctx, grad) => {
  if (grad !== 1) throw new Error('conv: dW only');
  const { b } = ctx;
  const cg = C / g;
  const split = b.op('Reshape', [ctx.inputs[0], b.constI([0, g, cg, H, W])]);
  const xs = b.op('Reshape', [b.op('Transpose', [split], { perm: attr.ints([2, 1, 0, 3, 4]) }), b.constI([cg, -1, H, W])]);
  const dYT = b.op('Transpose', [ctx.gradOutputs[0]!], { perm: attr.ints([1, 0, 2, 3]) });
  const dWT = b.op('Conv', [xs, dYT], { group: attr.int(g), pads: attr.ints([p, p, p, p]), dilations: attr.ints([s, s]) });
  const cut = b.op('Slice', [dWT, b.constI([0, 0]), b.constI([k, k]), b.constI([2, 3])]);
  return b.op('Transpose', [cut], { perm: attr.ints([1, 0, 2, 3]) });
};

/** dX for stride s: dY with s-1 zeros after each pixel, then the stride-1 Conv form (rotated kernel). */
const zeroInsert: Variant = (ctx, grad) => {
  if (grad !== 0 || g !== C) throw new Error('zero-insert: depthwise dX only');
  const { b } = ctx;
  const dY = b.op('Reshape', [ctx.gradOutputs[0]!, b.constI([0, C, Ho, 1, Wo, 1])]);
  const spread = b.op('Pad', [dY, b.constI([0, 0, 0, 0, 0, 0, 0, 0, 0, s - 1, 0, s - 1])]);
  const up = b.op('Reshape', [spread, b.constI([0, C, Ho * s, Wo * s])]);
  // The stride-1 Conv over the spread dY (its last s-1 rows of zeros dropped by the pads).
  const rotated = b.op('Slice', [ctx.inputs[1], b.constI([-1, -1]), b.constI([-(2 ** 31), -(2 ** 31)]), b.constI([2, 3]), b.constI([-1, -1])]);
  const [extraH, extraW] = [H + 2 * p - k - s * (Ho - 1), W + 2 * p - k - s * (Wo - 1)];
  const pads = [k - 1 - p, k - 1 - p, k - 1 - p + extraH - (s - 1), k - 1 - p + extraW - (s - 1)];
  return b.op('Conv', [up, rotated], { group: attr.int(C), kernel_shape: attr.ints([k, k]), pads: attr.ints(pads) });
};

const VARIANTS: Record<string, [0 | 1, Variant]> = {
  'dX rule': [0, rule],
  'dX zero-insert': [0, zeroInsert],
  'dX per-group': [0, perGroup],
  'dW rule': [1, rule],
  'dW conv': [1, groupedConv],
  'dW shifted': [1, shifted],
  'dW taps-matmul': [1, tapsMatMul],
  'dW per-group': [1, perGroup],
};

async function session(grad: 0 | 1, variant: Variant): Promise<{ s: ort.InferenceSession; nodes: number }> {
  const b = new GraphBuilder('bench');
  const x = b.input('x', 'float32', ['N', C, H, W]);
  const w = b.input('w', 'float32', wShape);
  const dY = b.input('dy', 'float32', ['N', C, Ho, Wo]);
  b.note('y', 'float32', ['N', C, Ho, Wo]);
  const node: Node = { op: 'Conv', name: 'conv', inputs: [x, w], outputs: ['y'], attrs };
  const out = variant({ b, node, inputs: [x, w], outputs: ['y'], gradOutputs: [dY], needsGrad: [grad === 0, grad === 1] }, grad);
  b.expose(out, 'g', 'float32');
  const nodes = b.graph.nodes.filter((n) => n.op !== 'Constant').length;
  return { s: await ort.InferenceSession.create(encodeModel(b.graph), {
    intraOpNumThreads: 2,
    interOpNumThreads: 1,
    graphOptimizationLevel: 'all',
    // No spinning: the process's CPU time then counts work, a steadier figure than wall time on a busy machine.
    extra: { session: { intra_op: { allow_spinning: '0' } } },
  }), nodes };
}

const data = (n: number, f: (i: number) => number) => Float32Array.from({ length: n }, (_, i) => f(i));
const feeds = {
  x: new ort.Tensor('float32', data(N * C * H * W, (i) => Math.cos(i)), [N, C, H, W]),
  w: new ort.Tensor('float32', data(wShape.reduce((a, d) => a * d, 1), (i) => Math.sin(i)), wShape),
  dy: new ort.Tensor('float32', data(N * C * Ho * Wo, (i) => Math.sin(0.3 * i)), [N, C, Ho, Wo]),
};
const wanted = values.only?.split(',');
const runs: { name: string; s: ort.InferenceSession; nodes: number }[] = [];
for (const [name, [grad, variant]] of Object.entries(VARIANTS)) {
  if (wanted && !wanted.some((w) => name.includes(w))) continue;
  try {
    runs.push({ name, ...(await session(grad, variant)) });
  } catch (e) {
    if (!(e as Error).message.includes('only')) throw e;
  }
}
// The variants of one gradient must agree.
const results = await Promise.all(runs.map((r) => r.s.run(feeds)));
for (const [i, r] of runs.entries()) {
  const ref = results.findIndex((_, j) => runs[j].name.slice(0, 2) === r.name.slice(0, 2));
  const [a, b] = [results[i].g.data as Float32Array, results[ref].g.data as Float32Array];
  const err = a.reduce((m, v, e) => Math.max(m, Math.abs(v - b[e]) / (1 + Math.abs(b[e]))), 0);
  if (err > 1e-3) throw new Error(`${r.name} differs from ${runs[ref].name} by ${err}`);
}
const times: number[][] = runs.map(() => []);
const cpu: number[][] = runs.map(() => []);
for (let round = 0; round < Number(values.rounds); round++) {
  const order = round % 2 === 0 ? runs.map((_, i) => i) : runs.map((_, i) => runs.length - 1 - i);
  for (const i of order) {
    const [t0, c0] = [performance.now(), process.cpuUsage()];
    await runs[i].s.run(feeds);
    const c = process.cpuUsage(c0);
    times[i].push(performance.now() - t0);
    cpu[i].push((c.user + c.system) / 1000);
  }
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`Conv [${N}, ${C}, ${H}, ${W}], ${k}x${k} stride ${s}, group ${g}; ${values.rounds} interleaved rounds, wall ms median (min..max), CPU ms median (spinning off):`);
for (const [i, r] of runs.entries()) {
  const wall = `${median(times[i]).toFixed(1).padStart(7)} (${Math.min(...times[i]).toFixed(1)}..${Math.max(...times[i]).toFixed(1)})`;
  console.log(`  ${r.name.padEnd(16)} ${wall.padEnd(24)} cpu ${median(cpu[i]).toFixed(1).padStart(7)}  ${r.nodes} nodes`);
}
