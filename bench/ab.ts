/**
 * Two train-step builds interleaved in one process (this VM drifts by 15% or more within
 * minutes: only side-by-side figures mean anything). Without --base: the graph made for
 * onnxruntime's CPU kernels against the portable one. With --base DIR (another checkout of
 * cnnlab, e.g. `git worktree add DIR main~1`): DIR's graph-builder against this one's, both for
 * the CPU kernels (NCHWc convolutions where the machine has them, as `cnnlab train` compiles),
 * the fine-tuning rows too. Per row, both runners start from the same parameters and take turns, one chunk
 * of K = 8 steps each, the order alternating every round. Prints the median speed-up (B / A)
 * and its spread. With --nchwc: the CPU-kernel graph against the same graph with its Convs on
 * the CPU EP's NCHWc kernels (artifacts/nchwc.ts), and the largest loss difference between the two;
 * then the same for the whole-network fine-tuning rows (ResNet-18, MobileNetV2 at 3x224x224).
 *
 *   npx tsx bench/ab.ts [--base DIR | --nchwc] [--rounds 12] [--rows eva,fashion]
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
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';
import { exportedModel, finetuneStep } from './finetune.ts';
import { chunker, FINETUNE_ROWS, ROWS } from './rows.ts';

const { values } = parseArgs({ options: { base: { type: 'string' }, nchwc: { type: 'boolean', default: false }, rounds: { type: 'string', default: '12' }, rows: { type: 'string' } } });
const rounds = Number(values.rounds);
const wanted = values.rows?.split(',');
type Compile = typeof compile;
const baseCompile: Compile | undefined = values.base
  ? (await import(path.resolve(values.base, 'graph-builder/artifacts/compile.ts'))).compile
  : undefined;
const rt = await createRuntime({ ep: 'cpu', threads: 2 });
/** The two builds: [name, compile, target, NCHWc block]. */
const builds: [string, Compile, GraphTarget, number?][] = baseCompile
  ? [[`base ${values.base}`, baseCompile, 'cpu', rt.nchwcBlock], ['this', compile, 'cpu', rt.nchwcBlock]]
  : values.nchwc
    ? [['cpu', compile, 'cpu'], [`cpu + NCHWc ${rt.nchwcBlock}`, compile, 'cpu', rt.nchwcBlock]]
    : [['portable', compile, 'portable'], ['cpu', compile, 'cpu']];
const K = 8;
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** The two runners take turns for `rounds` rounds (order alternating) after one warm-up run each; prints the row. */
async function interleave(name: string, runners: StepRunner[], batchOf: (i: number) => StepBatch) {
  const rates: number[][] = [[], []];
  const losses: number[][] = [[], []];
  const time = async (i: number) => {
    const batch = batchOf(i);
    const t0 = performance.now();
    const out = await runners[i].run(batch);
    const rate = (batch.K * batch.B) / ((performance.now() - t0) / 1000);
    losses[i].push(...out.losses);
    return rate;
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
  const lossGap = Math.max(...losses[0].map((l, i) => Math.abs(l - losses[1][i]) / Math.max(1e-6, Math.abs(l))));
  const rate = (r: number) => (r >= 100 ? r.toFixed(0) : r.toFixed(1));
  console.log(`| ${name} | ${rate(median(rates[0]))} | ${rate(median(rates[1]))} | ${median(ratios).toFixed(3)} (${Math.min(...ratios).toFixed(2)}..${Math.max(...ratios).toFixed(2)}) |${values.nchwc ? ` largest relative loss difference over ${losses[0].length} steps: ${lossGap.toExponential(1)}` : ''}`);
  for (const runner of runners) await runner.release();
}

console.log(`| row | ${builds[0][0]} img/s | ${builds[1][0]} img/s | B / A, median (min..max over ${rounds} rounds) |\n|---|---|---|---|`);
for (const r of ROWS.filter((row) => !wanted || wanted.some((w) => row.name.toLowerCase().includes(w)))) {
  const data = await loadDataset(r.dataset, { env: {} });
  const arch = await loadArchitecture(r.arch);
  const spec = trainSpecFor(arch, { opt: r.opt, momentum: 0 });
  const runners = await Promise.all(
    builds.map(async ([, make, target, nchwcBlock]) => {
      const built = make(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS[r.dataset]), target, nchwcBlock });
      return StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(initParams(arch.model, 0)));
    }),
  );
  const chunks = builds.map(() => chunker(data.train, r, K));
  await interleave(r.name, runners, (i) => chunks[i]());
}
// The fine-tuning rows (bench/finetune.ts: ResNet-18 and MobileNetV2 at 3x224x224, batch 32, K = 1), with --nchwc or --base.
const baseFinetuneStep: typeof finetuneStep | undefined = values.base ? (await import(path.resolve(values.base, 'bench/finetune.ts'))).finetuneStep : undefined;
for (const r of values.nchwc || baseFinetuneStep ? FINETUNE_ROWS.filter((row) => row.mode === 'full' && (!wanted || wanted.some((w) => row.name.toLowerCase().includes(w)))) : []) {
  const file = exportedModel(r, process.env.TORCH_PYTHON ?? '/usr/bin/python3');
  const steps = baseFinetuneStep ? [await baseFinetuneStep(r, file, rt.nchwcBlock), await finetuneStep(r, file, rt.nchwcBlock)] : [await finetuneStep(r, file), await finetuneStep(r, file, rt.nchwcBlock)];
  const runners = await Promise.all(steps.map((s) => StepRunner.create(rt, s.built.trainStep, s.built.iface, s.built.initialCheckpoint(s.params))));
  await interleave(r.name, runners, (i) => steps[i].batch);
}
