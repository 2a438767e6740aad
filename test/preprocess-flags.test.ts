import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { CnnlabError } from '../common/errors.ts';
import { imageToPlanes, loadImageFolder } from '../datasets/folder.ts';
import { initialCheckpoint, readImageConversion, readPreparation } from '../graph-builder/artifacts/compile.ts';
import { buildInferenceModel, type ModelMeta } from '../graph-builder/artifacts/inference.ts';
import { buildTrainStepModel } from '../graph-builder/artifacts/train-step.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { conv2d, flatten, linear, sequential } from '../graph-builder/dsl/layers.ts';
import { modelFromLayers } from '../graph-builder/dsl/to-model.ts';
import { emitNormalize } from '../graph-builder/forward.ts';
import { GraphBuilder } from '../graph-builder/graph/ir.ts';
import { decodeGraph, encodeModel } from '../graph-builder/graph/onnx.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { loadInferenceModel } from '../inference/model.ts';
import { createRuntime } from '../runtime/ort.ts';
import { StepRunner } from '../runtime/step-runner.ts';
import { parseNormalize } from '../training/flags.ts';
import { TorchStyleExport } from './helpers/onnx-export.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const tmp = () => mkdtempSync(join(tmpdir(), 'cnnlab-prep-'));

/** The CLI in a fresh process, in a folder of its own (eval writes misclassified.png into the current folder). */
function cnnlab(args: string[], cache: string) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd: tmp(), env: { ...process.env, XDG_CACHE_HOME: cache, CNNLAB_OFFLINE: '1' } });
}

/** A w x h PNG of equal vertical bands, left to right, each one colour ([r, g, b]). */
function bands(w: number, h: number, colours: [number, number, number][]): Promise<Buffer> {
  const raw = Buffer.alloc(w * h * 3);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) raw.set(colours[Math.min(colours.length - 1, Math.floor((x * colours.length) / w))], (y * w + x) * 3);
  }
  return sharp(raw, { raw: { width: w, height: h, channels: 3 } }).png().toBuffer();
}

const RED: [number, number, number] = [255, 0, 0];
const GREEN: [number, number, number] = [0, 255, 0];
const BLUE: [number, number, number] = [0, 0, 255];

const planeMean = (planes: Uint8Array, c: number, n: number) => planes.subarray(c * n, (c + 1) * n).reduce((a, b) => a + b, 0) / n;

/** DIR/{train,test}/{red,green,blue}/: 2:1 pictures whose centre half is the class's colour and whose sides are the other two. */
async function colourFolder(n: number, m: number): Promise<string> {
  const dir = join(tmp(), 'colours');
  const classes = { red: [GREEN, RED, RED, BLUE], green: [RED, GREEN, GREEN, BLUE], blue: [GREEN, BLUE, BLUE, RED] } as const;
  for (const [split, count] of [['train', n], ['test', m]] as const) {
    for (const [name, colours] of Object.entries(classes)) {
      mkdirSync(join(dir, split, name), { recursive: true });
      for (let i = 0; i < count; i++) writeFileSync(join(dir, split, name, `${i}.png`), await bands(24 + 6 * i, 12 + 3 * i, [...colours]));
    }
  }
  return dir;
}

describe('--normalize per channel', () => {
  it('reads MEAN,STD and M1,M2,M3/S1,S2,S3; a bad value is one line naming the flag', () => {
    assert.deepEqual(parseNormalize('0.1307,0.3081'), { mean: 0.1307, std: 0.3081 });
    assert.deepEqual(parseNormalize('0.485,0.456,0.406/0.229,0.224,0.225'), { mean: [0.485, 0.456, 0.406], std: [0.229, 0.224, 0.225] });
    assert.deepEqual(parseNormalize('0.5/0.25'), { mean: 0.5, std: 0.25 });
    for (const bad of ['1,2,3', '0.5,0', '0.5', 'a,b', '0.1,0.2,0.3/0.1,0.2', '0.1,0.2/0.1,-1', '1/2/3', '0.1,,0.2/1,1,1']) {
      assert.throws(
        () => parseNormalize(bad),
        (e: unknown) => e instanceof CnnlabError && e.exitCode === 2 && e.message.startsWith('--normalize: expected MEAN,STD or M1,M2,M3/S1,S2,S3') && !e.message.includes('\n'),
        bad,
      );
    }
  });

  it('inside the train step gives the loss of pixels normalised by hand', async () => {
    const model = modelFromLayers({ ...sequential(conv2d(3, 2, 3, { padding: 1 }), flatten(), linear(32, 3)), input: [3, 4, 4] }, 'rgb-probe');
    const mean = [0.5, 0.4, 0.3];
    const std = [0.2, 0.25, 0.3];
    const meta: ModelMeta = { architecture: 'rgb-probe', dataset: 'probe', classes: ['a', 'b', 'c'], mean, std };
    const params = initParams(model, 3);
    const B = 6;
    const images = Uint8Array.from({ length: B * 48 }, (_, i) => (i * 97 + 13) % 256);
    const labels = Uint8Array.from({ length: B }, (_, i) => i % 3);
    const { bytes, iface } = buildTrainStepModel(model, { optimizer: defaultOptimizer('sgd'), loss: 'cross-entropy', meta, target: 'cpu' });
    // The Loop body's constants included: one [1, C, 1, 1] constant each for the means and the stds.
    assert.equal(JSON.stringify(decodeGraph(bytes).graph, (_, v: unknown) => (typeof v === 'bigint' ? String(v) : v)).split('"dims":[1,3,1,1]').length - 1, 2);
    const rt = await createRuntime({ ep: 'cpu', threads: 1 });
    const runner = await StepRunner.create(rt, bytes, iface, initialCheckpoint(iface, params, {}));
    const { losses } = await runner.run({ K: 1, B, inputs: { images, labels, lr: Float32Array.of(0), momentum: Float32Array.of(0), dropout_seed: BigInt64Array.of(0n) } });

    // The same parameters with no normalisation inside, fed pixels normalised by hand.
    const plain = await ort.InferenceSession.create(buildInferenceModel(model, params, { ...meta, mean: 0, std: 1 }));
    const x = Float32Array.from(images, (v, i) => (v / 255 - mean[Math.floor(i / 16) % 3]) / std[Math.floor(i / 16) % 3]);
    const logits = (await plain.run({ image: new ort.Tensor('float32', x, [B, 3, 4, 4]) })).logits.data as Float32Array;
    let loss = 0;
    for (let i = 0; i < B; i++) {
      const row = Array.from(logits.subarray(3 * i, 3 * i + 3));
      const max = Math.max(...row);
      loss += Math.log(row.reduce((a, v) => a + Math.exp(v - max), 0)) + max - row[labels[i]];
    }
    assert.ok(Math.abs(losses[0] - loss / B) < 1e-5, `train step ${losses[0]}, by hand ${loss / B}`);
  });

  it('keeps a scalar normalisation as two scalar constants (the graphs of presets stay as they were)', () => {
    const b = new GraphBuilder('probe');
    const x = b.input('x', 'float32', ['N', 1, 2, 2]);
    emitNormalize(b, x, 0.1307, 0.3081);
    const dims = b.graph.nodes.filter((n) => n.op === 'Constant').map((n) => (n.attrs.value as { value: { dims: number[] } }).value.dims);
    assert.deepEqual(dims, [[], []]);
  });

  it('metadata: cnnlab.preprocess reads old scalar files and lists per channel; cnnlab.image is checked', () => {
    assert.deepEqual(readPreparation({ 'cnnlab.preprocess': '{"range":1,"mean":0.5,"std":0.5}' }, 'm.onnx'), { range: 1, mean: 0.5, std: 0.5 });
    assert.deepEqual(readPreparation({ 'cnnlab.preprocess': '{"range":255,"mean":[1,2,3],"std":[4,5,6]}' }, 'm.onnx'), { range: 255, mean: [1, 2, 3], std: [4, 5, 6] });
    assert.throws(() => readPreparation({ 'cnnlab.preprocess': '{"range":1,"mean":[1,2,3],"std":[4,0,6]}' }, 'm.onnx'), /m\.onnx: metadata cnnlab\.preprocess is not/);
    assert.deepEqual(readImageConversion({}, 'm.onnx'), {});
    assert.deepEqual(readImageConversion({ 'cnnlab.image': '{"channelOrder":"bgr","resize":"crop","size":[48,192]}' }, 'm.onnx'), { channelOrder: 'bgr', resize: 'crop', size: [48, 192] });
    assert.throws(() => readImageConversion({ 'cnnlab.image': '{"channelOrder":"grb"}' }, 'm.onnx'), /m\.onnx: metadata cnnlab\.image is not/);
  });
});

describe('--channel-order and --resize', () => {
  it('bgr swaps the planes of a red image', async () => {
    const red = await sharp({ create: { width: 10, height: 6, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
    const rgb = await imageToPlanes(red, [3, 4, 4]);
    const bgr = await imageToPlanes(red, [3, 4, 4], { channelOrder: 'bgr' });
    assert.deepEqual([0, 1, 2].map((c) => planeMean(rgb, c, 16)), [255, 0, 0]);
    assert.deepEqual([0, 1, 2].map((c) => planeMean(bgr, c, 16)), [0, 0, 255]);
    await assert.rejects(imageToPlanes(red, [1, 4, 4], { channelOrder: 'bgr' }), /--channel-order: bgr applies to a 3-channel/);
  });

  it('crop keeps the centre of a 2:1 image, as Resize(shorter side) + CenterCrop; stretch keeps all of it', async () => {
    // Red, green and blue from left to right, the green band the middle half: a square crop's width.
    const strip = await bands(60, 30, [RED, GREEN, GREEN, BLUE]);
    const crop = await imageToPlanes(strip, [3, 8, 8], { resize: 'crop' });
    const [r, g, b] = [0, 1, 2].map((c) => planeMean(crop, c, 64));
    assert.ok(g > 240 && r < 15 && b < 15, `the crop is green: ${[r, g, b]}`);
    const stretched = await imageToPlanes(strip, [3, 8, 8]);
    const all = [0, 1, 2].map((c) => planeMean(stretched, c, 64));
    assert.ok(Math.abs(all[0] - 64) < 10 && Math.abs(all[1] - 128) < 10 && Math.abs(all[2] - 64) < 10, `a quarter red, a half green, a quarter blue: ${all}`);
    // A wide target on a tall image: scaled to cover 4x8, the middle rows kept.
    const tall = await sharp(await bands(60, 30, [RED, GREEN, GREEN, BLUE])).rotate(90).png().toBuffer();
    const wide = await imageToPlanes(tall, [3, 4, 8], { resize: 'crop' });
    assert.ok(planeMean(wide, 1, 32) > 240, 'rotated strip: the centre band again');
  });

  it('are part of the image-folder cache key', async () => {
    const dir = await colourFolder(1, 1);
    const env = { HOME: tmp() };
    const plain = await loadImageFolder(dir, [3, 8, 8], { env, progress: false, warn: () => {} });
    const swapped = await loadImageFolder(dir, [3, 8, 8], { env, progress: false, warn: () => {}, conversion: { channelOrder: 'bgr', resize: 'crop' } });
    assert.notEqual(plain.cacheFile, swapped.cacheFile);
    assert.match(swapped.cacheFile, /-3x8x8-bgr-crop-[0-9a-f]{16}\.bin$/);
    assert.equal(swapped.cached, false);
    const label = Array.from(swapped.train.labels).indexOf(2); // red (classes: blue, green, red)
    assert.ok(planeMean(swapped.train.images.subarray(label * 192, label * 192 + 192), 2, 64) > 200, 'red in the last plane');
  });
});

describe('a model trained with its own preprocessing', () => {
  const FLAGS = ['--normalize', '0.5,0.4,0.3/0.2,0.25,0.3', '--channel-order', 'bgr', '--resize', 'crop'];

  it('records it in its metadata; predict and eval reuse it without flags; resume refuses a change', async () => {
    const dir = await colourFolder(4, 2);
    const work = tmp();
    const cache = tmp();
    const arch = join(work, 'rgb.json');
    const layers = [{ kind: 'conv2d', inChannels: 3, outChannels: 4, kernel: 3, padding: 1 }, { kind: 'relu' }, { kind: 'maxPool2d', kernel: 2 }, { kind: 'flatten' }, { kind: 'linear', inFeatures: 64, outFeatures: 3 }];
    writeFileSync(arch, JSON.stringify({ input: [3, 8, 8], layers }));
    const out = join(work, 'run');
    const train = cnnlab(['train', '--arch-file', arch, '--data-dir', dir, '--epochs', '1', '--batch', '4', '--val-split', '0', '--out', out, ...FLAGS], cache);
    assert.equal(train.status, 0, train.stderr);
    assert.match(train.stdout, /input: \(x - \[0\.5, 0\.4, 0\.3\]\) \/ \[0\.2, 0\.25, 0\.3\]; images read as BGR planes, resized to cover the input and centre-cropped/);
    const { metadata } = decodeGraph(readFileSync(join(out, 'best.onnx')));
    assert.deepEqual(JSON.parse(metadata['cnnlab.normalization']), { mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] });
    assert.deepEqual(JSON.parse(metadata['cnnlab.image']), { channelOrder: 'bgr', resize: 'crop' });

    const probe = join(work, 'probe.png');
    writeFileSync(probe, await bands(40, 20, [RED, GREEN, BLUE]));
    const said = cnnlab(['predict', probe, '--model', out], cache);
    assert.equal(said.status, 0, said.stderr);
    assert.match(said.stdout, /normalised inside the model by \(x - \[0\.5, 0\.4, 0\.3\]\) \/ \[0\.2, 0\.25, 0\.3\]; images read as BGR planes, resized to cover the input and centre-cropped \(from its metadata\)/);
    const predicted = cnnlab(['predict', probe, '--model', out, '--json'], cache);
    assert.equal(predicted.status, 0, predicted.stderr);
    const top = (JSON.parse(predicted.stdout) as { results: { top: { label: number; probability: number }[] }[] }).results[0].top;
    // onnxruntime on the same pixels: BGR planes of the crop, 0..1 (the model normalises inside).
    const planes = await imageToPlanes(probe, [3, 8, 8], { channelOrder: 'bgr', resize: 'crop' });
    const session = await ort.InferenceSession.create(join(out, 'best.onnx'));
    const probs = (await session.run({ image: new ort.Tensor('float32', Float32Array.from(planes, (v) => v / 255), [1, 3, 8, 8]) })).probabilities.data as Float32Array;
    for (const t of top) assert.ok(Math.abs(t.probability - probs[t.label]) < 1e-5, `class ${t.label}: predict ${t.probability}, onnxruntime ${probs[t.label]}`);

    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { testAcc: number });
    const evaluated = cnnlab(['eval', out, '--json'], cache);
    assert.equal(evaluated.status, 0, evaluated.stderr);
    assert.ok(Math.abs((JSON.parse(evaluated.stdout) as { accuracy: number }).accuracy - metrics[0].testAcc) < 1e-6, 'eval reads the images as the run did');

    const resumed = cnnlab(['train', '--resume', '--out', out, '--channel-order', 'rgb'], cache);
    assert.equal(resumed.status, 2);
    assert.match(resumed.stderr, /--resume: --channel-order rgb would change what the run/);
  });

  it('an imported model: prepared on the host as cnnlab.preprocess and cnnlab.image record, as onnxruntime sees it', async () => {
    const dir = await colourFolder(4, 2);
    const work = tmp();
    const cache = tmp();
    const e = new TorchStyleExport(5);
    const conv = e.op('Relu', e.conv('conv1', 'input', 3, 2, 2, { stride: 2 }));
    const file = join(work, 'rgb.onnx');
    writeFileSync(file, e.build(e.gemm('fc', e.viewBatch(conv), 2 * 14 * 14, 3), { channels: 3, classes: 3 }));
    const out = join(work, 'run');
    const train = cnnlab(['train', '--model', file, '--data-dir', dir, '--epochs', '1', '--batch', '4', '--val-split', '0', '--out', out, ...FLAGS], cache);
    assert.equal(train.status, 0, train.stderr);
    const trained = join(out, 'best.onnx');
    const { metadata, graph } = decodeGraph(readFileSync(trained));
    assert.deepEqual(JSON.parse(metadata['cnnlab.preprocess']), { range: 1, mean: [0.5, 0.4, 0.3], std: [0.2, 0.25, 0.3] });
    assert.deepEqual(JSON.parse(metadata['cnnlab.image']), { channelOrder: 'bgr', resize: 'crop', size: [28, 28] });

    const probe = join(work, 'probe.png');
    writeFileSync(probe, await bands(40, 20, [RED, GREEN, BLUE]));
    const said = cnnlab(['predict', probe, '--model', trained], cache);
    assert.equal(said.status, 0, said.stderr);
    assert.match(said.stdout, /pixels 0\.\.1, then \(x - \[0\.5, 0\.4, 0\.3\]\) \/ \[0\.2, 0\.25, 0\.3\] \(from its metadata\); images read as BGR planes, resized to cover the input and centre-cropped/);
    const predicted = cnnlab(['predict', probe, '--model', trained, '--json'], cache);
    assert.equal(predicted.status, 0, predicted.stderr);
    const top = (JSON.parse(predicted.stdout) as { results: { top: { label: number; probability: number }[] }[] }).results[0].top;
    const planes = await imageToPlanes(probe, [3, 28, 28], { channelOrder: 'bgr', resize: 'crop' });
    const mean = [0.5, 0.4, 0.3];
    const std = [0.2, 0.25, 0.3];
    const x = Float32Array.from(planes, (v, i) => (v / 255 - mean[Math.floor(i / 784)]) / std[Math.floor(i / 784)]);
    const session = await ort.InferenceSession.create(trained);
    const logits = Array.from((await session.run({ input: new ort.Tensor('float32', x, [1, 3, 28, 28]) })).output.data as Float32Array);
    const max = Math.max(...logits);
    const sum = logits.reduce((a, v) => a + Math.exp(v - max), 0);
    for (const t of top) assert.ok(Math.abs(t.probability - Math.exp(logits[t.label] - max) / sum) < 1e-5, `class ${t.label}`);

    // The same model with a symbolic input size: the metadata gives the size trained at.
    graph.inputs[0].shape = ['batch', 3, 'height', 'width'];
    const symbolic = join(work, 'symbolic.onnx');
    writeFileSync(symbolic, encodeModel(graph, { metadata, opset: decodeGraph(readFileSync(trained)).opset }));
    const loaded = loadInferenceModel(symbolic);
    assert.deepEqual(loaded.input.shape, [3, 28, 28]);
    assert.deepEqual(loaded.conversion, { channelOrder: 'bgr', resize: 'crop' });
  });

  it('bad values are one line naming the flag', async () => {
    const dir = await colourFolder(1, 1);
    const cache = tmp();
    const cases: [string[], RegExp][] = [
      [['--normalize', '1,2,3'], /^cnnlab: --normalize: expected MEAN,STD or M1,M2,M3\/S1,S2,S3/],
      [['--channel-order', 'grb'], /^cnnlab: --channel-order: expected one of rgb, bgr/],
      [['--resize', 'fit'], /^cnnlab: --resize: expected one of stretch, crop/],
      [['--normalize', '0.5,0.4,0.3/0.2,0.2,0.2'], /^cnnlab: --normalize: 3 values per channel for a 1-channel model/],
      [['--channel-order', 'bgr'], /^cnnlab: --channel-order: bgr applies to a 3-channel \(RGB\) model; this one takes 1 channel/],
    ];
    for (const [flags, message] of cases) {
      const r = cnnlab(['train', 'partA', '--data-dir', dir, '--epochs', '1', '--out', join(tmp(), 'r'), ...flags], cache);
      assert.equal(r.status, 2, `${flags.join(' ')}: ${r.stderr}`);
      assert.equal(r.stderr.trim().split('\n').length, 1, r.stderr);
      assert.match(r.stderr, message);
    }
    const mnist = cnnlab(['train', 'partA', '--epochs', '1', '--resize', 'crop', '--out', join(tmp(), 'r')], cache);
    assert.equal(mnist.status, 2);
    assert.match(mnist.stderr, /--resize: applies to image folders/);

    // eval, predict and serve: the same checks against the model's input.
    const grey = join(tmp(), 'grey.onnx');
    const model = modelFromLayers({ ...sequential(flatten(), linear(16, 3)), input: [1, 4, 4] }, 'grey');
    writeFileSync(grey, buildInferenceModel(model, initParams(model, 0), { architecture: 'grey', dataset: 'mnist', classes: ['a', 'b', 'c'], mean: 0, std: 1 }));
    assert.throws(() => loadInferenceModel(grey, { channelOrder: 'bgr' }), /--channel-order: bgr applies to a 3-channel \(RGB\) input; this one takes 1 channel$/);
    const probe = join(tmp(), 'p.png');
    writeFileSync(probe, await bands(8, 8, [RED]));
    const p = cnnlab(['predict', probe, '--model', grey, '--normalize', '0.5,0.4,0.3/0.2,0.2,0.2'], cache);
    assert.equal(p.status, 2);
    assert.match(p.stderr, /^cnnlab: --normalize: 3 values per channel for a 1-channel model/);
  });
});
