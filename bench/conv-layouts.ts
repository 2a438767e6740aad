/**
 * One 3x3 pad-1 Conv at batch 128 on the CPU EP, its weights fed as an input (as in a train
 * step: onnxruntime runs im2col + SGEMM) against the same weights as an initializer (its graph
 * optimiser then rewrites the Conv to MLAS's blocked NCHWc kernel, reorders included). Runs
 * alternate; prints the median of each.
 *
 *   npx tsx bench/conv-layouts.ts [--channels 32] [--size 28] [--rounds 12]
 */
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { attr, GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';

const { values } = parseArgs({ options: { channels: { type: 'string', default: '32' }, size: { type: 'string', default: '28' }, rounds: { type: 'string', default: '12' } } });
const [N, C, H] = [128, Number(values.channels), Number(values.size)];
const weights = Float32Array.from({ length: C * C * 9 }, (_, i) => Math.sin(i) * 0.1);
const images = Float32Array.from({ length: N * C * H * H }, (_, i) => Math.cos(i));

async function session(constantWeights: boolean): Promise<ort.InferenceSession> {
  const b = new GraphBuilder('conv');
  const x = b.input('x', 'float32', [N, C, H, H]);
  const w = constantWeights ? b.constF(weights, [C, C, 3, 3]) : b.input('w', 'float32', [C, C, 3, 3]);
  const y = b.op('Conv', [x, w], { kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) });
  b.expose(b.op('ReduceSum', [y], { keepdims: attr.int(0) }), 'total', 'float32');
  return ort.InferenceSession.create(encodeModel(b.graph), { intraOpNumThreads: 2, graphOptimizationLevel: 'all' });
}

const x = new ort.Tensor('float32', images, [N, C, H, H]);
const runs: { name: string; s: ort.InferenceSession; feeds: Record<string, ort.Tensor> }[] = [
  { name: 'weights as an input (im2col)', s: await session(false), feeds: { x, w: new ort.Tensor('float32', weights, [C, C, 3, 3]) } },
  { name: 'weights as an initializer (NCHWc)', s: await session(true), feeds: { x } },
];
const times: number[][] = runs.map(() => []);
for (let r = 0; r < Number(values.rounds); r++) {
  for (const [i, run] of runs.entries()) {
    const t0 = performance.now();
    await run.s.run(run.feeds);
    times[i].push(performance.now() - t0);
  }
}
const gflop = (2 * N * C * C * 9 * H * H) / 1e9;
for (const [i, run] of runs.entries()) {
  const ms = [...times[i]].sort((a, b) => a - b)[Math.floor(times[i].length / 2)];
  console.log(`${C}->${C} channels, ${H}x${H}, batch ${N}: ${run.name} ${ms.toFixed(1)} ms (${(gflop / (ms / 1000)).toFixed(0)} GFLOP/s)`);
}
