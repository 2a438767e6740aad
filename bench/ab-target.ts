/**
 * The train step made for onnxruntime's CPU kernels against the portable one, interleaved in one
 * process (this VM drifts by 15% or more within minutes: only side-by-side figures mean
 * anything): per row, both runners start from the same parameters and take turns, one chunk of
 * K = 8 steps each, the order alternating every round. Prints the median speed-up and its spread.
 *
 *   npx tsx bench/ab-target.ts [--rounds 12] [--rows eva,fashion]
 */
import { parseArgs } from 'node:util';
import { DATASETS } from '../datasets/registry.ts';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta, trainSpecFor } from '../graph-builder/artifacts/build.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import type { GraphTarget } from '../graph-builder/autodiff/registry.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { chunker, ROWS } from './rows.ts';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '12' }, rows: { type: 'string' } } });
const rounds = Number(values.rounds);
const wanted = values.rows?.split(',');
const rt = await createRuntime({ ep: 'cpu', threads: 2 });
const K = 8;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| row | portable img/s | cpu img/s | cpu / portable, median (min..max over ${rounds} rounds) |\n|---|---|---|---|`);
for (const r of ROWS.filter((row) => !wanted || wanted.some((w) => row.name.toLowerCase().includes(w)))) {
  const data = await loadDataset(r.dataset, { env: {} });
  const arch = await loadArchitecture(r.arch);
  const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
  const make = async (target: GraphTarget) => {
    const built = compile(arch.model, { optimizer: spec.optimizer, loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target });
    return StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(initParams(arch.model, 0)));
  };
  const runners = { portable: await make('portable'), cpu: await make('cpu') };
  const chunks = { portable: chunker(data.train, r, K), cpu: chunker(data.train, r, K) };
  const rates = { portable: [] as number[], cpu: [] as number[] };
  const time = async (t: GraphTarget) => {
    const batch = chunks[t]();
    const t0 = performance.now();
    await runners[t].run(batch);
    return (K * r.batch) / ((performance.now() - t0) / 1000);
  };
  await time('portable');
  await time('cpu');
  const ratios: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const order: GraphTarget[] = i % 2 ? ['cpu', 'portable'] : ['portable', 'cpu'];
    const got: Record<string, number> = {};
    for (const t of order) got[t] = await time(t);
    rates.portable.push(got.portable);
    rates.cpu.push(got.cpu);
    ratios.push(got.cpu / got.portable);
  }
  console.log(`| ${r.name} | ${median(rates.portable).toFixed(0)} | ${median(rates.cpu).toFixed(0)} | ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}) |`);
  await runners.portable.release();
  await runners.cpu.release();
}
