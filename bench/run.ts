/**
 * `npm run bench`: throughput and latency on this machine, printed as a table and written to
 * bench.json. Warm-up runs are excluded; each figure is the median of repeated measurements,
 * with the spread (min..max). A benchmark, not a test: nothing here passes or fails.
 * `--wasm-vs-cpu` runs only the alternating wasm / CPU EP comparison of partB.
 */
import { DATASETS } from '../datasets/registry.ts';
import { writeFileSync } from 'node:fs';
import { cpus, totalmem } from 'node:os';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import { initialCheckpoint } from '../graph-builder/artifacts/compile.ts';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import { buildTrainStepModel } from '../graph-builder/artifacts/train-step.ts';
import { graphTargetFor } from '../graph-builder/autodiff/registry.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import type { OptimizerName } from '../training/optimizers/index.ts';
import { trainFlops } from '../graph-builder/summary.ts';
import { attr, GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
import { createRuntime, type Runtime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';

const args = new Set(process.argv.slice(2));
if (args.has('--vs-pytorch')) {
  // Side by side with PyTorch in one sitting (bench/vs-pytorch.ts).
  await import('./vs-pytorch.ts');
  process.exit(0);
}
const QUICK = args.has('--quick');
const THREADS = cpus().length;

interface Stat {
  median: number;
  min: number;
  max: number;
}

function stat(xs: number[]): Stat {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s[Math.floor(s.length / 2)], min: s[0], max: s[s.length - 1] };
}

async function repeat(times: number, fn: () => Promise<number>): Promise<Stat> {
  await fn(); // warm-up
  const xs: number[] = [];
  for (let i = 0; i < times; i++) xs.push(await fn());
  return stat(xs);
}

/**
 * onnxruntime's MatMul 1024^3 in GFLOP/s. The session is kept: the roofline is measured again
 * just before every training row, because this kind of VM drifts by 15% or more within minutes
 * and a ratio against a roofline taken half an hour earlier would measure the drift.
 */
async function rooflineMeter(rt: Runtime): Promise<(times: number) => Promise<Stat>> {
  const b = new GraphBuilder('matmul');
  const x = b.input('a', 'float32', [1024, 1024]);
  const y = b.input('b', 'float32', [1024, 1024]);
  b.expose(b.op('MatMul', [x, y]), 'c', 'float32', [1024, 1024]);
  const s = await rt.createSession(encodeModel(b.graph));
  const data = new Float32Array(1024 * 1024).fill(0.5);
  const feeds = { a: new rt.ort.Tensor('float32', data, [1024, 1024]), b: new rt.ort.Tensor('float32', data, [1024, 1024]) };
  return (times) =>
    repeat(times, async () => {
      const t0 = performance.now();
      await s.run(feeds);
      return (2 * 1024 ** 3) / ((performance.now() - t0) / 1000) / 1e9;
    });
}

const mnistStart = performance.now();
const mnist = await loadDataset('mnist', { env: {} });
const datasetSeconds = (performance.now() - mnistStart) / 1000;
const fashionStart = performance.now();
await loadDataset('fashion-mnist', { env: {} });
const fashionSeconds = (performance.now() - fashionStart) / 1000;

async function trainThroughput(rt: Runtime, name: string, B: number, K: number, opt?: OptimizerName): Promise<Stat> {
  const arch = await loadArchitecture(name);
  const spec = trainSpecFor(arch, opt ? { opt, momentum: opt === 'sgd' ? 0.9 : 0 } : {});
  const built = buildTrainStepModel(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS.mnist), target: graphTargetFor(rt.ep as 'cpu' | 'wasm'), nchwcBlock: rt.nchwcBlock });
  const runner = await StepRunner.create(rt, built.bytes, built.iface, initialCheckpoint(built.iface, initParams(arch.model, 0), {}));
  let offset = 0;
  const batch = () => {
    const n = K * B;
    if (offset + n > 60000) offset = 0;
    const images = mnist.train.images.slice(offset * 784, (offset + n) * 784);
    const labels = mnist.train.labels.slice(offset, offset + n);
    const b = { K, B, inputs: { images, labels, lr: new Float32Array(K).fill(1e-3), momentum: new Float32Array(K).fill(0.9), dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)) } };
    offset += n;
    return b;
  };
  // A whole epoch per run is measured once (twice in the full bench) after the warm-up.
  const reps = K * B >= 30000 ? (QUICK ? 1 : 2) : QUICK ? 2 : Math.max(3, Math.min(8, Math.ceil(4096 / (K * B))));
  const s = await repeat(reps, async () => {
    const b = batch();
    const t0 = performance.now();
    await runner.run(b);
    return (K * B) / ((performance.now() - t0) / 1000);
  });
  await runner.release();
  return s;
}

async function inferenceLatency(rt: Runtime, name: string): Promise<Stat> {
  const arch = await loadArchitecture(name);
  const bytes = buildInferenceModel(arch.model, initParams(arch.model, 0), { architecture: name, dataset: 'mnist', classes: [...'0123456789'], mean: 0.13, std: 0.31 });
  const s = await rt.createSession(bytes);
  const image = new rt.ort.Tensor('float32', new Float32Array(784).fill(0.2), [1, 1, 28, 28]);
  for (let i = 0; i < 5; i++) await s.run({ image });
  return repeat(QUICK ? 20 : 100, async () => {
    const t0 = performance.now();
    await s.run({ image });
    return performance.now() - t0;
  });
}

async function evalThroughput(rt: Runtime, name: string): Promise<Stat> {
  const arch = await loadArchitecture(name);
  const bytes = buildInferenceModel(arch.model, initParams(arch.model, 0), { architecture: name, dataset: 'mnist', classes: [...'0123456789'], mean: 0.13, std: 0.31 });
  const s = await rt.createSession(bytes);
  const n = 1000;
  const image = new rt.ort.Tensor('float32', Float32Array.from(mnist.test.images.subarray(0, n * 784), (v) => v / 255), [n, 1, 28, 28]);
  return repeat(QUICK ? 2 : 5, async () => {
    const t0 = performance.now();
    await s.run({ image });
    return n / ((performance.now() - t0) / 1000);
  });
}

const fmt = (s: Stat, digits = 0) => `${s.median.toFixed(digits)} (${s.min.toFixed(digits)}..${s.max.toFixed(digits)})`;
const results: Record<string, unknown> = {
  machine: { cpus: cpus().length, model: cpus()[0]?.model, memoryGiB: Math.round(totalmem() / 2 ** 30), node: process.version, threads: THREADS },
  datasetLoadSeconds: { mnist: datasetSeconds, fashionMnist: fashionSeconds },
};
console.log(`cnnlab bench on ${cpus()[0]?.model} (${cpus().length} cores), node ${process.version}${QUICK ? ', --quick' : ''}`);
console.log(`dataset load, 60k + 10k images into typed arrays: MNIST (raw IDX) ${datasetSeconds.toFixed(2)} s, Fashion-MNIST (gzip) ${fashionSeconds.toFixed(2)} s`);

const ONLY_WASM_VS_CPU = args.has('--wasm-vs-cpu');
const eps: ('cpu' | 'wasm')[] = ONLY_WASM_VS_CPU ? [] : args.has('--cpu-only') ? ['cpu'] : ['cpu', 'wasm'];
for (const ep of eps) {
  const rt = await createRuntime({ ep, threads: THREADS });
  const meter = await rooflineMeter(rt);
  const roofs: number[] = [];
  /** A training measurement with the roofline taken just before it (median of 15 products, about 0.2 s). */
  const measure = async (run: () => Promise<Stat>, flops: number) => {
    const roof = (await meter(15)).median;
    roofs.push(roof);
    const s = await run();
    const gflops = (s.median * flops) / 1e9;
    return { s, gflops, roof, ratio: gflops / roof };
  };
  const pct = (r: number) => `${(100 * r).toFixed(0)}%`;
  const roof = await meter(QUICK ? 3 : 8);
  console.log(`\n[${ep}] (${rt.note}) roofline: onnxruntime MatMul 1024^3 = ${fmt(roof, 1)} GFLOP/s, measured again before each row`);
  results[ep === 'cpu' ? 'roofline' : `${ep}Roofline`] = roof;
  console.log('| model | batch | K | images/s (median, min..max) | GFLOP/s | roofline just before | of roofline |');
  console.log('|---|---|---|---|---|---|---|');
  const rows: Record<string, unknown>[] = [];
  const models = ['baseline', 'partB', 'eva-best', 'jhu-net'];
  const batches = QUICK ? [64, 600] : [64, 128, 600];
  // K = 'epoch': all of an epoch's full batches in one session run.
  const ks: (number | 'epoch')[] = ep === 'wasm' ? [1, 8] : QUICK ? [1, 8, 'epoch'] : [1, 8, 32, 'epoch'];
  for (const name of models) {
    const arch = await loadArchitecture(name);
    const flops = trainFlops(arch.model);
    for (const B of batches) {
      for (const k of ks) {
        const K = k === 'epoch' ? Math.floor(60000 / B) : k;
        if (ep === 'wasm' && B * K > 4800) continue;
        // A whole epoch in the quick bench only for the fast models.
        if (QUICK && k === 'epoch' && flops > 2e7) continue;
        const { s, gflops, roof, ratio } = await measure(() => trainThroughput(rt, name, B, K), flops);
        console.log(`| ${name} | ${B} | ${k === 'epoch' ? `${K} (epoch)` : K} | ${fmt(s)} | ${gflops.toFixed(1)} | ${roof.toFixed(0)} | ${pct(ratio)} |`);
        rows.push({ model: name, batch: B, K, imagesPerSecond: s, gflops, rooflineGflops: roof, ratio, flopsPerImage: flops, rss: process.memoryUsage().rss });
      }
    }
  }
  if (ep === 'cpu') {
    // The two settings issue 9 compares with PyTorch 1.13 + OpenBLAS on a 2-core machine.
    const flops = trainFlops((await loadArchitecture('partB')).model);
    const pytorch = [
      { B: 64, opt: 'sgd' as const, theirs: 1528 },
      { B: 600, opt: 'adam' as const, theirs: 1717 },
    ];
    console.log('\n| partB vs PyTorch | images/s (median, min..max) | roofline just before | of roofline | PyTorch (their machine) |');
    console.log('|---|---|---|---|---|');
    const versus: Record<string, unknown>[] = [];
    for (const p of pytorch) {
      const { s, roof, ratio } = await measure(() => trainThroughput(rt, 'partB', p.B, 8, p.opt), flops);
      console.log(`| batch ${p.B}, ${p.opt}, K=8 | ${fmt(s)} | ${roof.toFixed(0)} | ${pct(ratio)} | ${p.theirs} |`);
      versus.push({ batch: p.B, optimizer: p.opt, imagesPerSecond: s, rooflineGflops: roof, ratio, pytorch: p.theirs });
    }
    results.versusPytorch = versus;
    const range = stat(roofs);
    console.log(`the roofline measured ${fmt(range)} GFLOP/s over the run (median, min..max of ${roofs.length} measurements)`);
    results.rooflineOverRun = range;
  }
  const inference: Record<string, unknown> = {};
  for (const name of ['partB', 'eva-best']) {
    const lat = await inferenceLatency(rt, name);
    const thr = await evalThroughput(rt, name);
    console.log(`${name}: single-image inference ${fmt(lat, 2)} ms; eval ${fmt(thr)} images/s (batch 1000)`);
    inference[name] = { latencyMs: lat, evalImagesPerSecond: thr };
  }
  results[ep] = { train: rows, inference };
}
if (ONLY_WASM_VS_CPU || eps.includes('wasm')) results.wasmVersusCpu = await wasmVersusCpu();

/**
 * partB's train step on wasm against the CPU EP, both with THREADS threads, alternating in one
 * process (this VM drifts too much for a ratio of two sections measured minutes apart), with each
 * provider's MatMul roofline: wasm's 128-bit SIMD GEMM is what bounds its train step.
 */
async function wasmVersusCpu(): Promise<Record<string, unknown>[]> {
  const rts = [await createRuntime({ ep: 'cpu', threads: THREADS }), await createRuntime({ ep: 'wasm', threads: THREADS })];
  const meters = await Promise.all(rts.map(rooflineMeter));
  const flops = trainFlops((await loadArchitecture('partB')).model);
  const rounds = QUICK ? 2 : 4;
  console.log(`\n| partB, CPU EP against wasm, alternating (${rounds} rounds) | CPU images/s (of roofline) | wasm images/s (of roofline) | CPU / wasm, median (min..max) |`);
  console.log('|---|---|---|---|');
  const out: Record<string, unknown>[] = [];
  for (const [B, opt] of [[64, 'sgd'], [600, 'adam']] as const) {
    const ips: number[][] = [[], []];
    const ofRoof: number[][] = [[], []];
    for (let r = 0; r < rounds; r++) {
      for (const i of [0, 1]) {
        const roof = (await meters[i](5)).median;
        const s = (await trainThroughput(rts[i], 'partB', B, 8, opt)).median;
        ips[i].push(s);
        ofRoof[i].push((s * flops) / 1e9 / roof);
      }
    }
    const ratio = stat(ips[0].map((x, r) => x / ips[1][r]));
    const cell = (i: number) => `${stat(ips[i]).median.toFixed(0)} (${(100 * stat(ofRoof[i]).median).toFixed(0)}%)`;
    console.log(`| batch ${B}, ${opt}, K=8 | ${cell(0)} | ${cell(1)} | ${fmt(ratio, 2)} |`);
    out.push({ batch: B, optimizer: opt, cpu: stat(ips[0]), wasm: stat(ips[1]), cpuOfRoofline: stat(ofRoof[0]), wasmOfRoofline: stat(ofRoof[1]), cpuOverWasm: ratio });
  }
  return out;
}

results.peakRssMiB = Math.round(process.resourceUsage().maxRSS / 1024);
console.log(`\npeak memory (max RSS) ${results.peakRssMiB} MiB`);
if (!ONLY_WASM_VS_CPU) {
  writeFileSync('bench.json', `${JSON.stringify(results, null, 2)}\n`);
  console.log('wrote bench.json');
}
