/**
 * Where a train step's time goes: onnxruntime's session profiling (kernel time per op type and
 * per node) over six chunks of K = 8 steps of one bench row, on the CPU EP with 2 threads (--threads); or,
 * with --finetune, over --runs steps of a full fine-tuning row (bench/finetune.ts's model and
 * batch, K = 1, batch 32) after one warm-up step whose kernels are left out.
 *
 *   npx tsx bench/profile.ts [--row fashion] [--target cpu|portable] [--nchwc 16]  (--nchwc B: the Convs on the CPU EP's NCHWc kernels of block B)
 *   npx tsx bench/profile.ts --finetune resnet18|mobilenet_v2 [--runs 2] [--keep PROFILE.json] [--fold] [--model FILE.onnx] [--threads 2]
 *   (--fold: with bench/dw-fold-batch.ts's rewrite of the weight gradients; --model: another export of the row's model)
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import * as ort from 'onnxruntime-node';
import { DATASETS } from '../datasets/registry.ts';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import type { GraphTarget } from '../graph-builder/autodiff/registry.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { feedsFor } from '../runtime/step-runner.ts';
import onnxProto from 'onnx-proto';
import { foldBatch } from './dw-fold-batch.ts';
import { exportedModel, finetuneStep } from './finetune.ts';
import { chunker, FINETUNE_ROWS, ROWS } from './rows.ts';

const { values } = parseArgs({
  options: { row: { type: 'string', default: 'fashion' }, target: { type: 'string', default: 'cpu' }, finetune: { type: 'string' }, runs: { type: 'string', default: '2' }, keep: { type: 'string' }, fold: { type: 'boolean' }, model: { type: 'string' }, threads: { type: 'string', default: '2' }, nchwc: { type: 'string' } },
});
const { name, built, params, batches } = values.finetune ? await finetuneCase(values.finetune, Number(values.runs) + 1) : await seedCase(values.row!);
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-profile-'));
const options = { graphOptimizationLevel: 'all', intraOpNumThreads: Number(values.threads), enableProfiling: true, profileFilePrefix: join(dir, 'p'), extra: { session: { intra_op: { allow_spinning: '0' } } } };
const step = values.fold ? folded(built.trainStep) : built.trainStep;
const session = await ort.InferenceSession.create(step, options as ort.InferenceSession.SessionOptions);
const checkpoint = built.initialCheckpoint(params);
for (const batch of batches) {
  const feeds = feedsFor(ort as never, built.iface.inputs, { ...batch.inputs }, { K: batch.K, B: batch.B }) as Record<string, ort.Tensor>;
  for (const c of built.iface.carried) {
    const t = checkpoint.tensors.get(c.name)!;
    feeds[c.name] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
  }
  await session.run(feeds);
}
session.endProfiling();
await session.release();
const events = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8')) as { cat: string; name: string; dur: number; ts: number; args?: { op_name?: string } }[];
if (values.keep) writeFileSync(values.keep, readFileSync(join(dir, readdirSync(dir)[0])));
rmSync(dir, { recursive: true });
// A fine-tuning row's warm-up run (the first model_run) is left out.
const warmEnd = values.finetune ? events.filter((e) => e.name === 'model_run').map((e) => e.ts + e.dur)[0] : -1;
const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.args?.op_name !== 'Loop' && e.ts > warmEnd);
const total = kernels.reduce((a, e) => a + e.dur, 0);
const top = (key: (e: (typeof kernels)[0]) => string, n: number) => {
  const sums = new Map<string, number>();
  for (const e of kernels) sums.set(key(e), (sums.get(key(e)) ?? 0) + e.dur);
  for (const [k, d] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, n)) {
    console.log(`${k.padEnd(64)} ${(d / 1000 / runs).toFixed(0).padStart(7)} ms ${((100 * d) / total).toFixed(1).padStart(5)}%`);
  }
};
const runs = values.finetune ? Number(values.runs) : batches.length;
console.log(`${name}, ${values.threads} threads: kernel time by op type (ms per run of K steps, share)`);
top((e) => e.args?.op_name ?? '?', 16);
if (values.finetune) {
  console.log('\nby phase');
  top(phase, 4);
}
console.log('\nby node');
top((e) => e.name.replace('_kernel_time', ''), 20);

/**
 * A fine-tuning step's kernel's phase, from the names the import and the autodiff give nodes:
 * the imported model's parameters are `body.NAME`, their gradients `grad_body.NAME`.
 */
function phase(e: { name: string; args?: { op_name?: string } }): string {
  if (e.name.startsWith('/')) return 'forward';
  // A conv on the NCHWc kernels (graph-builder/artifacts/nchwc.ts) is its reorders too.
  const conv = ['Conv', 'ConvTranspose', 'ReorderInput', 'ReorderOutput'].includes(e.args?.op_name ?? '') || e.name.includes('/nchwc_filter');
  if (e.name.startsWith('grad_/') && conv) return 'input gradients (dX)';
  if (/^(grad_)?body\./.test(e.name) && !e.name.includes('momentum')) return 'weight gradients (dW)';
  return 'other (ReLU/MaxPool gradients, loss, optimiser)';
}

/** A seed row's compiled step and six chunks of K = 8 steps of its batches. */
async function seedCase(row: string) {
  const r = ROWS.find((x) => x.name.toLowerCase().includes(row.toLowerCase()));
  if (!r) throw new Error(`--row: expected part of one of ${ROWS.map((x) => x.name).join(', ')}, got ${row}`);
  const data = await loadDataset(r.dataset, { env: {} });
  const arch = await loadArchitecture(r.arch);
  const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
  const built = compile(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target: values.target as GraphTarget, nchwcBlock: values.nchwc ? Number(values.nchwc) : undefined });
  const next = chunker(data.train, r, 8);
  return { name: `${r.name}, ${values.target} graph`, built, params: initParams(arch.model, 0), batches: Array.from({ length: 6 }, next) };
}

/** A full fine-tuning row's compiled step (cpu graph) and `runs` runs of its batch. */
async function finetuneCase(family: string, runs: number) {
  const r = FINETUNE_ROWS.find((x) => x.family === family && x.mode === 'full');
  if (!r) throw new Error(`--finetune: expected resnet18 or mobilenet_v2, got ${family}`);
  const { built, params, batch } = await finetuneStep(r, values.model ?? exportedModel(r, process.env.TORCH_PYTHON ?? '/usr/bin/python3'), values.nchwc ? Number(values.nchwc) : undefined);
  return { name: `${r.name}, cpu graph, ${runs - 1} runs after a warm-up`, built, params, batches: Array<typeof batch>(runs).fill(batch) };
}

/** The step with bench/dw-fold-batch.ts's rewrite applied. */
function folded(step: Uint8Array): Uint8Array {
  const m = onnxProto.onnx.ModelProto.decode(step);
  foldBatch(m.graph!);
  return onnxProto.onnx.ModelProto.encode(m).finish();
}
