/**
 * Pretrained classifiers from exporters other than PyTorch (test/fixtures/exporters/, made by
 * bench/export-keras.py --fixture and bench/export-jax.py): Keras 3's MobileNetV2 (a Dense head)
 * and MobileNetV3-Small (a 1x1 Conv head, Flatten as Reshape [-1, classes], squeeze-excite,
 * hard-swish) exported by tf2onnx, and a Flax NNX CNN (BatchNormalization, Dropout, Gemm, opset
 * 23) exported by jax2onnx with ImageNet's per-channel normalisation; each trained on the same
 * Fashion-MNIST slice, channels-last with its own input size and normalisation. cnnlab's forward
 * graph gives onnxruntime's outputs, eval on the fixture's images gives onnxruntime's accuracy,
 * and two training steps come back as the user's file with the trained values.
 */
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { loadImageFolder } from '../datasets/folder.ts';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile, writeOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { headParams, replaceHead } from '../graph-builder/import/head.ts';
import { checkTrainable, importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { attr, type Graph } from '../graph-builder/graph/ir.ts';
import type { Model } from '../graph-builder/model.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { evaluateInference } from '../inference/evaluate.ts';
import { loadInferenceModel, openModelSession } from '../inference/model.ts';
import { createRuntime } from '../runtime/ort.ts';
import { initial, META, twoSteps } from './helpers/imported.ts';

const DIR = join(import.meta.dirname, 'fixtures', 'exporters');

interface Facts {
  input_size: [number, number];
  /** Mean and std, one for every channel or one per channel. */
  normalize: [number | number[], number | number[]];
  /** The image folder beside the fixture (train/ and test/). */
  data: string;
  classes: string[];
  onnxruntime_correct: number;
  test_images: number;
  example: { seed: number; count: number };
  expected_output: number[][];
  tolerance: number;
}

/** The fixture's example images: uint8 [N, H, W, 3] from the LCG (byte = s >> 24), as bench/export-keras.py's lcg_images. */
function exampleBytes(n: number, seed: number): Uint8Array {
  let s = seed;
  return Uint8Array.from({ length: n }, () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s >>> 24;
  });
}

/** uint8 [N, H, W, C] -> pixels in 0..1 as float32 [N, C, H, W] (cnnlab's image input). */
function planar(bytes: Uint8Array, [n, h, w, c]: number[]): Float32Array {
  const out = new Float32Array(bytes.length);
  for (let i = 0; i < n; i++) for (let p = 0; p < h * w; p++) for (let ch = 0; ch < c; ch++) out[((i * c + ch) * h * w) + p] = bytes[(i * h * w + p) * c + ch] / 255;
  return out;
}

/** [N, C, H, W] -> [N, H, W, C], normalised as eval feeds a foreign model: (x - mean) / std, per channel where given so. */
function channelsLast(x: Float32Array, [n, c, h, w]: number[], mean: number | number[], std: number | number[]): Float32Array {
  const at = (v: number | number[], ch: number) => (Array.isArray(v) ? v[ch] : v);
  const out = new Float32Array(x.length);
  for (let i = 0; i < n; i++) for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) out[(i * h * w + p) * c + ch] = (x[(i * c + ch) * h * w + p] - at(mean, ch)) / at(std, ch);
  return out;
}

/** A normalisation as --normalize writes it: `0.5,0.5` or `M1,M2,M3/S1,S2,S3`. */
const flag = (mean: number | number[], std: number | number[]) => (Array.isArray(mean) ? `${mean.join(',')}/${[std].flat().join(',')}` : `${mean},${std}`);

/** The output of cnnlab's inference graph that holds what the file's output holds (a final Softmax's probabilities, or logits). */
const scoresOf = (m: Model) => (m.source?.outputKind === 'probabilities' ? 'probabilities' : 'logits');

const worstDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => Math.max(...Array.from(a, (v, i) => Math.abs(v - b[i])));

/** Each fixture, and the note replacing its head gives (the head's op, and a Flatten's Reshape given the new count). */
const CASES = [
  { file: 'keras_mobilenet_v2.onnx', exporter: 'tf2onnx (Keras 3 MobileNetV2)', head: /replaced the head, MatMul node \S+ \(3 classes\), by a new MatMul \+ Add of 2: .* PyTorch initialises it$/ },
  { file: 'keras_mobilenet_v3_small.onnx', exporter: 'tf2onnx (Keras 3 MobileNetV3-Small)', head: /replaced the head, Conv node \S+ \(3 classes\), by a new Conv of 2: .*; Reshape MobileNetV3Small_1\/flatten_1\/Reshape to 2 classes$/ },
  { file: 'jax_flax_cnn.onnx', exporter: 'jax2onnx (Flax NNX CNN, opset 23, BatchNormalization and Dropout)', head: /replaced the head, Gemm node node_Gemm_29 \(3 classes\), by a new Gemm of 2: const_19 \[32, 2\], const_20 \[2\], .* PyTorch initialises it$/ },
];

for (const c of CASES) {
  const path = join(DIR, c.file);
  const facts = JSON.parse(readFileSync(path.replace(/\.onnx$/, '.json'), 'utf8')) as Facts;
  const [h, w] = facts.input_size;
  const [mean, std] = facts.normalize;
  const load = (): Model => importOnnxModel(readOnnxFile(path, readFileSync(path)).bytes, path);
  const example = () => planar(exampleBytes(facts.example.count * h * w * 3, facts.example.seed), [facts.example.count, h, w, 3]);

  describe(`${c.exporter}: ${c.file}`, () => {
    it("cnnlab's forward graph (normalisation inside, channels-last input transposed) gives onnxruntime's outputs on the example images", async () => {
      const model = load();
      checkTrainable(model);
      assert.deepEqual(model.inputShape, [3, h, w]);
      assert.equal(model.source?.channelsLast, true);
      const session = await ort.InferenceSession.create(buildInferenceModel(model, initial(model), { ...META, mean, std }));
      const y = (await session.run({ image: new ort.Tensor('float32', example(), [facts.example.count, 3, h, w]) }))[scoresOf(model)].data as Float32Array;
      const worst = worstDifference(facts.expected_output.flat(), y);
      assert.ok(worst <= facts.tolerance, `cnnlab's forward differs from onnxruntime's by ${worst}`);
    });

    it(`eval on the fixture's test images with --normalize ${flag(mean, std)} counts onnxruntime's ${facts.onnxruntime_correct} of ${facts.test_images} correct`, async () => {
      const m = loadInferenceModel(path, { normalize: { mean, std } });
      const env = { ...process.env, XDG_CACHE_HOME: mkdtempSync(join(tmpdir(), 'cnnlab-exporters-cache-')) };
      const data = await loadImageFolder(join(DIR, facts.data), m.input.shape, { env, progress: false, conversion: m.conversion });
      assert.deepEqual(data.info.classes, facts.classes);
      const rt = await createRuntime({ ep: 'cpu', threads: 1 });
      const report = await evaluateInference(rt, await openModelSession(rt, m), m, data.test);
      assert.equal(report.count, facts.test_images);
      assert.equal(Math.round(report.accuracy * report.count), facts.onnxruntime_correct);
    });

    it('two SGD steps (the whole model, then a new 2-class head on a frozen backbone: only the head moves) write back a file onnxruntime loads with the trained values, under its own interface', async () => {
      const model = load();
      const { model: two, note } = replaceHead(model, 2);
      assert.match(note, c.head);
      const head = headParams(two);
      for (const [m, frozen] of [[model, undefined], [two, new Set(two.params.filter((p) => p.trainable && !head.has(p.name)).map((p) => p.name))]] as const) {
        const start = new Map(m.params.map((p) => [p.name, p.init.kind === 'given' ? p.init.data : new Float32Array(p.shape.reduce((a, d) => a * d, 1)).fill(0.01)]));
        // A small step for the whole network: these overconfident nets diverge on made-up images at 0.05 (a second loss of 2e5, measured).
        const { built, losses, after } = await twoSteps(m, start, { lr: frozen ? 0.05 : 0.001, momentum: 0.9, frozen });
        assert.ok(Array.from(losses).every(Number.isFinite), `losses ${Array.from(losses)}`);
        const params = new Map(m.params.map((p) => [p.name, after.get(p.name)!.data as Float32Array]));
        const moved = m.params.filter((p) => params.get(p.name)!.some((v, i) => v !== start.get(p.name)![i])).map((p) => p.name);
        if (frozen) assert.deepEqual(moved.sort(), [...head].sort());
        else assert.ok(moved.length > m.params.length / 2, `${moved.length} of ${m.params.length} tensors moved`);

        const file = join(mkdtempSync(join(tmpdir(), 'cnnlab-exporters-')), 'trained.onnx');
        writeOnnxFile(file, built.inference(params), 'inline');
        const back = decodeGraph(readFileSync(file)).graph;
        const original = decodeGraph(readFileSync(path)).graph;
        assert.deepEqual(back.inputs.map((i) => [i.name, i.shape?.slice(1)]), original.inputs.map((i) => [i.name, i.shape?.slice(1)]));
        assert.deepEqual(back.outputs.map((o) => o.name), original.outputs.map((o) => o.name));
        // The written file, fed channels-last as its user feeds it, against cnnlab's forward graph on the trained values.
        const n = facts.example.count;
        const x = example();
        const theirs = await ort.InferenceSession.create(readFileSync(file));
        const y = (await theirs.run({ [back.inputs[0].name]: new ort.Tensor('float32', channelsLast(x, [n, 3, h, w], mean, std), [n, h, w, 3]) }))[back.outputs[0].name];
        assert.deepEqual(y.dims, [n, m.classes]);
        const ours = await ort.InferenceSession.create(buildInferenceModel(m, params, { ...META, mean, std }));
        const expected = (await ours.run({ image: new ort.Tensor('float32', x, [n, 3, h, w]) }))[scoresOf(m)].data as Float32Array;
        const worst = worstDifference(expected, y.data as Float32Array);
        assert.ok(worst <= facts.tolerance, `the written model differs from the trained values' forward by ${worst}`);
      }
    });
  });
}

describe("a Flatten's Reshape after a replaced head", () => {
  const path = join(DIR, 'keras_mobilenet_v3_small.onnx');
  /** The fixture's graph in `edit`'s form, imported, its head made 5 wide, compiled: the trained model's graph and a session of it. */
  const fiveWide = async (edit: (g: Graph, flatten: Graph['nodes'][number]) => void) => {
    const g = decodeGraph(readFileSync(path)).graph;
    const flatten = g.nodes.find((n) => n.name === 'MobileNetV3Small_1/flatten_1/Reshape')!;
    edit(g, flatten);
    const { model: five } = replaceHead(importOnnxModel(encodeModel(g, { opset: 17 }), 'edited.onnx'), 5);
    const built = compile(five, { optimizer: defaultOptimizer('sgd', 0, false), loss: 'cross-entropy', meta: META });
    const params = new Map(five.params.map((p) => [p.name, p.init.kind === 'given' ? p.init.data : new Float32Array(p.shape.reduce((a, d) => a * d, 1)).fill(0.01)]));
    const bytes = built.inference(params);
    const y = await (await ort.InferenceSession.create(bytes)).run({ input: new ort.Tensor('float32', new Float32Array(2 * 32 * 48 * 3), [2, 32, 48, 3]) });
    assert.deepEqual(y.output.dims, [2, 5]);
    return { out: decodeGraph(bytes).graph, flatten };
  };

  it("a Transpose to channels-last between a Conv head and the Reshape (tf2onnx's form for a Conv without bias) moves the class axis the Reshape's new count follows", async () => {
    const { out, flatten } = await fiveWide((g, flatten) => {
      const conv = g.nodes.find((n) => n.outputs[0] === flatten.inputs[0])!;
      g.nodes.splice(g.nodes.indexOf(flatten), 0, { op: 'Transpose', name: 'to_nhwc', inputs: [conv.outputs[0]], outputs: ['logits_nhwc'], attrs: { perm: attr.ints([0, 2, 3, 1]) } });
      flatten.inputs[0] = 'logits_nhwc';
    });
    assert.deepEqual(Array.from(out.initializers.find((t) => t.name === flatten.inputs[1])!.data as BigInt64Array, Number), [-1, 5]);
  });

  it('a target shape the file shares with another node stays as it was for that node; the Reshape after the head reads a new one with the new class count', async () => {
    const { out, flatten } = await fiveWide((g, flatten) => {
      g.nodes.push({ op: 'Identity', name: 'reads_the_target_too', inputs: [flatten.inputs[1]], outputs: ['the_target_too'], attrs: {} });
    });
    const values = (name: string) => Array.from(out.initializers.find((t) => t.name === name)!.data as BigInt64Array, Number);
    assert.deepEqual(values(flatten.inputs[1]), [-1, 3]);
    const reshape = out.nodes.find((n) => n.name === flatten.name)!;
    assert.notEqual(reshape.inputs[1], flatten.inputs[1]);
    assert.deepEqual(values(reshape.inputs[1]), [-1, 5]);
  });
});
