/**
 * The 'webgpu' graph target: train steps whose every float op has a kernel in onnxruntime's
 * WebGPU EP (max pools differentiated without Indices; Sum, LogSoftmax and OneHot lowered when a
 * session opens, graph-builder/artifacts/webgpu.ts). On the CPU EP they must compute what the
 * portable graph computes; on a WebGPU adapter (Mesa's lavapipe in CI, scripts/setup.sh) too.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { DATASETS } from '../datasets/registry.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { trainSpecFor } from '../training/optimizers/index.ts';
import { initialCheckpoint } from '../graph-builder/artifacts/compile.ts';
import { singleStepModel } from '../graph-builder/artifacts/single-step.ts';
import { buildTrainStepModel } from '../graph-builder/artifacts/train-step.ts';
import { lowerForWebGpu } from '../graph-builder/artifacts/webgpu.ts';
import { gradRulesFor, type GraphTarget } from '../graph-builder/autodiff/registry.ts';
import { type Architecture, loadArchitecture, loadModelFile } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { decodeModel } from '../graph-builder/graph/onnx.ts';
import type { Model } from '../graph-builder/model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { createRuntime, type Runtime, probeWebGpu } from '../runtime/ort.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';
import { stepBatch } from './helpers/step-batch.ts';
import { CASES as POOL_CASES } from './grad-cases/pool-norm.ts';
import { gradCheck } from './helpers/gradcheck.ts';


async function stepRunner(arch: Architecture, rt: Runtime, target: GraphTarget, frozen?: ReadonlySet<string>): Promise<StepRunner> {
  const spec = trainSpecFor(arch);
  const { bytes, iface } = buildTrainStepModel(arch.model, { optimizer: defaultOptimizer('sgd', 0, true), loss: spec.loss, meta: modelMeta(arch, DATASETS.mnist), target, frozen });
  return StepRunner.create(rt, bytes, iface, initialCheckpoint(iface, initParams(arch.model, 1), {}));
}

/** Two runs of `K` steps each (the second on the next digits), their losses in order. */
async function twoRuns(runner: StepRunner, model: Model, K: number, B: number): Promise<number[]> {
  const first = stepBatch(model, 2 * K, B);
  const half = (k0: number): StepBatch => ({ K, B, inputs: Object.fromEntries(Object.entries(first.inputs).map(([name, v]) => [name, v.slice((k0 * v.length) / (2 * K), ((k0 + K) * v.length) / (2 * K))])) as unknown as StepBatch['inputs'] });
  return [...(await runner.run(half(0))).losses, ...(await runner.run(half(K))).losses];
}

/** Worst relative difference of two runners' parameters (relative to each tensor's largest value). */
function worstParamDiff(a: StepRunner, b: StepRunner): number {
  let worst = 0;
  const theirs = b.tensors();
  for (const [name, t] of a.tensors()) {
    const [mine, other] = [Array.from(t.data as ArrayLike<number | bigint>, Number), Array.from(theirs.get(name)!.data as ArrayLike<number | bigint>, Number)];
    const scale = mine.reduce((m, v) => Math.max(m, Math.abs(v)), 1e-6);
    for (let i = 0; i < mine.length; i++) worst = Math.max(worst, Math.abs(mine[i] - other[i]) / scale);
  }
  return worst;
}

/** partA and eva-best (max pools, LogSoftmax outputs), and torchvision's MobileNetV2 blocks (depthwise convs, BatchNorm, ReLU6; test/fixtures/families). */
const archs = async (): Promise<[string, Architecture][]> => [
  ['partA', await loadArchitecture('partA')],
  ['eva-best', await loadArchitecture('eva-best')],
  ['mobilenet_v2 (depthwise)', loadModelFile(join(import.meta.dirname, 'fixtures', 'families', 'mobilenet_v2.onnx'))],
];

describe('the webgpu graph target', () => {
  it('its max-pool gradient without Indices passes the finite-difference check on every MaxPool case (ceil_mode, pads, dilations, imported)', async () => {
    const cases = POOL_CASES.filter((c) => c.name.startsWith('MaxPool'));
    assert.ok(cases.length >= 5);
    for (const c of cases) {
      const report = await gradCheck(c, gradRulesFor('webgpu'));
      assert.ok(report.worst <= 1, `${c.name}: ${report.details.join('; ')}`);
    }
  });

  it('lowered for WebGPU, the train steps hold no Sum, LogSoftmax, OneHot or MaxPool Indices, and give the portable graph its losses and parameters on the CPU EP', async () => {
    const cpu = await createRuntime({ ep: 'cpu', threads: 2 });
    const lowered: Runtime = { ...cpu, createSession: (model) => cpu.createSession(lowerForWebGpu(model)) };
    for (const [name, arch] of await archs()) {
      const spec = trainSpecFor(arch);
      const { bytes } = buildTrainStepModel(arch.model, { optimizer: defaultOptimizer('sgd', 0, true), loss: spec.loss, meta: modelMeta(arch, DATASETS.mnist), target: 'webgpu' });
      const ops = decodeModel(lowerForWebGpu(bytes)).ops;
      for (const op of ['Sum', 'LogSoftmax', 'OneHot', 'ScatterElements']) assert.ok(!ops.includes(op), `${name}: ${op} left in ${ops.join(' ')}`);
      const reference = await stepRunner(arch, cpu, 'portable');
      const webgpu = await stepRunner(arch, lowered, 'webgpu');
      const want = await reference.run(stepBatch(arch.model, 3, 16));
      const got = await webgpu.run(stepBatch(arch.model, 3, 16));
      for (let k = 0; k < 3; k++) assert.ok(Math.abs(want.losses[k] - got.losses[k]) <= 1e-5 * Math.max(1, want.losses[k]), `${name} step ${k}: ${want.losses[k]} vs ${got.losses[k]}`);
      const diff = worstParamDiff(reference, webgpu);
      // Sum's terms added in another order: rounding, compounded over three momentum steps.
      assert.ok(diff <= 1e-4, `${name}: parameters differ by ${diff} (relative)`);
    }
  });

  it('the train step without its Loop, run once per step on the CPU EP, gives the Loop its losses and parameters to the bit (partA, with and without a frozen layer)', async () => {
    const arch = await loadArchitecture('partA');
    const cpu = await createRuntime({ ep: 'cpu', threads: 2 });
    const oneStep: Runtime = { ...cpu, createSession: (model) => cpu.createSession(singleStepModel(model)) };
    for (const frozen of [undefined, new Set(['conv1.weight', 'conv1.bias'])]) {
      const loop = await stepRunner(arch, cpu, 'webgpu', frozen);
      const single = await stepRunner(arch, oneStep, 'webgpu', frozen);
      // One step per run: the single-step graph's per-run inputs take K = 1.
      const want = await twoRuns(loop, arch.model, 1, 8);
      assert.deepEqual(await twoRuns(single, arch.model, 1, 8), want);
      assert.equal(worstParamDiff(loop, single), 0);
      assert.equal(single.step, 2);
    }
  });

  it('on a WebGPU adapter, carried tensors stay on the GPU between runs and give the host round trip its losses and parameters (partA with a frozen layer, two runs of two steps)', async (t) => {
    const missing = await probeWebGpu();
    if (missing) {
      t.skip(`no WebGPU adapter here (${missing}); scripts/setup.sh installs Mesa's lavapipe`);
      return;
    }
    const arch = await loadArchitecture('partA');
    const gpu = await createRuntime({ ep: 'webgpu' });
    // A frozen layer's outputs are its inputs passed through: the GPU buffers they leave in must not be freed under them.
    const frozen = new Set(['conv1.weight', 'conv1.bias']);
    const host = await stepRunner(arch, { ...gpu, createGpuSession: undefined }, 'webgpu', frozen);
    const device = await stepRunner(arch, gpu, 'webgpu', frozen);
    assert.ok(device.carriedOnGpu && !host.carriedOnGpu);
    const want = await twoRuns(host, arch.model, 2, 8);
    const got = await twoRuns(device, arch.model, 2, 8);
    // The same kernels on the same adapter (lavapipe: equal to the bit); a step that read stale parameters would differ by far more.
    for (let k = 0; k < 4; k++) assert.ok(Math.abs(want[k] - got[k]) <= 1e-6 * Math.max(1, want[k]), `step ${k}: host ${want[k]} gpu ${got[k]}`);
    const diff = worstParamDiff(host, device);
    assert.ok(diff <= 1e-6, `parameters differ by ${diff} (relative)`);
    assert.equal(device.step, 4);
    const start = initParams(arch.model, 1);
    for (const name of frozen) assert.deepEqual(device.tensors().get(name)!.data, start.get(name), `${name} moved`);
    await Promise.all([host.release(), device.release()]);
  });

  it('on a WebGPU adapter, the train steps give the portable graph its losses and parameters on the CPU EP (float tolerance)', async (t) => {
    const missing = await probeWebGpu();
    if (missing) {
      t.skip(`no WebGPU adapter here (${missing}); scripts/setup.sh installs Mesa's lavapipe`);
      return;
    }
    const cpu = await createRuntime({ ep: 'cpu', threads: 2 });
    const gpu = await createRuntime({ ep: 'webgpu' });
    let apart = 0;
    for (const [name, arch] of await archs()) {
      const reference = await stepRunner(arch, cpu, 'portable');
      const webgpu = await stepRunner(arch, gpu, 'webgpu');
      const want = await reference.run(stepBatch(arch.model, 2, 8));
      const got = await webgpu.run(stepBatch(arch.model, 2, 8));
      // The GPU's kernels sum in other orders (tiled convolutions): float32 rounding, which the
      // second step compounds; a wrong gradient would differ by far more than 1e-3.
      for (let k = 0; k < 2; k++) assert.ok(Math.abs(want.losses[k] - got.losses[k]) <= (k ? 1e-3 : 1e-4) * Math.max(1, want.losses[k]), `${name} step ${k}: cpu ${want.losses[k]} webgpu ${got.losses[k]}`);
      const diff = worstParamDiff(reference, webgpu);
      assert.ok(diff <= 1e-3, `${name}: parameters differ by ${diff} (relative)`);
      apart = Math.max(apart, diff);
    }
    assert.ok(apart > 0, 'equal to the CPU EP to the bit: the steps did not run on WebGPU');
  });
});
