/**
 * Two train-step builds interleaved in one process (this VM drifts by 15% or more within
 * minutes: only side-by-side figures mean anything). Without --base: the graph made for
 * onnxruntime's CPU kernels against the portable one. With --base DIR (another checkout of
 * cnnlab, e.g. `git worktree add DIR main~1`): DIR's graph-builder against this one's, both for
 * the CPU kernels. Per row, both runners start from the same parameters and take turns, one chunk
 * of K = 8 steps each, the order alternating every round. Prints the median speed-up (B / A)
 * and its spread.
 *
 *   npx tsx bench/ab.ts [--base DIR] [--rounds 12] [--rows eva,fashion]
 */
import path from 'node:path';
import { parseArgs } from 'node:util';
import { DATASETS } from '../datasets/registry.ts';
import { loadDataset } from '../datasets/sources.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import type { GraphTarget } from '../graph-builder/autodiff/registry.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { chunker, ROWS } from './rows.ts';

const { values } = parseArgs({ options: { base: { type: 'string' }, rounds: { type: 'string', default: '12' }, rows: { type: 'string' } } });
const rounds = Number(values.rounds);
const wanted = values.rows?.split(',');
type Compile = typeof compile;
const baseCompile: Compile | undefined = values.base
  ? (await import(path.resolve(values.base, 'graph-builder/artifacts/compile.ts'))).compile
  : undefined;
/** The two builds: [name, compile, target]. */
const builds: [string, Compile, GraphTarget][] = baseCompile
  ? [[`base ${values.base}`, baseCompile, 'cpu'], ['this', compile, 'cpu']]
  : [['portable', compile, 'portable'], ['cpu', compile, 'cpu']];
const rt = await createRuntime({ ep: 'cpu', threads: 2 });
const K = 8;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
console.log(`| row | ${builds[0][0]} img/s | ${builds[1][0]} img/s | B / A, median (min..max over ${rounds} rounds) |\n|---|---|---|---|`);
for (const r of ROWS.filter((row) => !wanted || wanted.some((w) => row.name.toLowerCase().includes(w)))) {
  const data = await loadDataset(r.dataset, { env: {} });
  const arch = await loadArchitecture(r.arch);
  const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
  const runners = await Promise.all(
    builds.map(async ([, make, target]) => {
      const built = make(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target });
      return StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(initParams(arch.model, 0)));
    }),
  );
  const chunks = builds.map(() => chunker(data.train, r, K));
  const rates: number[][] = [[], []];
  const time = async (i: number) => {
    const batch = chunks[i]();
    const t0 = performance.now();
    await runners[i].run(batch);
    return (K * r.batch) / ((performance.now() - t0) / 1000);
  };
  await time(0);
  await time(1);
  const ratios: number[] = [];
  for (let round = 0; round < rounds; round++) {
    const got: number[] = [];
    for (const i of round % 2 ? [1, 0] : [0, 1]) got[i] = await time(i);
    rates[0].push(got[0]);
    rates[1].push(got[1]);
    ratios.push(got[1] / got[0]);
  }
  console.log(`| ${r.name} | ${median(rates[0]).toFixed(0)} | ${median(rates[1]).toFixed(0)} | ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}) |`);
  for (const runner of runners) await runner.release();
}
