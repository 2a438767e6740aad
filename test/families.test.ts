/**
 * Real exporters' output: the CNN families of test/fixtures/families/ (torchvision 0.14 blocks
 * exported by PyTorch 1.13 at opset 17, an opset-9 export with its weights in Constant nodes and
 * a symbolic image size, a tf2onnx-style channels-last model, and PyTorch 2.13's default exporter
 * with external data at opset 20; made by export.py and export_torch2.py beside them). Each is
 * imported, its forward graph as cnnlab emits it matches PyTorch's output, two SGD steps give
 * finite losses and move the parameters, and the trained model keeps the file's interface.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import { CnnlabError } from '../common/errors.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile, writeOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { frozenParams } from '../graph-builder/freeze.ts';
import { headParams, replaceHead } from '../graph-builder/import/head.ts';
import { checkTrainable, importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import type { Graph } from '../graph-builder/graph/ir.ts';
import type { Model } from '../graph-builder/model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { inspectModel } from '../inference/inspect.ts';
import { exampleInput, initial, META, twoSteps } from './helpers/imported.ts';

const DIR = join(import.meta.dirname, 'fixtures', 'families');

interface Fixture {
  input_shape: (number | string)[];
  opset: number;
  input: { example: { shape: number[]; first: number[] } };
  expected_output: number[][];
  tolerance: number;
}

const CASES: { file: string; json?: string; inputSize?: [number, number] }[] = [
  { file: 'resnet18.onnx' },
  { file: 'mobilenet_v2.onnx' },
  { file: 'mobilenet_v3_small.onnx' },
  { file: 'squeezenet1_1.onnx' },
  { file: 'shufflenet_v2.onnx' },
  { file: 'efficientnet_b0.onnx' },
  { file: 'mnasnet.onnx' },
  { file: 'regnet_x.onnx' },
  { file: 'densenet.onnx' },
  { file: 'googlenet.onnx' },
  { file: 'old_opset9.onnx' },
  { file: 'old_opset9_constants.onnx', inputSize: [28, 28] },
  { file: 'tf2onnx_style.onnx' },
  { file: 'torch2_snippet/net.onnx' },
  { file: 'torch2_dwse/dwse.onnx' },
];

function load(file: string, inputSize?: [number, number]): { model: Model; fixture: Fixture; layout: string } {
  const path = join(DIR, file);
  const { bytes, layout } = readOnnxFile(path, readFileSync(path));
  const fixture = JSON.parse(readFileSync(path.replace(/\.onnx$/, '.json'), 'utf8')) as Fixture;
  return { model: importOnnxModel(bytes, path, { inputSize, layout }), fixture, layout };
}

describe('CNN families from real exporters', () => {
  for (const c of CASES) {
    it(`${c.file}: imported, its forward graph matches PyTorch's output, two SGD steps give finite losses, the trained model keeps the interface`, async () => {
      const { model, fixture, layout } = load(c.file, c.inputSize);
      checkTrainable(model);
      // The forward graph as cnnlab emits it, on the input PyTorch saw.
      const [n] = fixture.input.example.shape;
      const x = exampleInput(n * model.inputShape.reduce((a, d) => a * d, 1));
      assert.ok(Math.abs(x[0] - fixture.input.example.first[0]) < 1e-6, 'the example input is rebuilt');
      const forward = await ort.InferenceSession.create(buildInferenceModel(model, initial(model), META));
      const logits = (await forward.run({ image: new ort.Tensor('float32', x, [n, ...model.inputShape]) })).logits.data as Float32Array;
      const expected = fixture.expected_output.flat();
      const worst = Math.max(...expected.map((v, i) => Math.abs(v - logits[i])));
      assert.ok(worst <= fixture.tolerance, `forward differs from PyTorch by ${worst}`);

      const { built, losses, after: trained } = await twoSteps(model, initial(model), { lr: 0.01, momentum: 0 });
      assert.ok(Array.from(losses).every(Number.isFinite), `losses ${Array.from(losses)}`);
      const moved = model.params.filter((p) => p.trainable).filter((p) => (trained.get(p.name)!.data as Float32Array).some((v, i) => v !== initial(model).get(p.name)![i]));
      assert.ok(moved.length > 0, 'some parameter moved');

      // The trained model: the user's own file with new weights, in the layout it came in.
      const params = new Map(model.params.map((p) => [p.name, trained.get(p.name)!.data as Float32Array]));
      const dir = mkdtempSync(join(tmpdir(), 'cnnlab-family-'));
      const path = join(dir, 'trained.onnx');
      writeOnnxFile(path, built.inference(params), layout as 'inline' | 'external');
      const back = readOnnxFile(path, readFileSync(path));
      assert.equal(back.layout, layout);
      const original = decodeGraph(readOnnxFile(join(DIR, c.file), readFileSync(join(DIR, c.file))).bytes).graph;
      const after = decodeGraph(back.bytes).graph;
      assert.deepEqual(after.inputs.map((i) => i.name), original.inputs.map((i) => i.name));
      assert.deepEqual(after.outputs.map((o) => o.name), original.outputs.map((o) => o.name));
      const session = await ort.InferenceSession.create(back.bytes);
      const image = original.inputs.find((i) => !original.initializers.some((t) => t.name === i.name))!;
      const feedShape = (image.shape ?? []).map((d, i) => (typeof d === 'number' ? d : i === 0 ? n : (c.inputSize ?? [])[i - 2]));
      const y = (await session.run({ [image.name]: new ort.Tensor('float32', x, feedShape) }))[original.outputs[0].name].data as Float32Array;
      assert.ok(Array.from(y).every(Number.isFinite));
    });
  }
});

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const cnnlab = (...args: string[]) => spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8' });

describe('what exporters write, read as they wrote it', () => {
  it('tf2onnx: a channels-last input is fed as [N, C, H, W]; the Dense layer as MatMul + Add trains its weight and its bias', () => {
    const { model } = load('tf2onnx_style.onnx');
    assert.deepEqual(model.inputShape, [1, 28, 28]);
    assert.equal(model.source?.channelsLast, true);
    const trainable = model.params.filter((p) => p.trainable).map((p) => p.name);
    for (const name of ['dense/MatMul/ReadVariableOp:0', 'dense/BiasAdd/ReadVariableOp:0', 'conv2d/BiasAdd/ReadVariableOp:0']) {
      assert.ok(trainable.some((t) => t.endsWith(name)), `${name} is trained`);
    }
    const text = inspectModel(join(DIR, 'tf2onnx_style.onnx'));
    assert.match(text, /^trainable parameters: 4 tensors, 7,890 values$/m);
    assert.match(text, /^  StatefulPartitionedCall\/sequential\/dense\/BiasAdd\/ReadVariableOp:0  \[10\]$/m);
    assert.match(text, /any other count through a new head in place of MatMul node/);
  });

  it('weights held in Constant nodes (opset 9, symbolic image size) are parameters, and the trained values go back into those nodes', () => {
    const { model } = load('old_opset9_constants.onnx', [28, 28]);
    assert.deepEqual(model.params.map((p) => p.name).sort(), ['conv2.bias', 'conv2.weight', 'fc.bias', 'fc.weight', 'onnx::Conv_21', 'onnx::Conv_22']);
    const built = compile(model, { optimizer: defaultOptimizer('sgd', 0, false), loss: 'cross-entropy', meta: META });
    const params = new Map(model.params.map((p) => [p.name, Float32Array.from((p.init as { data: Float32Array }).data, (v) => v + 1)]));
    const g = decodeGraph(built.inference(params)).graph;
    const held = g.nodes.find((n) => n.op === 'Constant' && n.outputs[0] === 'fc.bias')!.attrs.value;
    assert.ok(held.kind === 'tensor');
    assert.deepEqual(Array.from(held.value.data as Float32Array), Array.from(params.get('fc.bias')!));
  });

  it("initialisers PyTorch merged (read again through Identity) are separate parameters again, and the trained model holds each as its own initialiser", () => {
    const { model } = load('mobilenet_v3_small.onnx');
    const g = decodeGraph(readFileSync(join(DIR, 'mobilenet_v3_small.onnx'))).graph;
    const copies = g.nodes.filter((n) => n.op === 'Identity' && g.initializers.some((t) => t.name === n.inputs[0]));
    assert.ok(copies.length > 0, 'the fixture reads merged initialisers through Identity');
    for (const n of copies) assert.ok(model.params.some((p) => p.name === n.outputs[0] && p.trainable), `${n.outputs[0]} is a parameter`);
    const built = compile(model, { optimizer: defaultOptimizer('sgd', 0, false), loss: 'cross-entropy', meta: META });
    const params = new Map(model.params.map((p, i) => [p.name, new Float32Array(p.shape.reduce((a, d) => a * d, 1)).fill(i)]));
    const out = decodeGraph(built.inference(params)).graph;
    for (const n of copies) {
      assert.ok(!out.nodes.some((k) => k.outputs[0] === n.outputs[0]), `${n.outputs[0]}'s Identity is gone`);
      assert.deepEqual(Array.from(out.initializers.find((t) => t.name === n.outputs[0])!.data as Float32Array), Array.from(params.get(n.outputs[0])!));
    }
  });

  it('a Conv without kernel_shape takes it from its weight: the train step has the same ops as with it', () => {
    const path = join(DIR, 'regnet_x.onnx');
    const g = decodeGraph(readFileSync(path)).graph;
    for (const n of g.nodes) if (n.op === 'Conv') delete n.attrs.kernel_shape;
    const opsOf = (graph: Graph): string[] => graph.nodes.flatMap((n) => [n.op, ...Object.values(n.attrs).flatMap((a) => (a.kind === 'graph' ? opsOf(a.value) : []))]);
    const ops = (m: Model) => opsOf(decodeGraph(compile(m, { optimizer: defaultOptimizer('sgd', 0, false), loss: 'cross-entropy', meta: META }).trainStep).graph).join(' ');
    assert.equal(ops(importOnnxModel(encodeModel(g, { opset: 17 }), 'regnet.onnx')), ops(load('regnet_x.onnx').model));
  });

  it('a missing external data file is one line naming it', () => {
    const dir = mkdtempSync(join(tmpdir(), 'cnnlab-external-'));
    const path = join(dir, 'net.onnx');
    writeFileSync(path, readFileSync(join(DIR, 'torch2_snippet', 'net.onnx')));
    assert.throws(
      () => readOnnxFile(path, readFileSync(path)),
      (err: unknown) => err instanceof CnnlabError && /^\S+net\.onnx: tensor \S+ keeps its data in net\.onnx\.data, which cannot be read \(ENOENT\); keep it beside the model$/.test(err.message),
    );
  });

  it("the README's export snippet on PyTorch 2.13 (opset 20, weights in net.onnx.data): cnnlab train --model trains it and writes best.onnx with best.onnx.data, which eval reads", () => {
    const out = mkdtempSync(join(tmpdir(), 'cnnlab-snippet-'));
    const model = join(DIR, 'torch2_snippet', 'net.onnx');
    const train = cnnlab('train', '--model', model, '--dataset', 'mnist', '--limit-train', '512', '--val-split', '0', '--epochs', '1', '--batch', '64', '--out', out);
    assert.equal(train.status, 0, train.stderr);
    assert.ok(existsSync(join(out, 'best.onnx.data')), 'the weights stay external');
    assert.ok(statSync(join(out, 'best.onnx')).size < statSync(join(out, 'best.onnx.data')).size);
    const ev = cnnlab('eval', out, '--dataset', 'mnist', '--misclassified', join(out, 'misclassified.png'));
    assert.equal(ev.status, 0, ev.stderr);
    assert.match(ev.stdout, /accuracy/);
  });
});

describe('fine-tuning an imported classifier', () => {
  const steps = async (model: Model, frozen?: ReadonlySet<string>) => {
    const start = new Map(model.params.map((p) => [p.name, p.init.kind === 'given' ? p.init.data : new Float32Array(p.shape.reduce((a, d) => a * d, 1)).fill(0.01)]));
    const { built, losses, after } = await twoSteps(model, start, { lr: 0.05, momentum: 0.9, frozen });
    const moved = new Set(model.params.filter((p) => (after.get(p.name)!.data as Float32Array).some((v, i) => v !== start.get(p.name)![i])).map((p) => p.name));
    return { built, losses, moved, after };
  };

  for (const [file, op] of [['mobilenet_v2.onnx', 'Gemm'], ['squeezenet1_1.onnx', 'Conv'], ['tf2onnx_style.onnx', 'MatMul']] as const) {
    it(`${file}: its ${op} head is replaced by a 5-class one, which trains, and the trained model scores 5 classes under its own names`, async () => {
      const { model } = load(file);
      const { model: five, note } = replaceHead(model, 5);
      assert.match(note, new RegExp(`replaced the head, ${op} node .* \\(${model.classes} classes\\), by a new ${op}.* of 5`));
      assert.equal(five.classes, 5);
      const { built, losses, after } = await steps(five);
      assert.ok(Array.from(losses).every(Number.isFinite));
      const params = new Map(five.params.map((p) => [p.name, after.get(p.name)!.data as Float32Array]));
      const session = await ort.InferenceSession.create(built.inference(params));
      const feed = session.inputNames[0];
      const shape = model.source?.channelsLast ? [2, 28, 28, 1] : [2, ...model.inputShape];
      const y = (await session.run({ [feed]: new ort.Tensor('float32', new Float32Array(shape.reduce((a, d) => a * d, 1)).fill(0.5), shape) }))[session.outputNames[0]];
      assert.deepEqual(y.dims, [2, 5]);
      assert.deepEqual(session.outputNames, decodeGraph(model.source!.bytes).graph.outputs.map((o) => o.name));
    });
  }

  it('--freeze takes comma-separated globs or backbone; a glob that matches nothing, or a freeze of everything, is one line naming the flag', () => {
    const { model } = load('mobilenet_v2.onnx');
    const trainable = model.params.filter((p) => p.trainable).map((p) => p.name);
    assert.deepEqual([...frozenParams(model, 'classifier.*')!].sort(), ['classifier.1.bias', 'classifier.1.weight']);
    assert.equal(frozenParams(model, 'backbone')!.size, trainable.length - 2);
    assert.equal(frozenParams(model, 'onnx::Conv_539, classifier.1.bias')!.size, 2);
    const oneLine = (pattern: RegExp) => (e: unknown) => e instanceof CnnlabError && e.exitCode === 2 && pattern.test(e.message) && !e.message.includes('\n');
    assert.throws(() => frozenParams(model, 'features.*'), oneLine(/^--freeze features\.\*: matches none of the 106 trainable parameters/));
    assert.throws(() => frozenParams(model, 'backbone,classifier.*'), oneLine(/^--freeze backbone,classifier\.\*: freezes every trainable parameter/));
    assert.match(inspectModel(join(DIR, 'mobilenet_v2.onnx'), undefined, 'backbone'), /with this --freeze: trainable 771 of 150,611 parameters \(149,840 frozen\)/);
  });

  it('a frozen backbone: only the head moves, the backbone’s BatchNorm statistics stay, and the train step has no backward work for the backbone', async () => {
    const { model } = load('densenet.onnx');
    const head = headParams(model);
    const frozen = new Set(model.params.filter((p) => p.trainable && !head.has(p.name)).map((p) => p.name));
    const whole = await steps(model);
    const tuned = await steps(model, frozen);
    assert.deepEqual([...tuned.moved].sort(), [...head].sort());
    assert.ok(whole.moved.size > head.size + 10, 'the whole model trains otherwise');
    assert.ok(tuned.built.trainStep.length < whole.built.trainStep.length / 3, `${tuned.built.trainStep.length} bytes against ${whole.built.trainStep.length}`);
  });
});
