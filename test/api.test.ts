/** The programmatic API as a program uses it: `import { train, evaluate, ... } from 'cnnlab'` (here its source, index.ts). */
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { conv2d, evaluate, exportModel, flatten, type ImageSet, inspectModel, linear, maxPool2d, predict, relu, sequential, train, type EpochMetrics, type StepInfo, UsageError } from '../index.ts';

const root = mkdtempSync(join(tmpdir(), 'cnnlab-api-'));
const quiet = () => undefined;
const tiny = () => sequential(conv2d(1, 4, 3, { padding: 1 }), relu(), maxPool2d(2), flatten(), linear(4 * 14 * 14, 10));

/**
 * Two classes of 8x8 grey images anyone can tell apart: a bright left half (0) or a bright right
 * half (1), with noise from a fixed generator.
 */
function halves(count: number, seed: number): ImageSet {
  const images = new Uint8Array(count * 64);
  const labels = new Uint8Array(count);
  let s = seed;
  const noise = () => ((s = (s * 1103515245 + 12345) % 2147483648) % 60);
  for (let i = 0; i < count; i++) {
    labels[i] = i % 2;
    for (let p = 0; p < 64; p++) images[i * 64 + p] = ((p % 8 < 4) === (labels[i] === 0) ? 180 : 20) + noise();
  }
  return { images, labels, shape: [1, 8, 8] };
}

describe('train, evaluate, predict, export and inspect from code', () => {
  const out = join(root, 'run');
  const epochs: EpochMetrics[] = [];
  let accuracy = 0;

  it('train takes a DSL model built in code and the CLI flags in camelCase, calls back each epoch, and resolves with the run’s metrics and files', async () => {
    const r = await train({ model: { ...tiny(), name: 'tiny' }, dataset: 'mnist', limitTrain: 512, valSplit: 0, epochs: 2, batch: 64, opt: 'adam', lr: 2e-3, out, log: quiet, onEpochEnd: (m) => epochs.push(m) });
    assert.equal(r.runDir, out);
    assert.deepEqual(epochs.map((m) => m.epoch), [1, 2]);
    assert.deepEqual(r.epochs, epochs);
    assert.equal(r.best?.step, epochs.reduce((b, m) => (m.testAcc >= b.testAcc ? m : b)).step);
    assert.equal(r.interrupted, false);
    assert.equal(r.config.train.optimizer.name, 'adam');
    assert.ok(existsSync(r.models.best) && existsSync(r.models.last));
    // The model is written into its run folder, where resume and eval find it.
    assert.equal(JSON.parse(readFileSync(join(out, 'tiny.json'), 'utf8')).layers.length, 5);
    accuracy = r.best!.testAcc;
    assert.ok(accuracy > 0.5, `test accuracy ${accuracy}`);
  });

  it('evaluate reads the run folder and measures what training measured', async () => {
    const r = await evaluate({ model: out });
    assert.equal(r.count, 10000);
    assert.equal(r.dataset, 'mnist');
    assert.ok(Math.abs(r.accuracy - accuracy) < 1e-4, `${r.accuracy} vs ${accuracy}`);
    assert.equal(r.confusion.flat().reduce((a, b) => a + b, 0), 10000);
  });

  it('predict takes image files, encoded images and prepared pixels, and returns the top classes of each (a bad one named, the others classified)', async () => {
    const pixels = new Float32Array(784);
    for (let y = 4; y < 24; y++) pixels[y * 28 + 14] = 1;
    const png = await sharp(Buffer.from(Array.from(pixels, (v) => 255 - 255 * v)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
    const r = await predict([{ pixels, shape: [1, 28, 28] }, new Uint8Array(png), join(root, 'missing.png')], { model: out, top: 2 });
    assert.equal(r.results.length, 3);
    assert.equal(r.results[0].top?.length, 2);
    assert.equal(r.results[1].top?.length, 2);
    assert.ok(r.results[0].top![0].probability >= r.results[0].top![1].probability);
    assert.match(r.results[2].error ?? '', /missing\.png/);
  });

  it('exportModel writes the parameters and says where; inspectModel returns the report', () => {
    const e = exportModel(out, { format: 'npz', which: 'last' });
    assert.equal(e.file, join(out, 'last.npz'));
    assert.ok(existsSync(e.file));
    assert.equal(e.tensors, 4);
    const i = inspectModel(join(out, 'best.onnx'));
    assert.match(i.report, /conv/i);
  });
});

describe('images in memory', () => {
  it('train and evaluate take images in memory: labels are the classes, and the run keeps them in its folder', async () => {
    const model = sequential(conv2d(1, 4, 3, { padding: 1 }), relu(), flatten(), linear(4 * 8 * 8, 2));
    const r = await train({ model: { ...model, input: [1, 8, 8] }, data: { train: halves(256, 1), test: halves(64, 2) }, valSplit: 0, epochs: 2, batch: 32, opt: 'adam', lr: 1e-2, out: join(root, 'halves'), log: quiet });
    assert.equal(r.config.dataset, 'folder:data');
    assert.ok(existsSync(join(root, 'halves', 'data', 'train', '1')));
    assert.ok(r.best!.testAcc > 0.95, `test accuracy ${r.best!.testAcc}`);
    const e = await evaluate({ model: r.models.best, data: halves(64, 3) });
    assert.equal(e.count, 64);
    assert.ok(e.accuracy > 0.95, `accuracy ${e.accuracy}`);
  });
});

describe('stopping and bad options', () => {
  it('an AbortSignal stops the run with a checkpoint; resume finishes it', async () => {
    const out = join(root, 'aborted');
    const controller = new AbortController();
    const base = { model: tiny(), dataset: 'mnist', limitTrain: 256, valSplit: 0, batch: 64, out, log: quiet } as const;
    const first = await train({ ...base, epochs: 3, signal: controller.signal, onEpochEnd: () => controller.abort() });
    assert.equal(first.interrupted, true);
    assert.equal(first.epochs.length, 1);
    const done = await train({ out, resume: true, log: quiet });
    assert.equal(done.interrupted, false);
    assert.deepEqual(done.epochs.map((m) => m.epoch), [1, 2, 3]);
    await assert.rejects(train({ ...base, out: join(root, 'never'), signal: AbortSignal.abort() }), { name: 'AbortError' });
  });

  it('a bad value or an unknown option is a one-line UsageError naming it, before anything is written', async () => {
    const out = join(root, 'bad');
    await assert.rejects(train({ model: tiny(), epochs: 1.5, out, log: quiet }), (e: Error) => e instanceof UsageError && /^--epochs: expected a whole number/.test(e.message));
    await assert.rejects(train({ model: tiny(), out, log: quiet, ...({ epoch: 2 } as object) }), (e: Error) => e instanceof UsageError && /^epoch: not an option \(expected one of /.test(e.message));
    await assert.rejects(train({ out, log: quiet }), (e: Error) => e instanceof UsageError && /name a model/.test(e.message));
    assert.ok(!existsSync(out));
  });

  it('onStep is called back once per step, in order, with its loss', async () => {
    const steps: StepInfo[] = [];
    await train({ model: tiny(), dataset: 'mnist', limitTrain: 128, valSplit: 0, epochs: 1, batch: 64, out: join(root, 'steps'), log: quiet, onStep: (s) => steps.push(s) });
    assert.deepEqual(steps.map((s) => s.step), [1, 2]);
    assert.ok(steps.every((s) => Number.isFinite(s.loss) && s.loss > 0 && s.lr > 0));
  });
});
