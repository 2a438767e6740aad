/**
 * One Conv on the CPU EP, its filter fed as an input (as in a train step: onnxruntime runs im2col
 * + SGEMM) against the same Conv in another form; runs alternate, prints the median of each.
 *
 * Default: one 3x3 pad-1 Conv at batch 128 against the same filter as an initializer (onnxruntime's
 * optimiser then rewrites it to MLAS's blocked NCHWc kernel, reorders included).
 * --nchwc: the convs of the bench rows (forward and input-gradient shapes) against cnnlab's
 * rewrite to the NCHWc kernels with the filter still an input (graph-builder/artifacts/nchwc.ts),
 * with the largest difference of their outputs.
 *
 *   npx tsx bench/conv-layouts.ts [--channels 32] [--size 28] [--rounds 12]
 *   npx tsx bench/conv-layouts.ts --nchwc [--only eva] [--rounds 10]
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { lowerConvsToNchwc } from '../graph-builder/artifacts/nchwc.ts';
import { attr, GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
import { nchwcBlockSize } from '../runtime/ort.ts';

const { values } = parseArgs({
  options: { channels: { type: 'string', default: '32' }, size: { type: 'string', default: '28' }, rounds: { type: 'string', default: '12' }, nchwc: { type: 'boolean', default: false }, only: { type: 'string' } },
});
const OPTIONS = { intraOpNumThreads: 2, graphOptimizationLevel: 'all', extra: { session: { intra_op: { allow_spinning: '0' } } } } as ort.InferenceSession.SessionOptions;

interface ConvCase {
  name: string;
  n: number;
  cin: number;
  cout: number;
  k: number;
  h: number;
  pad: number;
  group?: number;
  stride?: number;
}

/** The bench rows' convs: forward, and the input gradient's Conv with the rotated kernel (dX). */
const CASES: ConvCase[] = [
  { name: 'partB conv1', n: 64, cin: 1, cout: 32, k: 5, h: 28, pad: 2 },
  { name: 'partB conv2', n: 64, cin: 32, cout: 64, k: 5, h: 14, pad: 2 },
  { name: 'partB conv2 dX', n: 64, cin: 64, cout: 32, k: 5, h: 14, pad: 2 },
  { name: 'fashion-best 32->32 at 28x28', n: 128, cin: 32, cout: 32, k: 3, h: 28, pad: 1 },
  { name: 'fashion-best 64->64 at 14x14', n: 128, cin: 64, cout: 64, k: 3, h: 14, pad: 1 },
  { name: 'eva-best conv1 1->8', n: 128, cin: 1, cout: 8, k: 3, h: 28, pad: 0 },
  { name: 'eva-best conv2 8->16', n: 128, cin: 8, cout: 16, k: 3, h: 26, pad: 0 },
  { name: 'eva-best conv3 16->8 1x1', n: 128, cin: 16, cout: 8, k: 1, h: 12, pad: 0 },
  { name: 'eva-best conv5 12->16', n: 128, cin: 12, cout: 16, k: 3, h: 10, pad: 0 },
  { name: 'eva-best conv6 16->20', n: 128, cin: 16, cout: 20, k: 3, h: 8, pad: 0 },
  { name: 'eva-best dX 16->8 at 24x24', n: 128, cin: 16, cout: 8, k: 3, h: 24, pad: 2 },
  { name: 'ResNet-18 64->64 at 56x56', n: 32, cin: 64, cout: 64, k: 3, h: 56, pad: 1 },
  { name: 'MobileNetV2 depthwise 96, stride 2, 112x112', n: 32, cin: 96, cout: 96, k: 3, h: 112, pad: 1, group: 96, stride: 2 },
  { name: 'MobileNetV2 depthwise 144 at 56x56', n: 32, cin: 144, cout: 144, k: 3, h: 56, pad: 1, group: 144 },
  { name: 'MobileNetV2 1x1 32->16 at 112x112', n: 32, cin: 32, cout: 16, k: 1, h: 112, pad: 0 },
  { name: 'MobileNetV2 1x1 16->96 at 112x112', n: 32, cin: 16, cout: 96, k: 1, h: 112, pad: 0 },
  { name: 'MobileNetV2 1x1 144->24 at 56x56', n: 32, cin: 144, cout: 24, k: 1, h: 56, pad: 0 },
  { name: 'MobileNetV2 1x1 32->192 at 28x28', n: 32, cin: 32, cout: 192, k: 1, h: 28, pad: 0 },
  { name: 'MobileNetV2 1x1 320->1280 at 7x7', n: 32, cin: 320, cout: 1280, k: 1, h: 7, pad: 0 },
];

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** Alternating runs of each session on its feeds (after one warm-up run each); the median milliseconds of each, and their outputs. */
async function race(sessions: ort.InferenceSession[], feeds: Record<string, ort.Tensor>[], rounds: number) {
  const outputs = await Promise.all(sessions.map((s, i) => s.run(feeds[i])));
  const times: number[][] = sessions.map(() => []);
  for (let r = 0; r < rounds; r++) {
    for (const i of r % 2 ? [...sessions.keys()].reverse() : sessions.keys()) {
      const t0 = performance.now();
      await sessions[i].run(feeds[i]);
      times[i].push(performance.now() - t0);
    }
  }
  return { ms: times.map(median), outputs };
}

/** One Conv with its filter as an input; with `block`, rewritten to the NCHWc kernels. */
function convModel(c: ConvCase, block?: number): Uint8Array {
  const g = c.group ?? 1;
  const s = c.stride ?? 1;
  const b = new GraphBuilder('conv');
  const x = b.input('x', 'float32', [c.n, c.cin, c.h, c.h]);
  const w = b.input('w', 'float32', [c.cout, c.cin / g, c.k, c.k]);
  const y = b.op('Conv', [x, w], { kernel_shape: attr.ints([c.k, c.k]), pads: attr.ints([c.pad, c.pad, c.pad, c.pad]), group: attr.int(g), strides: attr.ints([s, s]) });
  b.expose(y, 'y', 'float32');
  if (block) lowerConvsToNchwc(b, block);
  return encodeModel(b.graph);
}

async function nchwcRows(): Promise<void> {
  const block = await nchwcBlockSize();
  if (!block) throw new Error(`onnxruntime's CPU EP has no NCHWc kernels on this machine (${process.arch})`);
  console.log(`NCHWc block ${block}, 2 threads, median of ${values.rounds} alternating runs`);
  for (const c of CASES.filter((x) => !values.only || x.name.includes(values.only!))) {
    const g = c.group ?? 1;
    const feeds = {
      x: new ort.Tensor('float32', Float32Array.from({ length: c.n * c.cin * c.h * c.h }, (_, i) => Math.cos(i)), [c.n, c.cin, c.h, c.h]),
      w: new ort.Tensor('float32', Float32Array.from({ length: (c.cout * c.cin * c.k * c.k) / g }, (_, i) => Math.sin(i) * 0.1), [c.cout, c.cin / g, c.k, c.k]),
    };
    const sessions = [await ort.InferenceSession.create(convModel(c), OPTIONS), await ort.InferenceSession.create(convModel(c, block), OPTIONS)];
    const { ms, outputs } = await race(sessions, [feeds, feeds], Number(values.rounds));
    const [a, b] = outputs.map((o) => o.y.data as Float32Array);
    const diff = a.reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);
    console.log(`${c.name}, batch ${c.n}: im2col ${ms[0].toFixed(1)} ms, NCHWc ${ms[1].toFixed(1)} ms (${(ms[0] / ms[1]).toFixed(2)}x), largest difference ${diff.toExponential(1)}`);
  }
}

async function initializerRow(): Promise<void> {
  const [N, C, H] = [128, Number(values.channels), Number(values.size)];
  const weights = Float32Array.from({ length: C * C * 9 }, (_, i) => Math.sin(i) * 0.1);
  const session = (constantWeights: boolean) => {
    const b = new GraphBuilder('conv');
    const x = b.input('x', 'float32', [N, C, H, H]);
    const w = constantWeights ? b.constF(weights, [C, C, 3, 3]) : b.input('w', 'float32', [C, C, 3, 3]);
    const y = b.op('Conv', [x, w], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) });
    b.expose(b.op('ReduceSum', [y], { keepdims: attr.int(0) }), 'total', 'float32');
    return ort.InferenceSession.create(encodeModel(b.graph), OPTIONS);
  };
  const x = new ort.Tensor('float32', Float32Array.from({ length: N * C * H * H }, (_, i) => Math.cos(i)), [N, C, H, H]);
  const w = new ort.Tensor('float32', weights, [C, C, 3, 3]);
  // The initializer session has no input w.
  const { ms } = await race([await session(false), await session(true)], [{ x, w }, { x }], Number(values.rounds));
  const gflop = (2 * N * C * C * 9 * H * H) / 1e9;
  for (const [i, name] of ['weights as an input (im2col)', 'weights as an initializer (NCHWc)'].entries()) {
    console.log(`${C}->${C} channels, ${H}x${H}, batch ${N}: ${name} ${ms[i].toFixed(1)} ms (${(gflop / (ms[i] / 1000)).toFixed(0)} GFLOP/s)`);
  }
}

await (values.nchwc ? nchwcRows() : initializerRow());
