/**
 * Every loader against 1,000 mutated inputs (fixed seed): each must end in a clear one-line
 * CnnlabError or a correct result; no other exception, no hang, no giant allocation.
 */
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { CnnlabError } from '../common/errors.ts';
import { Rng } from '../common/rng.ts';
import { encodeIdx, maybeGunzip, parseIdx } from '../datasets/idx.ts';
import { buildInferenceModel } from '../graph-builder/artifacts/inference.ts';
import { loadArchFile, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { initParams } from '../graph-builder/dsl/init.ts';
import { loadInferenceModel, openModelSession } from '../inference/model.ts';
import { prepareImage } from '../inference/preprocess.ts';
import { decodeCheckpoint, encodeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { readMetrics } from '../training/fit.ts';
import { collectEntries } from '../training/report.ts';
import { readTrialRecord } from '../training/sweep.ts';
import { createRuntime } from '../runtime/ort.ts';

import { checkTrainable, importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { TorchStyleExport } from './helpers/onnx-export.ts';

const ROUNDS = 1000;
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-fuzz-'));

/** Truncations, flipped bytes, overwritten 32-bit fields (huge, zero, negative), insertions, appended garbage. */
function mutate(input: Uint8Array, rng: Rng): Uint8Array {
  const b = Uint8Array.from(input);
  switch (rng.int(0, 5)) {
    case 0:
      return b.subarray(0, rng.int(0, b.length - 1));
    case 1: {
      const n = rng.int(1, 8);
      for (let i = 0; i < n; i++) b[rng.int(0, b.length - 1)] ^= 1 << rng.int(0, 7);
      return b;
    }
    case 2: {
      const at = rng.int(0, Math.max(0, Math.min(b.length - 4, 64)));
      const value = [0xffffffff, 0, 0x80000000, 0x7fffffff, rng.int(0, 0xffffffff)][rng.int(0, 4)];
      new DataView(b.buffer).setUint32(at, value >>> 0, rng.float() < 0.5);
      return b;
    }
    case 3: {
      const extra = Uint8Array.from({ length: rng.int(1, 64) }, () => rng.int(0, 255));
      const out = new Uint8Array(b.length + extra.length);
      out.set(b);
      out.set(extra, b.length);
      return out;
    }
    case 4: {
      const at = rng.int(0, b.length - 1);
      const out = new Uint8Array(b.length + 1);
      out.set(b.subarray(0, at));
      out[at] = rng.int(0, 255);
      out.set(b.subarray(at), at + 1);
      return out;
    }
    default: {
      const at = rng.int(0, b.length - 1);
      return Uint8Array.from([...b.subarray(0, at), ...b.subarray(Math.min(b.length, at + rng.int(1, 16)))]);
    }
  }
}

/** Runs fn on each mutation; only CnnlabErrors (one line) or success are allowed. */
async function fuzz(name: string, seed: Uint8Array, fn: (bytes: Uint8Array, i: number) => unknown, rounds = ROUNDS): Promise<{ ok: number; rejected: number }> {
  const rng = Rng.seeded(12345);
  let ok = 0;
  let rejected = 0;
  for (let i = 0; i < rounds; i++) {
    const bytes = mutate(seed, rng);
    try {
      await fn(bytes, i);
      ok++;
    } catch (err) {
      if (!(err instanceof CnnlabError)) throw new Error(`${name} mutation ${i}: ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`);
      assert.ok(!err.message.includes('\n'), `${name} mutation ${i}: a multi-line message`);
      rejected++;
    }
  }
  return { ok, rejected };
}

describe('fuzzed loaders', () => {
  it('IDX (raw and gzip)', async () => {
    const images = encodeIdx('images', [3, 28, 28], Uint8Array.from({ length: 3 * 784 }, (_, i) => i % 256));
    for (const seed of [images, gzipSync(images)]) {
      const r = await fuzz('idx', seed, (bytes) => {
        const t = parseIdx(maybeGunzip(bytes, 'f.idx'), 'f.idx', 'images');
        assert.equal(t.data.length, t.dims.reduce((a, b) => a * b, 1));
      });
      assert.ok(r.rejected > 100, JSON.stringify(r));
    }
  });

  it('checkpoints', async () => {
    const seed = encodeCheckpoint({ meta: { step: 5, architecture: 'partA' }, tensors: new Map([['w', { dtype: 'float32', dims: [3, 4], data: new Float32Array(12).fill(0.5) }], ['step', { dtype: 'int64', dims: [], data: BigInt64Array.of(5n) }]]) });
    const r = await fuzz('checkpoint', seed, (bytes) => {
      const c = decodeCheckpoint(bytes, 'c.ckpt');
      for (const t of c.tensors.values()) assert.equal(t.data.length, t.dims.reduce((a, b) => a * b, 1));
    });
    // Only flips inside the checksum-free region could pass; nearly all must be refused.
    assert.ok(r.rejected >= 990, JSON.stringify(r));
  });

  it('architecture files (JSON)', async () => {
    const seed = new TextEncoder().encode(JSON.stringify({ layers: [{ kind: 'conv2d', inChannels: 1, outChannels: 4, kernel: 3 }, { kind: 'relu' }, { kind: 'maxPool2d', kernel: 2 }, { kind: 'flatten' }, { kind: 'linear', inFeatures: 676, outFeatures: 10 }] }));
    const r = await fuzz('arch', seed, async (bytes, i) => {
      const file = join(dir, `arch-${i % 8}.json`);
      writeFileSync(file, bytes);
      await loadArchFile(file);
    });
    assert.ok(r.rejected > 500, JSON.stringify(r));
  });

  it('ONNX models given to eval, predict and serve', async () => {
    const arch = await loadArchitecture('jhu-net:width=0.5');
    const seed = buildInferenceModel(arch.model, initParams(arch.model, 0), { architecture: arch.id, dataset: 'mnist', classes: ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'], mean: 0.13, std: 0.31 });
    const rt = await createRuntime({ ep: 'cpu', threads: 1 });
    const r = await fuzz('onnx', seed, async (bytes, i) => {
      const file = join(dir, `m-${i % 8}.onnx`);
      writeFileSync(file, bytes);
      const model = loadInferenceModel(file);
      const session = await openModelSession(rt, model);
      await session.release();
    });
    assert.ok(r.rejected > 100 && r.ok > 10, JSON.stringify(r));
  });

  it('foreign ONNX models given to import (train, inspect) and to eval', async () => {
    const e = new TorchStyleExport(2);
    let h = e.batchNorm('bn1', e.conv('conv1', 'input', 1, 2, 3, { pad: 1 }), 2);
    h = e.dropout(e.viewBatch(e.maxPool(e.op('Relu', h), 2)), 0.2);
    const seed = e.build(e.gemm('fc', h, 2 * 14 * 14, 10));
    const imported = await fuzz('import', seed, (bytes, i) => {
      const model = importOnnxModel(bytes, `net-${i}.onnx`);
      checkTrainable(model);
    });
    assert.ok(imported.rejected > 300 && imported.ok > 10, JSON.stringify(imported));
    const evaluated = await fuzz('foreign eval', seed, (bytes, i) => {
      const file = join(dir, `f-${i % 8}.onnx`);
      writeFileSync(file, bytes);
      loadInferenceModel(file);
    });
    assert.ok(evaluated.rejected > 100 && evaluated.ok > 10, JSON.stringify(evaluated));
  });

  it('sweep manifests (sweep.json read by sweep and report) and trial status files', async () => {
    const sweep = join(dir, 'sweep');
    const run = join(sweep, 'lr=0.1');
    mkdirSync(run, { recursive: true });
    const epoch = (e: number) => ({ epoch: e, step: 10 * e, trainLoss: 0.5, trainAcc: 0.8, testLoss: 0.4, testAcc: 0.85 + e / 100, seconds: 1, imagesPerSecond: 500, lr: 0.1 });
    writeFileSync(join(run, 'metrics.jsonl'), `${JSON.stringify(epoch(1))}\n${JSON.stringify(epoch(2))}\n`);
    const trial = { id: 'lr=0.1', group: 'grid', settings: { lr: '0.1' }, status: 'done', run, best: 0.87, parameters: 8412, seconds: 2 };
    const manifest = { arch: 'partA', base: { epochs: 2 }, trials: [trial, { ...trial, id: 'lr=1', settings: { lr: '1' }, status: 'diverged', message: 'training diverged at step 3' }] };
    const seed = new TextEncoder().encode(JSON.stringify(manifest, null, 2));
    const r = await fuzz('sweep.json', seed, (bytes) => {
      writeFileSync(join(sweep, 'sweep.json'), bytes);
      const entries = collectEntries([sweep]);
      for (const e of entries) assert.ok(Array.isArray(e.epochs) && typeof e.name === 'string');
    });
    assert.ok(r.rejected > 300 && r.ok > 50, JSON.stringify(r));
    const status = await fuzz('status.json', new TextEncoder().encode(JSON.stringify(trial)), (bytes) => {
      writeFileSync(join(run, 'status.json'), bytes);
      const t = readTrialRecord(join(run, 'status.json'));
      assert.equal(typeof t.id, 'string');
    });
    assert.ok(status.rejected > 300, JSON.stringify(status));
  });

  it('metrics.jsonl (read by resume and report)', async () => {
    const run = join(dir, 'metrics-run');
    mkdirSync(run, { recursive: true });
    const lines = [1, 2, 3].map((e) => JSON.stringify({ epoch: e, step: 10 * e, trainLoss: 0.5, trainAcc: 0.8, testLoss: 0.4, testAcc: 0.9, seconds: 1, imagesPerSecond: 500, lr: 0.1 }));
    const r = await fuzz('metrics.jsonl', new TextEncoder().encode(`${lines.join('\n')}\n`), (bytes) => {
      writeFileSync(join(run, 'metrics.jsonl'), bytes);
      for (const m of readMetrics(run)) assert.equal(typeof m.testAcc, 'number');
    });
    assert.ok(r.rejected > 100 && r.ok > 100, JSON.stringify(r));
  });

  it('images given to predict', async () => {
    const px = Buffer.from(Array.from({ length: 40 * 40 }, (_, i) => ((i % 40) > 15 && (i % 40) < 25 ? 0 : 255)));
    for (const format of ['png', 'jpeg'] as const) {
      const seed = await sharp(px, { raw: { width: 40, height: 40, channels: 1 } }).toFormat(format).toBuffer();
      const r = await fuzz(`image ${format}`, seed, async (bytes) => {
        const p = await prepareImage(bytes, 'upload');
        assert.equal(p.pixels.length, 784);
      }, 500);
      assert.ok(r.rejected > 50, JSON.stringify(r));
    }
  });

  it('an image header claiming gigapixels is refused, not decoded', async () => {
    const png = await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).png().toBuffer();
    const huge = Uint8Array.from(png);
    // IHDR width and height (bytes 16..23) set to 60000 x 60000.
    new DataView(huge.buffer).setUint32(16, 60000);
    new DataView(huge.buffer).setUint32(20, 60000);
    await assert.rejects(prepareImage(huge, 'huge.png'), (err: unknown) => err instanceof CnnlabError && /huge\.png: not a readable image/.test(err.message));
  });
});
