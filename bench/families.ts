/**
 * Per CNN family (the full-size torchvision models bench/export-families.py writes): import time,
 * train-step node count (the Loop body's nodes included), compile time, session creation time and
 * training images/s on the CPU EP (batch 8, K = 4 steps per run, after one warm-up run).
 * Run: /usr/bin/python3 bench/export-families.py /tmp/fam64 && npx tsx bench/families.ts /tmp/fam64 [--threads 2] [--only NAME]
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compile } from '../graph-builder/artifacts/compile.ts';
import type { Graph } from '../graph-builder/graph/ir.ts';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';

const { values, positionals } = parseArgs({ allowPositionals: true, options: { threads: { type: 'string', default: '2' }, only: { type: 'string' }, batch: { type: 'string', default: '8' } } });
const dir = positionals[0] ?? '/tmp/fam64';
const files = readdirSync(dir).filter((f) => f.endsWith('.onnx') && (!values.only || f.startsWith(values.only))).sort();
const nodesIn = (g: Graph): number => g.nodes.reduce((a, n) => a + 1 + Object.values(n.attrs).reduce((s, v) => s + (v.kind === 'graph' ? nodesIn(v.value) : 0), 0), 0);
const seconds = (t: number) => (performance.now() - t) / 1000;

console.log('model                 forward  train-step nodes    MB  import s  compile s  session s  img/s');
for (const f of files) {
  const path = join(dir, f);
  let t = performance.now();
  const { bytes } = readOnnxFile(path, readFileSync(path));
  const model = importOnnxModel(bytes, path);
  const importS = seconds(t);
  t = performance.now();
  const built = compile(model, { optimizer: defaultOptimizer('sgd', 0.9, false), loss: 'cross-entropy', meta: { architecture: f, dataset: 'bench', classes: [], mean: 0, std: 1 }, target: 'cpu' });
  const compileS = seconds(t);
  const stepNodes = nodesIn(decodeGraph(built.trainStep).graph);
  const rt = await createRuntime({ ep: 'cpu', threads: Number(values.threads) });
  t = performance.now();
  const params = new Map(model.params.map((p) => [p.name, (p.init as { data: Float32Array }).data]));
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(params));
  const sessionS = seconds(t);
  const [K, B] = [4, Number(values.batch)];
  const pixels = K * B * model.inputShape.reduce((a, d) => a * d, 1);
  const batch = {
    K,
    B,
    inputs: {
      images: Uint8Array.from({ length: pixels }, (_, i) => (i * 7919) % 251),
      labels: Uint8Array.from({ length: K * B }, (_, i) => i % model.classes),
      lr: new Float32Array(K).fill(0.01),
      momentum: new Float32Array(K).fill(0.9),
      dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)),
    },
  };
  await runner.run(batch);
  t = performance.now();
  const runs = 2;
  for (let i = 0; i < runs; i++) await runner.run(batch);
  const ips = (runs * K * B) / seconds(t);
  await runner.release();
  const row = [f.replace('.onnx', '').padEnd(20), String(model.graph.nodes.length).padStart(8), String(stepNodes).padStart(17), (built.trainStep.length / 1e6).toFixed(1).padStart(6), importS.toFixed(2).padStart(9), compileS.toFixed(2).padStart(10), sessionS.toFixed(2).padStart(10), ips.toFixed(1).padStart(6)];
  console.log(row.join(' '));
}
