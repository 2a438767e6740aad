import { DATASETS } from '../datasets/registry.ts';
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import * as ortWeb from 'onnxruntime-web';
import { Rng } from '../common/rng.ts';
import { loadDataset } from '../datasets/sources.ts';
import { initialCheckpoint } from '../graph-builder/artifacts/compile.ts';
import { modelMeta } from '../graph-builder/artifacts/build.ts';
import { resolvedOptimizer, trainSpecFor } from '../training/optimizers/index.ts';
import { buildEvalModel } from '../graph-builder/artifacts/eval.ts';
import { buildTrainStepModel, emitLossAndGradients } from '../graph-builder/artifacts/train-step.ts';
import { type Architecture, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { batchNorm2d, flatten, linear, sequential } from '../graph-builder/dsl/layers.ts';
import { modelFromLayers } from '../graph-builder/dsl/to-model.ts';
import { emitImageFromBytes } from '../graph-builder/forward.ts';
import { attr, GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
import { defaultOptimizer, type OptimizerConfig } from '../graph-builder/optimizers.ts';
import { emitHashUniform } from '../graph-builder/train-mode.ts';
import { GRAD_RULES, type GraphTarget } from '../graph-builder/autodiff/registry.ts';
import { decodeModel } from '../graph-builder/graph/onnx.ts';
import type { GradRule } from '../graph-builder/autodiff/rule.ts';
import { createRuntime, type EpName } from '../runtime/ort.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';

const mnist = await loadDataset('mnist', { env: {} });

function batchOf(start: number, K: number, B: number, lr: number, momentum: number, seed0: number): StepBatch {
  return {
    K,
    B,
    inputs: {
      images: mnist.train.images.slice(start * 784, (start + K * B) * 784),
      labels: mnist.train.labels.slice(start, start + K * B),
      lr: new Float32Array(K).fill(lr),
      momentum: new Float32Array(K).fill(momentum),
      dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(seed0 + i)),
    },
  };
}

/** One K-step batch split into K one-step batches. */
function split(b: StepBatch): StepBatch[] {
  const { images, labels, lr, momentum, dropout_seed } = b.inputs;
  return Array.from({ length: b.K }, (_, k) => ({
    K: 1,
    B: b.B,
    inputs: {
      images: images.slice(k * b.B * 784, (k + 1) * b.B * 784),
      labels: labels.slice(k * b.B, (k + 1) * b.B),
      lr: lr.slice(k, k + 1),
      momentum: momentum.slice(k, k + 1),
      dropout_seed: dropout_seed.slice(k, k + 1),
    },
  }));
}

async function runner(arch: Architecture, optimizer: OptimizerConfig, ep: Exclude<EpName, 'auto' | 'cuda'>, seed = 0, target: GraphTarget = 'portable'): Promise<StepRunner> {
  const spec = trainSpecFor(arch);
  const { bytes, iface } = buildTrainStepModel(arch.model, { ...resolvedOptimizer(optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS.mnist), target });
  const rt = await createRuntime({ ep, threads: ep === 'cpu' ? 2 : 1 });
  return StepRunner.create(rt, bytes, iface, initialCheckpoint(iface, initParams(arch.model, seed), {}));
}

function maxDiff(a: Map<string, { data: Float32Array | BigInt64Array }>, b: Map<string, { data: Float32Array | BigInt64Array }>): number {
  let worst = 0;
  for (const [name, t] of a) {
    const u = b.get(name)!;
    for (let i = 0; i < t.data.length; i++) worst = Math.max(worst, Math.abs(Number(t.data[i]) - Number(u.data[i])));
  }
  return worst;
}

describe('the train-step graph', () => {
  it('K=4 in one run equals four runs of K=1 (BatchNorm, Dropout, SGD momentum)', async () => {
    const arch = await loadArchitecture('jhu-net:bn=bn-dropout');
    const opt = defaultOptimizer('sgd', 1e-4, true, true);
    const big = batchOf(0, 4, 16, 0.05, 0.9, 100);
    const a = await runner(arch, opt, 'cpu');
    const ra = await a.run(big);
    const b = await runner(arch, opt, 'cpu');
    const lossesB: number[] = [];
    for (const one of split(big)) lossesB.push(...(await b.run(one)).losses);
    assert.equal(a.step, 4);
    assert.equal(b.step, 4);
    for (let k = 0; k < 4; k++) assert.ok(Math.abs(ra.losses[k] - lossesB[k]) <= 1e-5, `loss ${k}: ${ra.losses[k]} vs ${lossesB[k]}`);
    const diff = maxDiff(a.tensors(), b.tensors());
    assert.ok(diff <= 1e-5, `parameters differ by ${diff}`);
    assert.ok(ra.losses[3] !== ra.losses[0]);
  });

  it('gives the same losses on onnxruntime-node CPU and onnxruntime-web wasm', async () => {
    const arch = await loadArchitecture('eva-best');
    const opt = defaultOptimizer('sgd', 0, true);
    const batch = batchOf(64, 6, 32, 0.02, 0.9, 7);
    const cpu = await (await runner(arch, opt, 'cpu')).run(batch);
    const wasm = await (await runner(arch, opt, 'wasm')).run(batch);
    // The first step starts from the same parameters: only the kernels' summation order differs.
    // Later steps compound it (a max-pool near-tie resolved the other way moves a whole gradient),
    // so they get a looser bound; the dropout masks themselves are bit-identical (tested below).
    assert.ok(Math.abs(cpu.losses[0] - wasm.losses[0]) <= 1e-5, `step 0: cpu ${cpu.losses[0]} wasm ${wasm.losses[0]}`);
    for (let k = 1; k < 6; k++) assert.ok(Math.abs(cpu.losses[k] - wasm.losses[k]) <= 2e-3, `step ${k}: cpu ${cpu.losses[k]} wasm ${wasm.losses[k]}`);
  });

  for (const name of ['partA', 'eva-best', 'fashion-best']) {
    it(`${name}: the train step made for onnxruntime's CPU kernels (MaxUnpool for the max-pool gradient) gives the portable graph's losses and parameters, bit for bit, on the CPU EP and wasm`, async () => {
      const arch = await loadArchitecture(name);
      const spec = trainSpecFor(arch);
      const ops = (target: GraphTarget) => new Set(decodeModel(buildTrainStepModel(arch.model, { ...resolvedOptimizer(spec.optimizer), loss: spec.loss, meta: modelMeta(arch, DATASETS.mnist), target }).bytes).ops);
      assert.ok(ops('cpu').has('MaxUnpool') && !ops('cpu').has('ScatterElements'), 'the CPU graph uses MaxUnpool');
      assert.ok(ops('portable').has('ScatterElements') && !ops('portable').has('MaxUnpool'), 'the portable graph does not');
      const opt = defaultOptimizer('sgd', 0, true);
      const batch = batchOf(32, 5, 32, 0.02, 0.9, 3);
      for (const ep of ['cpu', 'wasm'] as const) {
        const portable = await runner(arch, opt, ep, 1, 'portable');
        const cpu = await runner(arch, opt, ep, 1, 'cpu');
        const a = await portable.run(batch);
        const b = await cpu.run(batch);
        assert.deepEqual(Array.from(b.losses), Array.from(a.losses), `${ep}: losses`);
        assert.equal(maxDiff(portable.tensors(), cpu.tensors()), 0, `${ep}: parameters and optimiser state`);
      }
    });
  }

  it('trains partB on real MNIST: a few hundred steps bring the loss below 0.3', async () => {
    const arch = await loadArchitecture('partB');
    const r = await runner(arch, defaultOptimizer('adam'), 'cpu');
    const losses: number[] = [];
    const K = 25;
    const B = 32;
    for (let chunk = 0; chunk < 8; chunk++) losses.push(...(await r.run(batchOf(chunk * K * B, K, B, 1e-3, 0.9, chunk * K))).losses);
    const first = losses.slice(0, 10).reduce((x, y) => x + y, 0) / 10;
    const last = losses.slice(-25).reduce((x, y) => x + y, 0) / 25;
    assert.ok(first > 1, `initial loss ${first}`);
    assert.ok(last < 0.3, `mean loss of the last 25 of ${losses.length} steps is ${last}`);
  });

  it('updates BatchNorm running statistics as PyTorch does', async () => {
    const model = sequential(batchNorm2d(1, { momentum: 0.1 }), flatten(), linear(784, 10));
    const arch: Architecture = { id: 'bn-probe', model: modelFromLayers(model, 'bn-probe'), layers: model, recipe: (await loadArchitecture('partA')).recipe };
    const r = await runner(arch, defaultOptimizer('sgd'), 'cpu');
    const batch = batchOf(0, 1, 20, 0.01, 0, 1);
    await r.run(batch);
    const t = r.tensors();
    const meta = modelMeta(arch, DATASETS.mnist);
    const xs = Array.from(batch.inputs.images, (v) => (v / 255 - (meta.mean as number)) / (meta.std as number));
    const mean = xs.reduce((a, b) => a + b, 0) / xs.length;
    const unbiased = xs.reduce((a, b) => a + (b - mean) ** 2, 0) / (xs.length - 1);
    assert.ok(Math.abs((t.get('bn1.running_mean')!.data[0] as number) - 0.1 * mean) < 1e-5);
    assert.ok(Math.abs((t.get('bn1.running_var')!.data[0] as number) - (0.9 + 0.1 * unbiased)) < 1e-4);
  });
});

describe('dropout masks', () => {
  async function uniforms(seed: number, salt: number): Promise<Float32Array> {
    const b = new GraphBuilder('hash');
    const x = b.input('x', 'float32', [8, 5000]);
    const s = b.input('seed', 'int64', []);
    const u = emitHashUniform(b, x, s, salt);
    b.expose(u, 'u', 'float32', [8, 5000]);
    const session = await ort.InferenceSession.create(encodeModel(b.graph));
    const out = await session.run({ x: new ort.Tensor('float32', new Float32Array(40000), [8, 5000]), seed: new ort.Tensor('int64', BigInt64Array.of(BigInt(seed)), []) });
    return out.u.data as Float32Array;
  }

  it('are uniform, uncorrelated between neighbours, and reproducible from the seed', async () => {
    const u = await uniforms(12345, 7);
    const n = u.length;
    const mean = u.reduce((a, b) => a + b, 0) / n;
    const variance = u.reduce((a, b) => a + (b - mean) ** 2, 0) / n;
    let lag = 0;
    for (let i = 1; i < n; i++) lag += (u[i] - mean) * (u[i - 1] - mean);
    assert.ok(Math.abs(mean - 0.5) < 0.01, `mean ${mean}`);
    assert.ok(Math.abs(variance - 1 / 12) < 0.003, `variance ${variance}`);
    assert.ok(Math.abs(lag / (n - 1) / variance) < 0.03, `lag-1 correlation ${lag / (n - 1) / variance}`);
    const hist = new Array(10).fill(0);
    for (const v of u) hist[Math.min(9, Math.floor(v * 10))]++;
    for (const h of hist) assert.ok(Math.abs(h / n - 0.1) < 0.01, `decile ${h / n}`);
    assert.deepEqual(await uniforms(12345, 7), u);
    const pearson = (x: Float32Array, y: Float32Array) => {
      let sxy = 0;
      let sxx = 0;
      let syy = 0;
      for (let i = 0; i < n; i++) {
        sxy += (x[i] - 0.5) * (y[i] - 0.5);
        sxx += (x[i] - 0.5) ** 2;
        syy += (y[i] - 0.5) ** 2;
      }
      return sxy / Math.sqrt(sxx * syy);
    };
    // Neighbouring seeds (steps) and salts (layers) must give unrelated masks.
    for (const [seed, salt] of [[12346, 7], [12347, 7], [12345, 8], [12346, 8], [999999, 7]]) {
      const other = await uniforms(seed, salt);
      const r = pearson(u, other);
      assert.ok(Math.abs(r) < 0.03, `seed ${seed} salt ${salt}: correlation ${r.toFixed(4)} with seed 12345 salt 7`);
      let agree = 0;
      for (let i = 0; i < n; i++) if (u[i] < 0.5 === other[i] < 0.5) agree++;
      assert.ok(Math.abs(agree / n - 0.5) < 0.02, `seed ${seed} salt ${salt}: masks agree on ${agree / n}`);
    }
  });

  it('are bit-identical on onnxruntime-node CPU and onnxruntime-web wasm', async () => {
    const b = new GraphBuilder('hash');
    const x = b.input('x', 'float32', [16, 8, 26, 26]);
    const s = b.input('seed', 'int64', []);
    b.expose(emitHashUniform(b, x, s, 7), 'u', 'float32', [16, 8, 26, 26]);
    const model = encodeModel(b.graph);
    const n = 16 * 8 * 26 * 26;
    const feeds = (T: typeof ort.Tensor) => ({ x: new T('float32', new Float32Array(n), [16, 8, 26, 26]), seed: new T('int64', BigInt64Array.of(987654321n), []) });
    const cpu = (await (await ort.InferenceSession.create(model)).run(feeds(ort.Tensor))).u.data as Float32Array;
    const wasm = (await (await ortWeb.InferenceSession.create(model, { executionProviders: ['wasm'] })).run(feeds(ortWeb.Tensor as unknown as typeof ort.Tensor))).u.data as Float32Array;
    assert.deepEqual(Buffer.from(wasm.buffer), Buffer.from(cpu.buffer));
    assert.ok(cpu.every((v) => v >= 0 && v <= 1));
  });

  it('dropout 1.0 trains without NaN and predicts at chance', async () => {
    const arch = await loadArchitecture('jhu-net:dropout=1');
    const r = await runner(arch, defaultOptimizer('sgd', 0, true), 'cpu');
    const out = await r.run(batchOf(0, 5, 64, 0.01, 0.5, 3));
    assert.ok(out.losses.every((l) => Number.isFinite(l)));
    for (const [name, t] of r.tensors()) assert.ok(Array.from(t.data as Float32Array).every((v) => Number.isFinite(Number(v))), name);
  });
});

/**
 * Directional derivatives of the mean loss of 16 real images, against central differences
 * with h = 3e-4, all in float32. Over a deep network F's rounding and the ReLU/max-pool kinks
 * crossed within h make the numeric side noisy in proportion to sigma = ||g * v||, the typical
 * size of a random direction's derivative: measured errors were <= 1.5% of sigma for partC and
 * the JHU net and up to 5.2% for eva-best (BatchNorm over small batches). The bound is
 * 8% of sigma plus 2% of the value; the control below shows a wrong rule failing it.
 */
async function wholeModelErrors(name: string, rules?: Record<string, GradRule>, directions = 4): Promise<{ worst: number; lines: string[] }> {
  const arch = await loadArchitecture(name);
  const a = arch.model;
  const spec = trainSpecFor(arch);
  const meta = modelMeta(arch, DATASETS.mnist);
  const B = 16;
  const b = new GraphBuilder('grad');
  for (const p of a.params) b.input(p.name, 'float32', p.shape);
  const images = b.input('images', 'uint8', [B, 28, 28]);
  const labelsU8 = b.input('labels', 'uint8', [B]);
  const seed = b.input('seed', 'int64', []);
  b.reserve('loss');
  const image = emitImageFromBytes(b, images, [1, 28, 28]);
  const labels = b.op('Cast', [labelsU8], { to: attr.int(7) });
  const r = emitLossAndGradients(b, a, { loss: spec.loss, meta }, { image, labels, seed, param: (n) => n }, rules);
  b.expose(r.loss, 'loss', 'float32', []);
  for (const [param, g] of r.grads) b.expose(g, `g.${param}`, 'float32');
  const session = await ort.InferenceSession.create(encodeModel(b.graph));
  const params = initParams(a, 5);
  const rng = Rng.seeded(9);
  // Non-trivial BatchNorm affine parameters, so their gradients are exercised.
  for (const p of a.params) if (p.init.kind === 'constant' && p.trainable) params.get(p.name)!.forEach((_, i, arr) => (arr[i] = rng.uniform(p.role === 'weight' ? 0.5 : -0.3, p.role === 'weight' ? 1.5 : 0.3)));
  const feeds = (ps: Map<string, Float32Array>) => {
    const f: Record<string, ort.Tensor> = {
      images: new ort.Tensor('uint8', mnist.train.images.slice(0, B * 784), [B, 28, 28]),
      labels: new ort.Tensor('uint8', mnist.train.labels.slice(0, B), [B]),
      seed: new ort.Tensor('int64', BigInt64Array.of(424242n), []),
    };
    for (const p of a.params) f[p.name] = new ort.Tensor('float32', ps.get(p.name)!, p.shape);
    return f;
  };
  const out = await session.run(feeds(params));
  const h = 3e-4;
  let worst = 0;
  const lines: string[] = [];
  for (let d = 0; d < directions; d++) {
    const v = new Map<string, Float32Array>();
    let analytic = 0;
    let sigma = 0;
    for (const p of a.params.filter((q) => q.trainable)) {
      const scale = p.init.kind === 'uniform' ? p.init.bound : 0.5;
      const dir = Float32Array.from(params.get(p.name)!, () => (rng.float() < 0.5 ? -scale : scale));
      v.set(p.name, dir);
      const g = out[`g.${p.name}`].data as Float32Array;
      for (let i = 0; i < g.length; i++) {
        analytic += g[i] * dir[i];
        sigma += (g[i] * dir[i]) ** 2;
      }
    }
    sigma = Math.sqrt(sigma);
    const shifted = (sign: number) => new Map(a.params.map((p) => [p.name, v.has(p.name) ? Float32Array.from(params.get(p.name)!, (x, i) => x + sign * h * v.get(p.name)![i]) : params.get(p.name)!]));
    const plus = (await session.run(feeds(shifted(1)))).loss.data[0] as number;
    const minus = (await session.run(feeds(shifted(-1)))).loss.data[0] as number;
    const numeric = (plus - minus) / (2 * h);
    const err = Math.abs(analytic - numeric) / (0.08 * sigma + 0.02 * Math.abs(numeric));
    worst = Math.max(worst, err);
    lines.push(`direction ${d}: analytic ${analytic.toFixed(5)} numeric ${numeric.toFixed(5)} sigma ${sigma.toFixed(4)}`);
  }
  await session.release();
  return { worst, lines };
}

describe('whole-model gradients match finite differences', () => {
  for (const name of ['partC', 'eva-best', 'jhu-net:bn=bn-dropout']) {
    it(name, async () => {
      const { worst, lines } = await wholeModelErrors(name);
      assert.ok(worst <= 1, `${name}: ${lines.join('; ')}`);
    });
  }

  it('fails for a model differentiated with a wrong rule (BatchNorm input gradient without the variance term)', async () => {
    const noVarianceTerm: GradRule = (ctx) => {
      const out = GRAD_RULES.BatchNormTraining(ctx);
      if (out[0] !== undefined) {
        const dY = ctx.gradOutputs[0]!;
        const centredDY = ctx.b.op('Sub', [dY, ctx.b.op('ReduceMean', [dY, ctx.b.constI([0, 2, 3])], { keepdims: attr.int(1) })]);
        out[0] = ctx.b.op('Mul', [centredDY, ctx.outputs[2]]);
      }
      return out;
    };
    const { worst } = await wholeModelErrors('jhu-net:bn=bn-dropout', { ...GRAD_RULES, BatchNormTraining: noVarianceTerm }, 2);
    assert.ok(worst > 1, `the wrong rule passed (worst ${worst})`);
  });
});

describe('the eval graph', () => {
  it('counts correct predictions and sums the loss in eval mode', async () => {
    const arch = await loadArchitecture('jhu-net:bn=bn-dropout');
    const meta = modelMeta(arch, DATASETS.mnist);
    const session = await ort.InferenceSession.create(buildEvalModel(arch.model, 'nll', meta));
    const params = initParams(arch.model, 0);
    const feeds: Record<string, ort.Tensor> = {
      images: new ort.Tensor('uint8', mnist.test.images.slice(0, 50 * 784), [50, 28, 28]),
      labels: new ort.Tensor('uint8', mnist.test.labels.slice(0, 50), [50]),
    };
    for (const p of arch.model.params) feeds[p.name] = new ort.Tensor('float32', params.get(p.name)!, p.shape);
    const out = await session.run(feeds);
    const predicted = out.predicted.data as BigInt64Array;
    let hits = 0;
    for (let i = 0; i < 50; i++) if (Number(predicted[i]) === mnist.test.labels[i]) hits++;
    assert.equal(out.correct.data[0], hits);
    const loss = out.loss_sum.data[0] as number;
    assert.ok(loss > 50 * 1.8 && loss < 50 * 2.8, `untrained summed loss ${loss} should be near 50 * ln(10)`);
  });
});
