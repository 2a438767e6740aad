/**
 * Where a train step's time goes: onnxruntime's session profiling (kernel time per op type and
 * per node) over six chunks of K = 8 steps of one bench row, on the CPU EP with 2 threads.
 *
 *   npx tsx bench/profile.ts [--row fashion] [--target cpu|portable]
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
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
import { chunker, ROWS } from './rows.ts';

const { values } = parseArgs({ options: { row: { type: 'string', default: 'fashion' }, target: { type: 'string', default: 'cpu' } } });
const r = ROWS.find((row) => row.name.toLowerCase().includes(values.row!.toLowerCase()));
if (!r) throw new Error(`--row: expected part of one of ${ROWS.map((row) => row.name).join(', ')}, got ${values.row}`);
const data = await loadDataset(r.dataset, { env: {} });
const arch = await loadArchitecture(r.arch);
const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
const built = compile(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target: values.target as GraphTarget });
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-profile-'));
const options = { graphOptimizationLevel: 'all', intraOpNumThreads: 2, enableProfiling: true, profileFilePrefix: join(dir, 'p'), extra: { session: { intra_op: { allow_spinning: '0' } } } };
const session = await ort.InferenceSession.create(built.trainStep, options as ort.InferenceSession.SessionOptions);
const checkpoint = built.initialCheckpoint(initParams(arch.model, 0));
const next = chunker(data.train, r, 8);
for (let i = 0; i < 6; i++) {
  const batch = next();
  const feeds = feedsFor(ort as never, built.iface.inputs, { ...batch.inputs }, { K: batch.K, B: batch.B }) as Record<string, ort.Tensor>;
  for (const c of built.iface.carried) {
    const t = checkpoint.tensors.get(c.name)!;
    feeds[c.name] = new ort.Tensor(t.dtype as 'float32', t.data as Float32Array, t.dims);
  }
  await session.run(feeds);
}
session.endProfiling();
await session.release();
const events = JSON.parse(readFileSync(join(dir, readdirSync(dir)[0]), 'utf8')) as { cat: string; name: string; dur: number; args?: { op_name?: string } }[];
rmSync(dir, { recursive: true });
const kernels = events.filter((e) => e.cat === 'Node' && e.name.endsWith('_kernel_time') && e.args?.op_name !== 'Loop');
const total = kernels.reduce((a, e) => a + e.dur, 0);
const top = (key: (e: (typeof kernels)[0]) => string, n: number) => {
  const sums = new Map<string, number>();
  for (const e of kernels) sums.set(key(e), (sums.get(key(e)) ?? 0) + e.dur);
  for (const [k, d] of [...sums].sort((a, b) => b[1] - a[1]).slice(0, n)) console.log(`${k.padEnd(64)} ${((100 * d) / total).toFixed(1).padStart(5)}%`);
};
console.log(`${r.name}, ${values.target} graph: kernel time by op type`);
top((e) => e.args?.op_name ?? '?', 16);
console.log('\nby node');
top((e) => e.name.replace('_kernel_time', ''), 20);
