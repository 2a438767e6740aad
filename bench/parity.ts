/**
 * The float64 parity check of cnnlab's training of an imported model: bench/pytorch-parity.py
 * exports the model (training-mode export, BatchNormalization kept) and trains it for a few SGD
 * steps in PyTorch in float64 and in float32; this imports the export in-process, trains it with
 * cnnlab's float32 train step on the same images and labels in the same order (one run of K =
 * steps batches, lr constant, momentum 0), and prints, per parameter and BatchNorm running
 * statistic, the relative error of cnnlab's update against PyTorch's float64 one,
 * ||cnnlab after - torch64 after|| / ||torch64 after - before||, beside PyTorch float32's own
 * relative error against float64 measured the same way (the noise floor of a float32 update).
 * In a deep ReLU6 net (MobileNetV2) that floor is itself high: activations within float32 noise of
 * a kink flip the gradient's mask, and a few steps at lr 0.05 amplify any difference, so there
 * cnnlab's column is read against PyTorch float32's, and --steps 1 isolates one gradient.
 * Run: npx tsx bench/parity.ts [--model dwse|mobilenet_v2] [--steps 3] [--batch 16] [--lr 0.05] [--size N] [--seed 0] [--threads 2]
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';

const { values } = parseArgs({
  options: {
    model: { type: 'string', default: 'dwse' },
    steps: { type: 'string', default: '3' },
    batch: { type: 'string', default: '16' },
    lr: { type: 'string', default: '0.05' },
    size: { type: 'string' },
    seed: { type: 'string', default: '0' },
    threads: { type: 'string', default: '2' },
  },
});
const which = values.model!;
const [steps, batch, lr] = [Number(values.steps), Number(values.batch), Number(values.lr)];

interface TorchResult {
  torch: string;
  size: number;
  losses64: number[];
  losses32: number[];
  before: Record<string, number[]>;
  after64: Record<string, number[]>;
  after32: Record<string, number[]>;
}

const python = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
const probe = spawnSync(python, ['-c', 'import torch'], { encoding: 'utf8' });
if (probe.status !== 0) {
  console.log(`parity check skipped: ${python} cannot import torch (apt-get install python3-torch python3-torchvision; see ../shared/anchors/README.md)`);
  process.exit(0);
}
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-parity-'));
const script = join(import.meta.dirname, 'pytorch-parity.py');
const args = [script, dir, '--model', which, '--steps', String(steps), '--batch', String(batch), '--lr', String(lr), '--seed', values.seed!, ...(values.size ? ['--size', values.size] : [])];
const py = spawnSync(python, ['-W', 'ignore', ...args], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'], maxBuffer: 1 << 26 });
if (py.status !== 0) throw new Error(`${python} ${args.join(' ')} exited ${py.status}${py.error ? ` (${py.error.message})` : ''}`);
for (const line of py.stdout.split('\n')) if (line.startsWith('note:') || line.startsWith('initialisers:')) console.log(line);
const torch = JSON.parse(readFileSync(join(dir, 'parity.json'), 'utf8')) as TorchResult;

// Import, compile and train in-process.
const path = join(dir, 'model.onnx');
const { bytes, layout } = readOnnxFile(path, readFileSync(path));
const model = importOnnxModel(bytes, path, { layout });
const meta = { architecture: 'x', dataset: 'parity', classes: [], mean: 0, std: 1 };
let t = performance.now();
const built = compile(model, { optimizer: defaultOptimizer('sgd', 0, false), loss: 'cross-entropy', meta, target: 'cpu' });
const compileS = (performance.now() - t) / 1000;
const initial = new Map(model.params.map((p) => [p.name, (p.init as { data: Float32Array }).data]));
for (const [name, data] of initial) {
  const before = torch.before[name];
  if (!before) console.log(`note: cnnlab parameter ${name} has no PyTorch counterpart`);
  else if (before.length !== data.length || before.some((v, i) => v !== data[i])) console.log(`note: ${name} as cnnlab imported it differs from PyTorch's starting value`);
}
for (const name of Object.keys(torch.before)) if (!initial.has(name)) console.log(`note: PyTorch's ${name} is not a cnnlab parameter`);

const rt = await createRuntime({ ep: 'cpu', threads: Number(values.threads) });
t = performance.now();
const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(initial));
const sessionS = (performance.now() - t) / 1000;
const K = steps;
t = performance.now();
const out = await runner.run({
  K,
  B: batch,
  inputs: {
    images: new Uint8Array(readFileSync(join(dir, 'images.u8'))),
    labels: new Uint8Array(readFileSync(join(dir, 'labels.u8'))),
    lr: new Float32Array(K).fill(lr),
    momentum: new Float32Array(K).fill(0),
    dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)),
  },
});
const runS = (performance.now() - t) / 1000;
const trained = runner.tensors();
await runner.release();

/** ||a - b|| (dist), ||c - d|| (norm) and their ratio (rel). */
function relative(a: ArrayLike<number>, b: ArrayLike<number>, c: ArrayLike<number>, d: ArrayLike<number>): { rel: number; dist: number; norm: number } {
  let diff = 0;
  let norm = 0;
  for (let i = 0; i < a.length; i++) {
    diff += (a[i] - b[i]) ** 2;
    norm += (c[i] - d[i]) ** 2;
  }
  return { rel: Math.sqrt(diff / norm), dist: Math.sqrt(diff), norm: Math.sqrt(norm) };
}

// Depthwise (grouped) convolution weights: a Conv node's weight input where group > 1.
const graph = decodeGraph(bytes).graph;
const grouped = new Set(graph.nodes.filter((n) => n.op === 'Conv' && n.attrs.group?.kind === 'int' && n.attrs.group.value > 1).map((n) => n.inputs[1]));

const e = (x: number) => x.toExponential(2);
console.log(`PyTorch ${torch.torch}, ${which} at 3x${torch.size}x${torch.size}, ${steps} SGD steps of ${batch} images, lr ${lr}, momentum 0`);
console.log(`cnnlab: compile ${compileS.toFixed(1)} s, train step ${(built.trainStep.length / 1e6).toFixed(1)} MB, session ${sessionS.toFixed(1)} s, run ${runS.toFixed(1)} s`);
console.log('rel: ||after - torch64 after|| / ||torch64 after - before||; rounding: the same for torch64 after rounded to float32 (no float32 result can beat it)');
console.log(`${'name'.padEnd(34)} ${'count'.padStart(7)}  |update|64  cnnlab rel  torch32 rel  rounding`);
const worst = { cnnlab: { v: 0, name: '' }, torch32: { v: 0, name: '' }, dwCnnlab: 0, dwTorch32: 0 };
let missing = 0;
const total = { cnnlab: 0, torch32: 0, update: 0 };
let zero = 0;
for (const name of Object.keys(torch.before)) {
  const mine = trained.get(name)?.data as Float32Array | undefined;
  if (!mine) {
    console.log(`note: PyTorch's ${name} has no trained cnnlab tensor`);
    missing++;
    continue;
  }
  const [before, a64, a32] = [torch.before[name], torch.after64[name], torch.after32[name]];
  const c = relative(mine, a64, a64, before);
  const f = relative(a32, a64, a64, before);
  const r = relative(Float32Array.from(a64), a64, a64, before);
  if (c.norm < 1e-7 * Math.sqrt(mine.length)) {
    // No update in float64 (a BatchNorm shift the next BatchNorm removes, the running mean of a
    // zero-mean input): a relative error means nothing here, so the absolute distance, not in the worst.
    zero++;
    console.log(`${name.padEnd(34)} ${String(mine.length).padStart(7)}  ${c.norm.toExponential(3)}  no update in float64: ||cnnlab - torch64|| ${e(c.dist)}, ||torch32 - torch64|| ${e(f.dist)}`);
    continue;
  }
  total.cnnlab += c.dist ** 2;
  total.torch32 += f.dist ** 2;
  total.update += c.norm ** 2;
  if (c.rel > worst.cnnlab.v) worst.cnnlab = { v: c.rel, name };
  if (f.rel > worst.torch32.v) worst.torch32 = { v: f.rel, name };
  if (grouped.has(name)) {
    worst.dwCnnlab = Math.max(worst.dwCnnlab, c.rel);
    worst.dwTorch32 = Math.max(worst.dwTorch32, f.rel);
  }
  console.log(`${name.padEnd(34)} ${String(mine.length).padStart(7)}  ${c.norm.toExponential(3)}  ${e(c.rel).padStart(10)}  ${e(f.rel).padStart(11)}  ${e(r.rel).padStart(8)}${grouped.has(name) ? '  (depthwise)' : ''}`);
}
if (zero) console.log(`${zero} tensor(s) have no update in float64 (|update| < 1e-7 per value): shown as absolute distances, left out of the worst`);
if (missing) console.log(`note: ${missing} PyTorch tensor(s) have no trained cnnlab tensor`);
console.log(`worst relative error of an update: cnnlab ${e(worst.cnnlab.v)} (${worst.cnnlab.name}), PyTorch float32 ${e(worst.torch32.v)} (${worst.torch32.name}); both vs PyTorch float64 (target: far below 1e-2)`);
console.log(`all updates as one vector: cnnlab ${e(Math.sqrt(total.cnnlab / total.update))}, PyTorch float32 ${e(Math.sqrt(total.torch32 / total.update))}`);
if (grouped.size) console.log(`depthwise conv weights (${grouped.size}, group > 1): worst cnnlab ${e(worst.dwCnnlab)}, PyTorch float32 ${e(worst.dwTorch32)}`);
const fmt = (l: ArrayLike<number>) => Array.from(l, (v) => v.toFixed(7)).join(' ');
console.log(`losses per step: float64 ${fmt(torch.losses64)}; float32 ${fmt(torch.losses32)}; cnnlab ${fmt(out.losses)}`);
console.log(`first-step loss: |cnnlab - float64| ${e(Math.abs(out.losses[0] - torch.losses64[0]))}, |float32 - float64| ${e(Math.abs(torch.losses32[0] - torch.losses64[0]))}`);
