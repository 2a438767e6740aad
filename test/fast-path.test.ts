/**
 * The frozen-backbone fast path: a model cut at its head (graph-builder/split.ts) computes the
 * same function as the whole model, and its head's train step the same losses as the full
 * graph's with the backbone frozen; fit trains on cached features and writes the whole model.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { readCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { loadRunArchitecture, resolveRunConfig, withMeasuredStats } from '../training/config.ts';
import { fit, readMetrics } from '../training/fit.ts';
import type { TrainFlags } from '../training/flags.ts';
import { chosenEpoch } from '../training/run-folder.ts';
import { readScalars } from '../training/tensorboard.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams, type ParamSet } from '../graph-builder/dsl/init.ts';
import { frozenParams } from '../graph-builder/freeze.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import type { Model } from '../graph-builder/model.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { featuresGraph, splitAtHead } from '../graph-builder/split.ts';
import { createRuntime } from '../runtime/ort.ts';
import { type StepBatch, StepRunner } from '../runtime/step-runner.ts';

const FAMILIES = join(import.meta.dirname, 'fixtures', 'families');
const META = { architecture: 'fixture', dataset: 'folder', classes: [], mean: 0.5, std: 0.25 };

function load(file: string): Model {
  const path = join(FAMILIES, file);
  const { bytes, layout } = readOnnxFile(path, readFileSync(path));
  return importOnnxModel(bytes, path, { layout });
}

const initial = (m: Model): ParamSet => new Map(m.params.map((p) => [p.name, (p.init as { data: Float32Array }).data]));
const size = (shape: number[]) => shape.reduce((a, d) => a * d, 1);
const maxDiff = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i])), 0);

/** K steps of B made-up uint8 images (or the features given instead), SGD lr 0.05 with momentum 0.9. */
function batch(model: Model, K: number, B: number, features?: Float32Array): StepBatch {
  const images = features ?? Uint8Array.from({ length: K * B * size(model.inputShape) }, (_, i) => (i * 7919) % 251);
  return {
    K,
    B,
    inputs: {
      images,
      labels: Uint8Array.from({ length: K * B }, (_, i) => (i * 5) % model.classes),
      lr: new Float32Array(K).fill(0.05),
      momentum: new Float32Array(K).fill(0.9),
      dropout_seed: BigInt64Array.from({ length: K }, (_, i) => BigInt(i + 1)),
    },
  };
}

async function run(session: ort.InferenceSession, feeds: Record<string, ort.Tensor>, output: string): Promise<Float32Array> {
  return (await session.run(feeds))[output].data as Float32Array;
}

describe('a model cut at its head', () => {
  // Imported models (their inference graph takes the input prepared outside) and cnnlab's own (0..1 pixels, normalised inside).
  const cases = [...['mobilenet_v2.onnx', 'resnet18.onnx', 'squeezenet1_1.onnx', 'tf2onnx_style.onnx'], ...['partB', 'eva-step2', 'jhu-net']];
  for (const name of cases) {
    it(`${name}: features then head give the whole model's logits, and the head's train step the full frozen graph's losses and head weights`, async () => {
      const model = name.endsWith('.onnx') ? load(name) : (await loadArchitecture(name)).model;
      const frozen = frozenParams(model, 'backbone')!;
      const split = splitAtHead(model, frozen);
      const params = name.endsWith('.onnx') ? initial(model) : initParams(model, 5);
      const loss = model.outputKind === 'log-probabilities' ? ('nll' as const) : ('cross-entropy' as const);
      const opt = { optimizer: defaultOptimizer('sgd', 0, true, false), loss, meta: META, target: 'cpu' as const };
      const full = compile(model, { ...opt, frozen });
      const head = compile(split.head, { ...opt, frozen: new Set([...frozen].filter((n) => split.head.params.some((p) => p.name === n))) });
      const [K, B] = [3, 4];
      const images = batch(model, K, B).inputs.images as Uint8Array;

      // Inference: the features graph in the model's own input form, then the head, against the whole model.
      const x = Float32Array.from(images.subarray(0, B * size(model.inputShape)), (v) => (model.source ? (v / 255 - 0.5) / 0.25 : v / 255));
      const own = await ort.InferenceSession.create(featuresGraph(split, params, META, 'model'));
      const inputName = own.inputNames[0];
      const [c, h, w] = model.inputShape;
      const nhwc = model.source?.channelsLast;
      const xIn = nhwc ? Float32Array.from({ length: x.length }, (_, i) => x[Math.floor(i / (h * w * c)) * c * h * w + (i % c) * h * w + Math.floor((i % (h * w * c)) / c)]) : x;
      const feats = await run(own, { [inputName]: new ort.Tensor('float32', xIn, nhwc ? [B, h, w, c] : [B, c, h, w]) }, 'features');
      assert.equal(feats.length, B * size(split.featureShape));
      const headInf = await ort.InferenceSession.create(head.inference(params));
      const logits = await run(headInf, { features: new ort.Tensor('float32', feats, [B, ...split.featureShape]) }, 'logits');
      const whole = await ort.InferenceSession.create(full.inference(params));
      const expected = await run(whole, { [whole.inputNames[0]]: new ort.Tensor('float32', xIn, nhwc ? [B, h, w, c] : [B, c, h, w]) }, whole.outputNames[0]);
      assert.ok(maxDiff(logits, expected) < 1e-4, `logits differ by ${maxDiff(logits, expected)}`);

      // Training: features from uint8 images, then K head steps, against K full-graph steps.
      const bytes = await ort.InferenceSession.create(featuresGraph(split, params, META, 'bytes'));
      const features = await run(bytes, { images: new ort.Tensor('uint8', images, [K * B, ...(c === 1 ? [h, w] : [c, h, w])]) }, 'features');
      const rt = await createRuntime({ ep: 'cpu', threads: 1 });
      const fullRunner = await StepRunner.create(rt, full.trainStep, full.iface, full.initialCheckpoint(params));
      const headRunner = await StepRunner.create(rt, head.trainStep, head.iface, head.initialCheckpoint(params));
      const a = await fullRunner.run(batch(model, K, B));
      const b = await headRunner.run(batch(model, K, B, features));
      assert.ok(maxDiff(a.losses, b.losses) < 1e-5, `losses ${Array.from(a.losses)} vs ${Array.from(b.losses)}`);
      const fullAfter = fullRunner.tensors();
      for (const [name, t] of headRunner.tensors()) {
        if (t.dtype !== 'float32') continue;
        const [mine, theirs] = [t.data as Float32Array, fullAfter.get(name)!.data as Float32Array];
        // Relative to the tensor's largest value: float32 sums in another order (momentum buffers reach ~10).
        const scale = Math.max(1, ...Array.from(theirs, Math.abs));
        assert.ok(maxDiff(mine, theirs) < 1e-5 * scale, `${name} differs by ${maxDiff(mine, theirs)} (largest value ${scale})`);
      }
      await fullRunner.release();
      await headRunner.release();
    });
  }

  it('refuses, in one line naming the parameter, a cut with a trained parameter before it', () => {
    const model = load('resnet18.onnx');
    const frozen = frozenParams(model, 'backbone')!;
    const trained = [...frozen][0];
    assert.throws(() => splitAtHead(model, new Set([...frozen].filter((n) => n !== trained))), (e: Error) => e.message.includes(trained) && !e.message.includes('\n'));
  });

  it('refuses, in one line naming the node, a cut with a random Dropout before it', async () => {
    const model = (await loadArchitecture('partC')).model;
    assert.throws(() => splitAtHead(model), { message: 'partC: Dropout node dropout1_node before fc1 is random in training; its features cannot be computed once' });
  });
});

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
const MODEL = join(FAMILIES, 'mobilenet_v2.onnx');
// Every cache (image folders, features) of this file's runs lives in a folder of its own.
const CACHE = mkdtempSync(join(tmpdir(), 'cnnlab-fast-cache-'));
process.env.XDG_CACHE_HOME = CACHE;

/** DIR/train/<a|b|c>/ (n each) and DIR/test/<a|b|c>/ (m each): 32x32 RGB noise, tinted by class. */
async function noiseFolder(n: number, m: number): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'cnnlab-fast-')), 'noise');
  let s = 7;
  const next = () => (s = (Math.imul(s, 1664525) + 1013904223) >>> 0) >>> 24;
  for (const [split, count] of [['train', n], ['test', m]] as const) {
    for (const [k, cls] of ['a', 'b', 'c'].entries()) {
      mkdirSync(join(dir, split, cls), { recursive: true });
      for (let i = 0; i < count; i++) {
        const px = Uint8Array.from({ length: 32 * 32 * 3 }, (_, j) => (j % 3 === k ? 128 : 0) + (next() >> 1));
        writeFileSync(join(dir, split, cls, `${i}.png`), await sharp(px, { raw: { width: 32, height: 32, channels: 3 } }).png().toBuffer());
      }
    }
  }
  return dir;
}

const FLAGS: TrainFlags = { freeze: 'backbone', epochs: 2, batch: 4, 'val-split': 3, 'steps-per-run': 2, opt: 'sgd', lr: 0.01, momentum: 0.9, seed: 3, threads: 1, 'checkpoint-every': 0, normalize: '0.5,0.25' };

/** Trains the fixture MobileNetV2 on `dir` with FLAGS and `extra` (`stopAfterChunk`: asks to stop after the first chunk); returns the run folder and its log. */
async function train(dir: string, extra: TrainFlags = {}, o: { runDir?: string; resume?: boolean; stopAfterChunk?: boolean } = {}): Promise<{ runDir: string; log: string[] }> {
  const flags: TrainFlags = { ...FLAGS, 'data-dir': dir, ...extra };
  const arch = await loadRunArchitecture({ architecture: 'onnx', modelFile: MODEL, flags, dataset: 'folder:noise' });
  const cfg = resolveRunConfig(arch, await withMeasuredStats(arch, flags), undefined, MODEL);
  const runDir = o.runDir ?? join(mkdtempSync(join(tmpdir(), 'cnnlab-fast-run-')), 'run');
  const log: string[] = [];
  // fit reads `requested` after each chunk: the first read stops the run there.
  const stop = o.stopAfterChunk
    ? {
        get requested() {
          return true;
        },
      }
    : undefined;
  await fit(cfg, { runDir, resume: o.resume ?? false, progress: false, log: (l) => log.push(l), stop });
  return { runDir, log };
}

const stepLosses = (runDir: string) => {
  const events = readdirSync(runDir).find((f) => f.startsWith('events.out.tfevents'))!;
  return readScalars(readFileSync(join(runDir, events))).filter((s) => s.tag === 'step/loss');
};

describe('fit with a frozen backbone', () => {
  it('trains the head on features computed once: the same losses per step as the whole graph, the same test figures, best.onnx evaluates to the run’s test accuracy, and the log says so', async () => {
    const dir = await noiseFolder(10, 4);
    const fast = await train(dir);
    const full = await train(dir, { 'fast-path': false });
    assert.ok(fast.log.some((l) => /^frozen backbone: computed the features of 42 images once .* the epochs train the head alone on them$/.test(l)), fast.log.join('\n'));
    assert.ok(!full.log.some((l) => l.startsWith('frozen backbone:')));
    const [a, b] = [stepLosses(fast.runDir), stepLosses(full.runDir)];
    assert.equal(a.length, 14, '7 steps an epoch, 2 epochs');
    assert.deepEqual(a.map((s) => s.step), b.map((s) => s.step));
    // float32 sums in another order (the features run in batches of 32, the full graph in 4): step 1's
    // losses differ by ~2e-6 relative, and the difference grows with the SGD steps to ~2e-5 by step 14.
    const close = (x: number, y: number, tol = 1e-4) => Math.abs(x - y) <= tol * Math.max(1, Math.abs(y));
    assert.ok(close(a[0].value, b[0].value, 1e-5), `step 1: ${a[0].value} vs ${b[0].value}`);
    for (const [i, s] of a.entries()) assert.ok(close(s.value, b[i].value), `step ${s.step}: ${s.value} vs ${b[i].value}`);
    const [ma, mb] = [readMetrics(fast.runDir), readMetrics(full.runDir)];
    for (const [i, m] of ma.entries()) {
      assert.ok(close(m.testLoss, mb[i].testLoss) && m.testAcc === mb[i].testAcc && m.valAcc === mb[i].valAcc, `epoch ${m.epoch}: ${JSON.stringify(m)} vs ${JSON.stringify(mb[i])}`);
    }
    // The whole model's checkpoint: the frozen parameters as they were, bit for bit.
    const [ca, cb] = [readCheckpoint(join(fast.runDir, 'checkpoint.ckpt')), readCheckpoint(join(full.runDir, 'checkpoint.ckpt'))];
    assert.deepEqual([...ca.tensors.keys()].sort(), [...cb.tensors.keys()].sort());
    const frozen = frozenParams(load('mobilenet_v2.onnx'), 'backbone')!;
    for (const name of frozen) assert.deepEqual(ca.tensors.get(name)!.data, cb.tensors.get(name)!.data, name);
    const ev = spawnSync(process.execPath, [CLI, 'eval', fast.runDir, '--json', '--misclassified', join(fast.runDir, 'misclassified.png')], { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: CACHE } });
    assert.equal(ev.status, 0, ev.stderr);
    const report = JSON.parse(ev.stdout) as { accuracy: number; loss: number };
    const best = chosenEpoch(ma)!;
    assert.ok(Math.abs(report.accuracy - best.testAcc) < 1e-9, `eval ${report.accuracy}, the run's best epoch ${best.testAcc}`);
  });

  it('reads the features from the cache on a second run (the same losses, bit for bit) and computes them again when the folder or the preprocessing changes', async () => {
    const dir = await noiseFolder(6, 2);
    const first = await train(dir, { epochs: 1, 'val-split': 0 });
    const second = await train(dir, { epochs: 1, 'val-split': 0 });
    assert.ok(first.log.some((l) => l.startsWith('frozen backbone: computed the features of 24 images once')), first.log.join('\n'));
    assert.ok(second.log.some((l) => l.startsWith('frozen backbone: read the features of 24 images from the cache')), second.log.join('\n'));
    assert.deepEqual(stepLosses(second.runDir), stepLosses(first.runDir));
    writeFileSync(join(dir, 'train', 'a', 'extra.png'), await sharp({ create: { width: 32, height: 32, channels: 3, background: '#808080' } }).png().toBuffer());
    const changed = await train(dir, { epochs: 1, 'val-split': 0 });
    assert.ok(changed.log.some((l) => l.startsWith('frozen backbone: computed the features of 19 images once and read those of 6 from the cache')), changed.log.join('\n'));
    const renormalised = await train(dir, { epochs: 1, 'val-split': 0, normalize: '0.4,0.25' });
    assert.ok(renormalised.log.some((l) => l.startsWith('frozen backbone: computed the features of 25 images once')), 'another preprocessing misses');
  });

  it('a run stopped after its first chunk resumes to the uninterrupted run’s checkpoint, bit for bit', async () => {
    const dir = await noiseFolder(6, 2);
    const whole = await train(dir, { 'val-split': 0 });
    const stopped = await train(dir, { 'val-split': 0 }, { stopAfterChunk: true });
    const ckpt = readCheckpoint(join(stopped.runDir, 'checkpoint.ckpt'));
    assert.ok(Number(ckpt.meta.step) > 0 && Number(ckpt.meta.step) < 10, `stopped at step ${String(ckpt.meta.step)}`);
    await train(dir, { 'val-split': 0 }, { runDir: stopped.runDir, resume: true });
    const [want, got] = [readCheckpoint(join(whole.runDir, 'checkpoint.ckpt')), readCheckpoint(join(stopped.runDir, 'checkpoint.ckpt'))];
    assert.equal(got.meta.step, want.meta.step);
    for (const [name, t] of want.tensors) assert.deepEqual(Buffer.from(got.tensors.get(name)!.data.buffer), Buffer.from(t.data.buffer), name);
  });
});
