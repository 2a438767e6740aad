import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { GraphBuilder } from '../graph-builder/graph/ir.ts';
import { encodeModel } from '../graph-builder/graph/onnx.ts';
import { defaultOptimizer, emitStepNumber, emitUpdate, type OptimizerConfig, stateNames } from '../graph-builder/optimizers.ts';
import { OPTIMIZER_NAMES, type OptimizerName, OPTIMIZERS, optimizerKind, trainSpecFor } from '../training/optimizers/index.ts';
import { UsageError } from '../common/errors.ts';
import { buildTrainStepModel } from '../graph-builder/artifacts/train-step.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { PRESET_NAMES, PRESETS } from '../graph-builder/dsl/presets.ts';
import { TRAIN_FLAGS } from '../training/flags.ts';

const N = 6;

/** PyTorch's update formulas, written plainly in float64 (torch/optim/*.py, single-tensor path). */
function reference(opt: OptimizerConfig, p: number[], g: number[], st: Record<string, number[]>, lr: number, mom: number, t: number) {
  const out = { p: p.slice(), st: Object.fromEntries(Object.entries(st).map(([k, v]) => [k, v.slice()])) };
  for (let i = 0; i < p.length; i++) {
    let grad = g[i];
    const wd = opt.weightDecay;
    if (opt.name === 'sgd') {
      if (wd) grad += wd * p[i];
      if (opt.momentum) {
        const buf = t === 1 ? grad : mom * st.momentum_buffer[i] + grad;
        out.st.momentum_buffer[i] = buf;
        grad = opt.nesterov ? grad + mom * buf : buf;
      }
      out.p[i] = p[i] - lr * grad;
    } else if (opt.name === 'adam' || opt.name === 'adamw') {
      let param = p[i];
      if (opt.name === 'adamw') param *= 1 - lr * wd;
      else if (wd) grad += wd * p[i];
      const m = mom * st.exp_avg[i] + (1 - mom) * grad;
      const v = opt.beta2 * st.exp_avg_sq[i] + (1 - opt.beta2) * grad * grad;
      const bc1 = 1 - mom ** t;
      const bc2 = 1 - opt.beta2 ** t;
      out.st.exp_avg[i] = m;
      out.st.exp_avg_sq[i] = v;
      out.p[i] = param - (lr / bc1) * (m / (Math.sqrt(v) / Math.sqrt(bc2) + opt.eps));
    } else {
      if (wd) grad += wd * p[i];
      const sq = opt.alpha * st.square_avg[i] + (1 - opt.alpha) * grad * grad;
      out.st.square_avg[i] = sq;
      let d = grad / (Math.sqrt(sq) + opt.eps);
      if (opt.momentum) {
        const buf = mom * st.momentum_buffer[i] + d;
        out.st.momentum_buffer[i] = buf;
        d = buf;
      }
      out.p[i] = p[i] - lr * d;
    }
  }
  return out;
}

async function optimizerModel(opt: OptimizerConfig) {
  const b = new GraphBuilder('opt');
  const p = b.input('p', 'float32', [N]);
  const g = b.input('g', 'float32', [N]);
  const lr = b.input('lr', 'float32', []);
  const mom = b.input('mom', 'float32', []);
  const step = b.input('step', 'int64', []);
  const kind = optimizerKind(opt);
  const slots = stateNames(opt, kind);
  const state = Object.fromEntries(slots.map((s) => [s, b.input(s, 'float32', [N])]));
  const upd = emitUpdate(b, opt, { param: p, grad: g, state, lr, momentum: mom, t: emitStepNumber(b, step) }, kind);
  const outs: [string, string][] = [['p_next', upd.param], ...slots.map((s) => [`${s}_next`, upd.state[s]] as [string, string])];
  for (const [name, value] of outs) b.expose(value, name, 'float32', [N]);
  return { session: await ort.InferenceSession.create(encodeModel(b.graph)), slots };
}

const CONFIGS: [string, OptimizerConfig, number, number[]][] = [
  ['SGD', defaultOptimizer('sgd'), 0.1, [0, 0, 0]],
  ['SGD momentum 0.9, weight decay', defaultOptimizer('sgd', 1e-2, true), 0.05, [0.9, 0.9, 0.9]],
  ['SGD Nesterov, momentum cycled', defaultOptimizer('sgd', 0, true, true), 0.05, [0.95, 0.9, 0.85]],
  ['Adam', defaultOptimizer('adam'), 1e-3, [0.9, 0.9, 0.9]],
  ['Adam with L2 and cycled beta1', defaultOptimizer('adam', 1e-2), 1e-2, [0.95, 0.9, 0.85]],
  ['AdamW', defaultOptimizer('adamw', 1e-2), 1e-3, [0.9, 0.9, 0.9]],
  ['RMSprop', defaultOptimizer('rmsprop'), 1e-2, [0, 0, 0]],
  ['RMSprop momentum, weight decay', defaultOptimizer('rmsprop', 1e-3, true), 1e-2, [0.9, 0.9, 0.9]],
];

describe('optimisers: the first three updates equal the formulas', () => {
  for (const [name, opt, lr, moms] of CONFIGS) {
    it(name, async () => {
      const { session, slots } = await optimizerModel(opt);
      let p = [0.5, -0.25, 1.5, -2, 0.1, 0.75];
      let st: Record<string, number[]> = Object.fromEntries(slots.map((s) => [s, new Array(N).fill(0)]));
      let gp: Float32Array = Float32Array.from(p);
      let gst: Record<string, Float32Array> = Object.fromEntries(slots.map((s) => [s, new Float32Array(N)]));
      for (let t = 1; t <= 3; t++) {
        const g = Array.from({ length: N }, (_, i) => Math.sin(7 * i + 3 * t) * (1 + i / 2));
        const ref = reference(opt, p, g, st, lr, moms[t - 1], t);
        const feeds: Record<string, ort.Tensor> = {
          p: new ort.Tensor('float32', gp, [N]),
          g: new ort.Tensor('float32', Float32Array.from(g), [N]),
          lr: new ort.Tensor('float32', Float32Array.of(lr), []),
          mom: new ort.Tensor('float32', Float32Array.of(moms[t - 1]), []),
          step: new ort.Tensor('int64', BigInt64Array.of(BigInt(t - 1)), []),
        };
        for (const s of slots) feeds[s] = new ort.Tensor('float32', gst[s], [N]);
        const out = await session.run(feeds);
        gp = out.p_next.data as Float32Array;
        gst = Object.fromEntries(slots.map((s) => [s, out[`${s}_next`].data as Float32Array]));
        for (let i = 0; i < N; i++) {
          assert.ok(Math.abs(gp[i] - ref.p[i]) <= 1e-6 * Math.max(1, Math.abs(ref.p[i])), `${name} step ${t} param ${i}: ${gp[i]} vs ${ref.p[i]}`);
          for (const s of slots) assert.ok(Math.abs(gst[s][i] - ref.st[s][i]) <= 1e-5 * Math.max(1, Math.abs(ref.st[s][i])), `${name} step ${t} ${s} ${i}`);
        }
        // The parameter must actually move (a no-op update would match a no-op reference only by accident).
        assert.ok(ref.p.some((v, i) => Math.abs(v - p[i]) > 1e-6));
        p = ref.p;
        st = ref.st;
      }
    });
  }

  it('knows each optimiser’s state', () => {
    const names: [OptimizerName, boolean, string[]][] = [
      ['sgd', false, []],
      ['sgd', true, ['momentum_buffer']],
      ['adam', false, ['exp_avg', 'exp_avg_sq']],
      ['rmsprop', true, ['square_avg', 'momentum_buffer']],
    ];
    for (const [n, m, slots] of names) assert.deepEqual(stateNames(defaultOptimizer(n, 0, m), optimizerKind(defaultOptimizer(n))), slots);
  });
});

describe('the optimiser table', () => {
  it('names every preset’s optimiser, and --opt offers exactly its names', () => {
    for (const name of PRESET_NAMES) assert.ok(PRESETS[name].recipe.optimizer in OPTIMIZERS, `${name}: ${PRESETS[name].recipe.optimizer}`);
    assert.deepEqual([...TRAIN_FLAGS.opt.choices], OPTIMIZER_NAMES);
  });

  it('derives the optimiser flags’ help texts from its entries', () => {
    assert.equal(TRAIN_FLAGS.momentum.describe, 'momentum (SGD, RMSprop) or beta1 (Adam, AdamW)');
    assert.equal(TRAIN_FLAGS['weight-decay'].describe, 'L2 weight decay (decoupled for AdamW)');
    assert.equal(TRAIN_FLAGS.nesterov.describe, 'Nesterov momentum (SGD)');
  });

  it('rejects a flag that does not apply to the optimiser, and an unknown recipe optimiser, in one line', async () => {
    const arch = await loadArchitecture('partA');
    assert.throws(() => trainSpecFor(arch, { opt: 'adam', momentum: 0.9, nesterov: true }), (e: Error) => e instanceof UsageError && e.message === '--nesterov: applies to SGD, not Adam');
    const odd = { ...arch, recipe: { ...arch.recipe, optimizer: 'lion' } };
    assert.throws(() => trainSpecFor(odd), (e: Error) => e instanceof UsageError && e.message === `${arch.id}: recipe optimizer: expected one of sgd, adam, adamw, rmsprop, got 'lion'`);
  });

  it('builds no train step for an optimiser whose kind is not given (graph-builder knows only SGD)', async () => {
    const arch = await loadArchitecture('partA');
    const meta = { architecture: arch.id, dataset: 'mnist', classes: [], mean: 0, std: 1 };
    assert.throws(() => buildTrainStepModel(arch.model, { optimizer: defaultOptimizer('adam'), loss: 'cross-entropy', meta }), /optimizer 'adam' needs its kind/);
  });
});
