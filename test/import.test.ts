import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { CnnlabError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';
import { loadDataset } from '../datasets/sources.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { initParams, type ParamSet } from '../graph-builder/dsl/init.ts';
import { batchNorm2d, conv2d, flatten, linear, maxPool2d, relu, sequential } from '../graph-builder/dsl/layers.ts';
import { modelFromLayers } from '../graph-builder/dsl/to-model.ts';
import { attr } from '../graph-builder/graph/ir.ts';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';
import { checkTrainable, importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import type { Model } from '../graph-builder/model.ts';
import { createRuntime } from '../runtime/ort.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';
import { TorchStyleExport } from './helpers/onnx-export.ts';

const mnist = await loadDataset('mnist', { env: {} });
const META = { architecture: 'test', dataset: 'mnist', classes: [...'0123456789'], mean: 0, std: 1 };

function batches(K: number, B: number, lr: number, start = 0): StepBatch {
  return {
    K,
    B,
    inputs: {
      images: mnist.train.images.slice(start * 784, (start + K * B) * 784),
      labels: mnist.train.labels.slice(start, start + K * B),
      lr: new Float32Array(K).fill(lr),
      momentum: new Float32Array(K).fill(0),
      dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 11)),
    },
  };
}

/** Runs K SGD steps of a model from the given parameters; returns the carried tensors and losses. */
async function train(model: Model, params: ParamSet, batch: StepBatch) {
  const built = compile(model, { optimizer: defaultOptimizer('sgd', 0, false), loss: 'cross-entropy', meta: META });
  const rt = await createRuntime({ ep: 'cpu', threads: 1 });
  const runner = await StepRunner.create(rt, built.trainStep, built.iface, built.initialCheckpoint(params));
  const out = await runner.run(batch);
  const tensors = runner.tensors();
  await runner.release();
  return { tensors, losses: Array.from(out.losses), built };
}

/** conv(1->4, 3x3, pad 1, bias) -> BN -> ReLU -> max-pool 2 -> view(N, -1) -> Linear(784 -> 10), PyTorch-style. */
function sequentialExport(o: { trainingModeBn?: boolean; batch?: number | string } = {}): Uint8Array {
  const e = new TorchStyleExport(3);
  let h = e.conv('conv1', 'input', 1, 4, 3, { pad: 1 });
  h = e.batchNorm('bn1', h, 4, o.trainingModeBn);
  h = e.maxPool(e.op('Relu', h), 2);
  const out = e.gemm('fc', o.batch === 1 ? fixedView(e, h) : e.viewBatch(h), 4 * 14 * 14, 10);
  return e.build(out, { batch: o.batch });
}

/** PyTorch's export with a fixed batch of 1 folds x.size(0) into the Reshape's target: [1, -1]. */
function fixedView(e: TorchStyleExport, x: string): string {
  return e.node('Reshape', [x, e.constInts([1, -1], 'view')], {}, 'view')[0];
}

const FILE = 'net.onnx';
const FAMILIES = join(import.meta.dirname, 'fixtures', 'families');

describe('importing an ONNX classifier', () => {
  it('keeps the exporter’s names: parameters under their initialiser names, BatchNorm statistics as buffers', () => {
    const m = importOnnxModel(sequentialExport(), FILE);
    assert.deepEqual(
      m.params.map((p) => [p.name, p.trainable]),
      [['conv1.weight', true], ['conv1.bias', true], ['bn1.weight', true], ['bn1.bias', true], ['bn1.running_mean', false], ['bn1.running_var', false], ['fc.weight', true], ['fc.bias', true]],
    );
    assert.equal(m.input, 'input');
    assert.deepEqual(m.inputShape, [1, 28, 28]);
    assert.equal(m.trainableCount, 40 + 8 + 7850);
    assert.ok(!m.graph.nodes.some((n) => ['Shape', 'Gather', 'Unsqueeze', 'Concat'].includes(n.op)), 'the shape computation is folded');
    assert.deepEqual(m.shapes.get(m.output), ['N', 10]);
  });

  it('a PyTorch-style sequential export trains to the same parameters as the same net built with the DSL', async () => {
    const bytes = sequentialExport();
    const imported = importOnnxModel(bytes, FILE);
    const dsl = modelFromLayers(sequential(conv2d(1, 4, 3, { padding: 1 }), batchNorm2d(4), relu(), maxPool2d(2), flatten(), linear(784, 10)), 'twin');
    const values = initParams(imported, 0);
    const dslValues: ParamSet = new Map(dsl.params.map((p, i) => [p.name, values.get(imported.params[i].name)!]));
    const batch = batches(3, 32, 0.05);
    const a = await train(imported, values, batch);
    const b = await train(dsl, dslValues, batch);
    assert.deepEqual(a.losses, b.losses);
    imported.params.forEach((p, i) => assert.deepEqual(a.tensors.get(p.name)!.data, b.tensors.get(dsl.params[i].name)!.data, p.name));
    assert.notDeepEqual(Array.from(a.tensors.get('bn1.running_var')!.data as Float32Array), [1, 1, 1, 1], 'running statistics move');
  });

  it('BatchNormalization in training form (training_mode=1) trains like the inference form', async () => {
    const a = importOnnxModel(sequentialExport(), FILE);
    const b = importOnnxModel(sequentialExport({ trainingModeBn: true }), FILE);
    const batch = batches(2, 16, 0.05);
    const ra = await train(a, initParams(a, 0), batch);
    const rb = await train(b, initParams(b, 0), batch);
    assert.deepEqual(ra.losses, rb.losses);
  });

  it('a training-mode export comes back in inference form: BatchNormalization without training_mode, with one output, its answers independent of the batch', async () => {
    const model = importOnnxModel(sequentialExport({ trainingModeBn: true }), FILE);
    const { built, tensors } = await train(model, initParams(model, 0), batches(2, 16, 0.05));
    const params = new Map(model.params.map((p) => [p.name, tensors.get(p.name)!.data as Float32Array]));
    const bytes = built.inference(params);
    const bn = decodeGraph(bytes).graph.nodes.find((n) => n.op === 'BatchNormalization')!;
    assert.deepEqual([bn.attrs.training_mode, bn.outputs.length], [undefined, 1]);
    const session = await ort.InferenceSession.create(bytes);
    const images = Float32Array.from(mnist.test.images.slice(0, 4 * 784), (v) => v / 255);
    const four = (await session.run({ input: new ort.Tensor('float32', images, [4, 1, 28, 28]) })).output.data as Float32Array;
    const one = (await session.run({ input: new ort.Tensor('float32', images.slice(0, 784), [1, 1, 28, 28]) })).output.data as Float32Array;
    assert.deepEqual(Array.from(one), Array.from(four.slice(0, 10)));
  });

  it('a residual block with a depthwise conv: its SGD update is -lr times the gradient, checked by central differences', async () => {
    const e = new TorchStyleExport(5);
    const x = e.op('Relu', e.conv('conv1', 'input', 1, 4, 3, { pad: 1 }), 'relu1');
    const y = e.conv('conv2', e.op('Relu', e.conv('depthwise', x, 4, 4, 3, { pad: 1, group: 4 }), 'relu2'), 4, 4, 3, { pad: 1 });
    const sum = e.node('Add', [y, x], {}, 'add')[0];
    let h = e.op('Relu', sum, 'relu3');
    h = e.conv('down', e.maxPool(h, 2), 4, 8, 3, { stride: 2, pad: 1 });
    h = e.op('GlobalAveragePool', e.op('Relu', h, 'relu4'), 'gap');
    const out = e.gemm('fc', e.op('Flatten', h, 'flatten', { axis: attr.int(1) }), 8, 10);
    const model = importOnnxModel(e.build(out), FILE);
    const lr = 0.1;
    const B = 16;
    const params = initParams(model, 0);
    const { tensors, built } = await train(model, params, batches(1, B, lr));
    // The eval graph's summed loss at params + h v and params - h v (no BatchNorm or Dropout: train and eval forward agree).
    const session = await ort.InferenceSession.create(built.eval);
    const lossAt = async (sign: number, v: Map<string, Float32Array>, h: number) => {
      const feeds: Record<string, ort.Tensor> = {
        images: new ort.Tensor('uint8', mnist.train.images.slice(0, B * 784), [B, 28, 28]),
        labels: new ort.Tensor('uint8', mnist.train.labels.slice(0, B), [B]),
      };
      for (const p of model.params) feeds[p.name] = new ort.Tensor('float32', params.get(p.name)!.map((w, i) => w + sign * h * v.get(p.name)![i]), p.shape);
      return ((await session.run(feeds)).loss_sum.data[0] as number) / B;
    };
    const rng = Rng.seeded(2);
    for (let d = 0; d < 3; d++) {
      const v = new Map(model.params.map((p) => [p.name, Float32Array.from(params.get(p.name)!, () => (rng.float() < 0.5 ? -1 : 1) * 0.05)]));
      let analytic = 0;
      for (const p of model.params) {
        const after = tensors.get(p.name)!.data as Float32Array;
        const before = params.get(p.name)!;
        for (let i = 0; i < before.length; i++) analytic += (-(after[i] - before[i]) / lr) * v.get(p.name)![i];
      }
      const h = 1e-2;
      const numeric = ((await lossAt(1, v, h)) - (await lossAt(-1, v, h))) / (2 * h);
      assert.ok(Math.abs(analytic - numeric) <= 2e-3 + 0.02 * Math.abs(numeric), `direction ${d}: update says ${analytic}, differences say ${numeric}`);
    }
  });

  it('an export with a fixed batch of 1 trains at any batch size and its trained form keeps the fixed interface', async () => {
    const bytes = sequentialExport({ batch: 1 });
    const model = importOnnxModel(bytes, FILE);
    const { tensors, built, losses } = await train(model, initParams(model, 0), batches(2, 8, 0.05));
    assert.ok(losses.every(Number.isFinite));
    const params: ParamSet = new Map(model.params.map((p) => [p.name, tensors.get(p.name)!.data as Float32Array]));
    const trained = decodeGraph(built.inference(params));
    const original = decodeGraph(bytes);
    assert.deepEqual(trained.graph.inputs, original.graph.inputs);
    assert.deepEqual(trained.graph.outputs, original.graph.outputs);
    assert.deepEqual(trained.graph.nodes.map((n) => n.name), original.graph.nodes.map((n) => n.name));
    assert.deepEqual(trained.graph.initializers.map((t) => t.name), original.graph.initializers.map((t) => t.name));
    assert.deepEqual(trained.graph.initializers.find((t) => t.name === 'fc.weight')!.data, params.get('fc.weight'));
    assert.match(trained.metadata['cnnlab.preprocess'], /"range":1/);
    const session = await ort.InferenceSession.create(built.inference(params));
    const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(784), [1, 1, 28, 28]) });
    assert.deepEqual(out.output.dims, [1, 10]);
  });

  it('Dropout becomes a dropout site with its ratio; its masks depend on the step’s seed', async () => {
    const e = new TorchStyleExport(4);
    const h = e.dropout(e.viewBatch(e.op('Relu', 'input')), 0.5);
    const model = importOnnxModel(e.build(e.gemm('fc', h, 784, 10)), FILE);
    assert.deepEqual([...model.dropouts.values()].map((s) => s.p), [0.5]);
    const a = await train(model, initParams(model, 0), batches(1, 16, 0));
    const b = batches(1, 16, 0);
    b.inputs.dropout_seed[0] = 999n;
    assert.notDeepEqual(a.losses, (await train(model, initParams(model, 0), b)).losses);
  });
});

describe('what an ONNX file cannot be is one line naming the file and the node', () => {
  const exportWith = (edit: (e: TorchStyleExport) => string, o: Parameters<TorchStyleExport['build']>[1] = {}) => {
    const e = new TorchStyleExport(1);
    return e.build(edit(e), o);
  };
  const viewed = (e: TorchStyleExport) => e.gemm('fc', e.viewBatch('input'), 784, 10);
  const cases: [string, () => unknown, RegExp][] = [
    ['bytes that are not ONNX', () => importOnnxModel(new TextEncoder().encode('not a model'), FILE), /^net\.onnx: not an ONNX model/],
    ['an opset older than 7', () => importOnnxModel(exportWith(viewed, { opset: 6 }), FILE), /^net\.onnx: ONNX opset 6; cnnlab reads opsets 7 to 26$/],
    ['an opset newer than onnxruntime reads', () => importOnnxModel(exportWith(viewed, { opset: 27 }), FILE), /^net\.onnx: ONNX opset 27; cnnlab reads opsets 7 to 26$/],
    ['five channels', () => importOnnxModel(exportWith(viewed, { channels: 5 }), FILE), /^net\.onnx: input 'input' has 5 channels/],
    [
      'every op outside the table, with counts, in one line',
      () => importOnnxModel(exportWith((e) => e.gemm('fc', e.viewBatch(e.op('Cos', e.op('Cos', e.op('Det', 'input', 'a'), 'b'), 'c')), 784, 10)), FILE),
      /^net\.onnx: 3 node\(s\) of 2 op type\(s\) cnnlab cannot import: Det, Cos x2 \(the README's op table lists what it reads\)$/,
    ],
    [
      'a symbolic image size without --input-size',
      () => importOnnxModel(readFileSync(join(FAMILIES, 'old_opset9_constants.onnx')), 'old.onnx'),
      /^old\.onnx: input 'input' has a symbolic height or width \[batch, 1, height, width\]; give the image size with --input-size HxW$/,
    ],
    [
      'a contrib op',
      () =>
        importOnnxModel(
          exportWith((e) => {
            const h = e.op('Relu', 'input');
            e.nodes[e.nodes.length - 1].domain = 'com.microsoft';
            return e.gemm('fc', e.viewBatch(h), 784, 10);
          }),
          FILE,
        ),
      /^net\.onnx: 1 node\(s\) of 1 op type\(s\) cnnlab cannot import: com\.microsoft\.Relu/,
    ],
    ['two outputs', () => importOnnxModel(twoOutputs(), FILE), /^net\.onnx: expected one output \(class scores\), found 2: output, extra/],
  ];
  for (const [name, fn, pattern] of cases) {
    it(name, () => assert.throws(fn, (err: unknown) => err instanceof CnnlabError && pattern.test(err.message) && !err.message.includes('\n')));
  }

  it('ops without a gradient rule are refused before training, in one line with their counts', () => {
    const model = importOnnxModel(exportWith((e) => e.gemm('fc', e.viewBatch(e.conv('deconv', 'input', 1, 1, 1)), 784, 10)), FILE);
    assert.doesNotThrow(() => checkTrainable(model));
    const bad = structuredClone(model);
    bad.graph.nodes.push({ op: 'Cos', name: 'odd', inputs: [], outputs: ['x'], attrs: {} }, { op: 'Cos', name: 'odd2', inputs: [], outputs: ['y'], attrs: {} });
    assert.throws(() => checkTrainable(bad), (err: unknown) => err instanceof CnnlabError && err.message === 'net.onnx: no gradient rule for Cos x2; cnnlab can evaluate this model but not train it');
  });

  it('is written to disk by the exporter helper as a file onnxruntime runs', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-import-'));
    writeFileSync(join(dir, FILE), sequentialExport());
    const session = await ort.InferenceSession.create(join(dir, FILE));
    const out = await session.run({ input: new ort.Tensor('float32', new Float32Array(2 * 784), [2, 1, 28, 28]) });
    assert.deepEqual(out.output.dims, [2, 10]);
  });
});

function twoOutputs(): Uint8Array {
  const e = new TorchStyleExport(1);
  const out = e.gemm('fc', e.viewBatch('input'), 784, 10);
  const bytes = e.build(out);
  const g = decodeGraph(bytes).graph;
  g.outputs.push({ name: 'extra', dtype: 'float32', shape: ['batch', 10] });
  g.nodes.push({ op: 'Identity', name: 'extra_node', inputs: ['output'], outputs: ['extra'], attrs: {} });
  return encodeAgain(g);
}

import { encodeModel } from '../graph-builder/graph/onnx.ts';
const encodeAgain = (g: ReturnType<typeof decodeGraph>['graph']) => encodeModel(g, { opset: 13 });

describe('training an imported model as a run', () => {
  it('an interrupted run of an imported model (BatchNorm, Dropout, augmentation) resumes from its config to the uninterrupted parameters', async () => {
    const { fit } = await import('../training/fit.ts');
    const { readRunConfig, resolveRunConfig } = await import('../training/config.ts');
    const { loadModelFile } = await import('../graph-builder/dsl/arch.ts');
    const { readCheckpoint } = await import('../graph-builder/artifacts/checkpoint.ts');
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-import-run-'));
    const e = new TorchStyleExport(6);
    let h = e.batchNorm('bn1', e.conv('conv1', 'input', 1, 4, 3, { pad: 1 }), 4);
    h = e.dropout(e.viewBatch(e.maxPool(e.op('Relu', h), 2)), 0.3);
    const file = join(dir, 'net.onnx');
    writeFileSync(file, e.build(e.gemm('fc', h, 4 * 14 * 14, 10)));
    const cfg = resolveRunConfig(loadModelFile(file), { 'limit-train': 530, epochs: 2, batch: 100, 'steps-per-run': 2, augment: true, opt: 'sgd', lr: 0.05, momentum: 0.9, seed: 3 }, undefined, file);
    const quiet = { progress: false, log: () => {} };
    await fit(cfg, { runDir: join(dir, 'whole'), resume: false, ...quiet });
    let checks = 0;
    const stop = {
      get requested() {
        return ++checks === 2;
      },
    };
    assert.equal((await fit(cfg, { runDir: join(dir, 'parts'), resume: false, ...quiet, stop })).interrupted, true);
    const again = await readRunConfig(join(dir, 'parts'));
    assert.equal(again.modelFile, file);
    await fit(again, { runDir: join(dir, 'parts'), resume: true, ...quiet });
    const a = readCheckpoint(join(dir, 'whole', 'checkpoint.ckpt'));
    const b = readCheckpoint(join(dir, 'parts', 'checkpoint.ckpt'));
    assert.equal(b.meta.step, 12);
    for (const [name, t] of a.tensors) assert.deepEqual(Buffer.from(b.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), name);
    const trained = decodeGraph(readFileSync(join(dir, 'whole', 'last.onnx')));
    assert.deepEqual(trained.graph.initializers.find((t) => t.name === 'bn1.running_mean')!.data, a.tensors.get('bn1.running_mean')!.data);
  });
});
