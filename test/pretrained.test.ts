/**
 * A pretrained classifier from an exporter other than PyTorch, with an input size and a
 * normalisation of its own: PaddleOCR's text-direction classifier as paddle2onnx wrote it
 * (test/fixtures/pretrained/fetch.sh), on printed text lines the test draws. cnnlab's eval must
 * give what onnxruntime itself gives on the same pixels, before and after fine-tuning.
 */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import sharp from 'sharp';
import { writeTextLines } from './helpers/text-lines.ts';

const MODEL = join(import.meta.dirname, 'fixtures', 'pretrained', 'ppocr-cls.onnx');
const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');
/** PaddleOCR's own preprocessing for this model: BGR planes of 48x192, x / 255, then (x - 0.5) / 0.5. */
const PREPROCESS = ['--input-size', '48x192', '--normalize', '0.5,0.5', '--channel-order', 'bgr'];

interface Report {
  count: number;
  loss: number;
  accuracy: number;
  confusion: number[][];
}

/** The image folders' and features' caches of these runs, kept out of the user's. */
const CACHE = mkdtempSync(join(tmpdir(), 'cnnlab-pretrained-cache-'));

function cnnlab(...args: string[]): string {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, XDG_CACHE_HOME: CACHE } });
  assert.equal(r.status, 0, `cnnlab ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

const evaluate = (target: string, dir: string, ...flags: string[]): Report =>
  JSON.parse(cnnlab('eval', target, '--json', '--misclassified', join(dir, 'misclassified.png'), ...flags));

/** onnxruntime on the test images, prepared as PaddleOCR prepares them: correct count and mean NLL. */
async function onnxruntimeFigure(model: string, data: string): Promise<{ correct: number; count: number; loss: number }> {
  const session = await ort.InferenceSession.create(model);
  const classes = readdirSync(join(data, 'test')).sort();
  let correct = 0;
  let count = 0;
  let nll = 0;
  for (const [label, c] of classes.entries()) {
    for (const file of readdirSync(join(data, 'test', c))) {
      const { data: rgb, info } = await sharp(join(data, 'test', c, file)).removeAlpha().raw().toBuffer({ resolveWithObject: true });
      const plane = info.width * info.height;
      const x = new Float32Array(3 * plane);
      for (let i = 0; i < plane; i++) for (let ch = 0; ch < 3; ch++) x[(2 - ch) * plane + i] = (rgb[3 * i + ch] / 255 - 0.5) / 0.5;
      const out = await session.run({ [session.inputNames[0]]: new ort.Tensor('float32', x, [1, 3, info.height, info.width]) });
      const p = out[session.outputNames[0]].data as Float32Array;
      const guess = p.indexOf(Math.max(...p));
      correct += guess === label ? 1 : 0;
      nll -= Math.log(p[label]);
      count++;
    }
  }
  await session.release();
  return { correct, count, loss: nll / count };
}

describe('PaddleOCR text-direction classifier (paddle2onnx, opset 9, weights in Constant nodes, 3x48x192 BGR, (x - 0.5) / 0.5)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'cnnlab-pretrained-'));
  const data = join(dir, 'lines');
  before(() => writeTextLines(data, { train: 40, test: 40 }));

  it('cnnlab eval with its input size, normalisation and channel order gives the correct count and loss onnxruntime gives on the same images', async () => {
    const ours = evaluate(MODEL, dir, '--data-dir', data, ...PREPROCESS);
    const theirs = await onnxruntimeFigure(MODEL, data);
    assert.ok(theirs.correct < theirs.count && theirs.correct > theirs.count / 2, `a figure worth comparing: ${theirs.correct}/${theirs.count}`);
    assert.equal(ours.count, theirs.count);
    assert.equal(Math.round(ours.accuracy * ours.count), theirs.correct);
    assert.ok(Math.abs(ours.loss - theirs.loss) < 1e-3 * theirs.loss, `loss ${ours.loss} against onnxruntime's ${theirs.loss}`);
  });

  it('fine-tuned with --freeze backbone, its best.onnx is evaluated without flags to the run test figure, which onnxruntime gives too', async () => {
    const run = join(dir, 'run');
    const log = cnnlab('train', '--model', MODEL, '--data-dir', data, ...PREPROCESS, '--freeze', 'backbone', '--epochs', '2', '--batch', '16', '--opt', 'sgd', '--lr', '0.05', '--momentum', '0.9', '--out', run);
    const reported = /where the test accuracy is ([\d.]+)%/.exec(log)?.[1];
    const ours = evaluate(run, dir);
    assert.equal((100 * ours.accuracy).toFixed(2), reported, log);
    const theirs = await onnxruntimeFigure(join(run, 'best.onnx'), data);
    assert.equal(Math.round(ours.accuracy * ours.count), theirs.correct);
    assert.ok(Math.abs(ours.loss - theirs.loss) < 1e-3 * theirs.loss, `loss ${ours.loss} against onnxruntime's ${theirs.loss}`);
  });

  it('a third class replaces its MatMul + Add head by one 3 wide, and the trained model answers with 3 probabilities in onnxruntime', async () => {
    const three = join(dir, 'three');
    await writeTextLines(three, { train: 12, test: 6 }, ['0', '180', 'mirrored']);
    const run = join(dir, 'run3');
    const out = cnnlab('train', '--model', MODEL, '--data-dir', three, ...PREPROCESS, '--freeze', 'backbone', '--epochs', '1', '--batch', '8', '--out', run);
    assert.match(out, /replaced the head, MatMul node \S+ \(2 classes\), by a new MatMul \+ Add of 3/);
    const session = await ort.InferenceSession.create(join(run, 'best.onnx'));
    const result = await session.run({ x: new ort.Tensor('float32', new Float32Array(3 * 48 * 192), [1, 3, 48, 192]) });
    assert.deepEqual(result[session.outputNames[0]].dims, [1, 3]);
    await session.release();
  });
});
