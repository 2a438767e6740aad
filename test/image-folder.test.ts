import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import sharp from 'sharp';
import { CnnlabError } from '../common/errors.ts';
import { imageToPlanes, listImageFolder, loadImageFolder } from '../datasets/folder.ts';
import { decodeGraph } from '../graph-builder/graph/onnx.ts';

const CLI = join(import.meta.dirname, '..', 'bin', 'cnnlab.js');

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cnnlab-folder-'));
}

/** A deterministic stream of numbers in [0, 1). */
function lcg(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

const SHAPES = ['square', 'circle', 'cross'] as const;

/** One shape drawn dark on a light, tinted background, at a random place and size, in one of three formats and sizes. */
async function drawing(kind: (typeof SHAPES)[number], i: number, rnd: () => number): Promise<{ name: string; bytes: Buffer }> {
  const size = [40, 64, 33][i % 3];
  const r = size * (0.22 + 0.1 * rnd());
  const cx = size / 2 + (rnd() - 0.5) * size * 0.2;
  const cy = size / 2 + (rnd() - 0.5) * size * 0.2;
  const bg = `rgb(${200 + Math.floor(55 * rnd())},${200 + Math.floor(55 * rnd())},${180 + Math.floor(75 * rnd())})`;
  const ink = `rgb(${Math.floor(80 * rnd())},${Math.floor(80 * rnd())},${Math.floor(120 * rnd())})`;
  const w = size * 0.12;
  const shape =
    kind === 'circle'
      ? `<circle cx="${cx}" cy="${cy}" r="${r}" fill="none" stroke="${ink}" stroke-width="${w}"/>`
      : kind === 'square'
        ? `<rect x="${cx - r}" y="${cy - r}" width="${2 * r}" height="${2 * r}" fill="none" stroke="${ink}" stroke-width="${w}"/>`
        : `<path d="M${cx - r} ${cy - r} L${cx + r} ${cy + r} M${cx + r} ${cy - r} L${cx - r} ${cy + r}" stroke="${ink}" stroke-width="${w}"/>`;
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${size}" height="${size}"><rect width="100%" height="100%" fill="${bg}"/>${shape}</svg>`;
  const img = sharp(Buffer.from(svg));
  const format = (['png', 'jpeg', 'webp'] as const)[i % 3];
  return { name: `${kind}-${i}.${format === 'jpeg' ? 'jpg' : format}`, bytes: await img.toFormat(format).toBuffer() };
}

/** DIR/train/<shape>/ (n each) and DIR/test/<shape>/ (m each), plus one corrupt image and a text file. */
async function shapesFolder(n: number, m: number, seed = 1): Promise<string> {
  const dir = join(tmp(), 'shapes');
  const rnd = lcg(seed);
  for (const [split, count] of [['train', n], ['test', m]] as const) {
    for (const kind of SHAPES) {
      mkdirSync(join(dir, split, kind), { recursive: true });
      for (let i = 0; i < count; i++) {
        const d = await drawing(kind, i, rnd);
        writeFileSync(join(dir, split, kind, d.name), d.bytes);
      }
    }
  }
  writeFileSync(join(dir, 'train', 'circle', 'broken.png'), Buffer.from('not a png at all'));
  writeFileSync(join(dir, 'train', 'square', 'notes.txt'), 'labels checked by hand');
  return dir;
}

function cnnlab(args: string[], cache: string, cwd?: string) {
  return spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', cwd, env: { ...process.env, XDG_CACHE_HOME: cache, CNNLAB_OFFLINE: '1' } });
}

describe('image-folder datasets', () => {
  it('lists classes in sorted order and labels every image by its folder', async () => {
    const dir = await shapesFolder(2, 1);
    const listing = listImageFolder(dir);
    assert.deepEqual(listing.classes, ['circle', 'cross', 'square']);
    assert.equal(listing.name, 'folder:shapes');
    assert.equal(listing.files.train.length, 7, 'six drawings and the corrupt .png');
    assert.deepEqual(listing.ignored, ['train/square/notes.txt']);
    for (const f of [...listing.files.train, ...listing.files.test]) assert.equal(listing.classes[f.label], f.path.split('/')[1]);
  });

  it('refuses a test class that training lacks, and a folder without train/, in one line', async () => {
    const dir = await shapesFolder(1, 1);
    mkdirSync(join(dir, 'test', 'star'));
    assert.throws(() => listImageFolder(dir), (e: unknown) => e instanceof CnnlabError && /test\/star\/ is a class that train\/ does not have/.test(e.message) && !e.message.includes('\n'));
    assert.throws(() => listImageFolder(tmp()), /expected train\/<class>\/ and test\/<class>\/ image folders/);
  });

  it('refuses a class whose training folder holds no images, naming it, in one line', async () => {
    const dir = await shapesFolder(1, 1);
    mkdirSync(join(dir, 'train', 'star'));
    writeFileSync(join(dir, 'train', 'star', 'notes.txt'), 'not an image');
    assert.throws(() => listImageFolder(dir), (e: unknown) => e instanceof CnnlabError && e.exitCode === 2 && /train\/star\/ holds no images .*; every class needs training images$/.test(e.message) && !e.message.includes('\n'));
  });

  it('converts any size and format to the model input: grey 1x28x28 or planar RGB', async () => {
    const red = await sharp({ create: { width: 50, height: 20, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
    const rgb = await imageToPlanes(red, [3, 16, 16]);
    assert.equal(rgb.length, 3 * 16 * 16);
    assert.ok(rgb.subarray(0, 256).every((v) => v > 250), 'red plane full');
    assert.ok(rgb.subarray(256).every((v) => v < 5), 'green and blue planes empty');
    const grey = await imageToPlanes(red, [1, 28, 28]);
    assert.equal(grey.length, 784);
    assert.ok(grey.every((v) => v === grey[0]) && grey[0] > 40 && grey[0] < 200, `red as one mid grey: ${grey[0]}`);
    // Transparency is flattened onto white.
    const clear = await sharp({ create: { width: 8, height: 8, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).png().toBuffer();
    assert.ok((await imageToPlanes(clear, [1, 4, 4])).every((v) => v === 255));
  });

  it('skips unreadable files with one summary line, caches, and remakes the cache when a file changes', async () => {
    const dir = await shapesFolder(3, 2);
    const env = { HOME: tmp() };
    const lines: string[] = [];
    const ds = await loadImageFolder(dir, [1, 28, 28], { env, progress: false, warn: (l) => lines.push(l) });
    assert.equal(ds.cached, false);
    assert.equal(ds.train.count, 9);
    assert.equal(ds.test.count, 6);
    assert.deepEqual(ds.train.shape, [1, 28, 28]);
    assert.deepEqual(Array.from(ds.train.labels), [0, 0, 0, 1, 1, 1, 2, 2, 2]);
    assert.equal(ds.skipped.length, 1);
    assert.equal(ds.skipped[0].path, 'train/circle/broken.png');
    assert.equal(lines.length, 1);
    assert.match(lines[0], /2 files skipped: train\/circle\/broken\.png \(.+\), train\/square\/notes\.txt \(not an image file type\)/);
    assert.ok(ds.info.mean > 0.5 && ds.info.std > 0, 'light backgrounds: a high mean');

    // The CLI in fresh processes: made once, then read from the cache with the same statistics.
    const cache = tmp();
    const first = cnnlab(['datasets', '--data-dir', dir], cache);
    assert.equal(first.status, 0, first.stderr);
    assert.match(first.stdout, /folder:shapes — image folders in /);
    assert.match(first.stdout, /classes: 0 circle \(3\/2\), 1 cross \(3\/2\), 2 square \(3\/2\)/);
    assert.match(first.stdout, /made now/);
    const second = cnnlab(['datasets', '--data-dir', dir], cache);
    assert.match(second.stdout, /read from the cache/);
    assert.equal(second.stdout.match(/norm: .*/)![0], first.stdout.match(/norm: .*/)![0]);
    // A changed file (its modification time) makes a new cache.
    const changed = join(dir, 'test', 'cross', 'cross-0.png');
    utimesSync(changed, new Date(), new Date(Date.now() + 5000));
    assert.match(cnnlab(['datasets', '--data-dir', dir], cache).stdout, /made now/);
  });

  it('trains a preset on image folders: the head fits the classes, the model carries the class names, predict and eval read it', async () => {
    const dir = await shapesFolder(24, 8, 7);
    const work = tmp();
    const cache = tmp();
    const out = join(work, 'run');
    const train = cnnlab(['train', 'partA', '--data-dir', dir, '--epochs', '3', '--batch', '8', '--val-split', '0', '--out', out], cache);
    assert.equal(train.status, 0, train.stderr);
    assert.match(train.stdout, /cnnlab train partA on folder:shapes/);
    const metrics = readFileSync(join(out, 'metrics.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { testAcc: number });
    const acc = metrics[metrics.length - 1].testAcc;
    assert.ok(acc >= 0.75, `test accuracy ${acc} on 24 clear drawings of three shapes`);
    const { metadata, graph } = decodeGraph(readFileSync(join(out, 'best.onnx')));
    assert.deepEqual(JSON.parse(metadata['cnnlab.classes']), ['circle', 'cross', 'square']);
    assert.equal(metadata['cnnlab.dataset'], 'folder:shapes');
    assert.deepEqual(graph.outputs.find((o) => o.name === 'probabilities')?.shape, ['N', 3]);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8')) as { flags: { normalize?: string } };
    assert.match(config.flags.normalize ?? '', /^0\.\d+,0\.\d+$/, 'the measured statistics are fixed in the run');

    const probe = join(work, 'probe.png');
    writeFileSync(probe, (await drawing('cross', 1, lcg(99))).bytes);
    const predict = cnnlab(['predict', probe, '--model', out, '--json'], cache);
    assert.equal(predict.status, 0, predict.stderr);
    const top = (JSON.parse(predict.stdout) as { results: { top: { name: string }[] }[] }).results[0].top;
    assert.ok(['circle', 'cross', 'square'].includes(top[0].name));
    const evaluated = cnnlab(['eval', out, '--data-dir', dir, '--json'], cache, work);
    assert.equal(evaluated.status, 0, evaluated.stderr);
    const report = JSON.parse(evaluated.stdout) as { dataset: string; count: number; accuracy: number };
    assert.equal(report.dataset, 'folder:shapes');
    assert.equal(report.count, 24);
    assert.ok(Math.abs(report.accuracy - acc) < 1e-6, `eval ${report.accuracy} = the run's test accuracy ${acc}`);
    const recorded = cnnlab(['eval', out, '--json'], cache, work);
    assert.equal(recorded.status, 0, recorded.stderr);
    assert.ok(Math.abs((JSON.parse(recorded.stdout) as { accuracy: number }).accuracy - acc) < 1e-6, "eval RUN reads the run's own image folders");
    rmSync(join(out, 'config.json'));
    const noFolder = cnnlab(['eval', out], cache);
    assert.equal(noFolder.status, 2);
    assert.match(noFolder.stderr, /trained on image folders \(folder:shapes\); pass them with --data-dir DIR/);
  });

  it('trains an RGB architecture file at its own input size', async () => {
    const dir = await shapesFolder(6, 3, 3);
    const work = tmp();
    const arch = join(work, 'rgb.json');
    writeFileSync(
      arch,
      JSON.stringify({
        input: [3, 20, 20],
        layers: [
          { kind: 'conv2d', inChannels: 3, outChannels: 4, kernel: 3, padding: 1 },
          { kind: 'relu' },
          { kind: 'maxPool2d', kernel: 2 },
          { kind: 'flatten' },
          { kind: 'linear', inFeatures: 400, outFeatures: 10 },
        ],
      }),
    );
    const out = join(work, 'run');
    const train = cnnlab(['train', '--arch-file', arch, '--data-dir', dir, '--epochs', '1', '--batch', '6', '--val-split', '0', '--out', out], tmp());
    assert.equal(train.status, 0, train.stderr);
    const { graph } = decodeGraph(readFileSync(join(out, 'best.onnx')));
    assert.deepEqual(graph.inputs.find((i) => i.name === 'image')?.shape, ['N', 3, 20, 20]);
    assert.deepEqual(graph.outputs.find((o) => o.name === 'logits')?.shape, ['N', 3], 'the 10-wide head made 3 wide');
  });

  it('--dataset with an image folder, and an image folder without test/, are one line each', async () => {
    const dir = await shapesFolder(1, 1);
    const both = cnnlab(['train', 'partA', '--data-dir', dir, '--dataset', 'mnist', '--out', join(tmp(), 'r')], tmp());
    assert.equal(both.status, 2);
    assert.equal(both.stderr.trim().split('\n').length, 1, both.stderr);
    assert.match(both.stderr, /--dataset mnist: --data-dir .* is an image folder/);
    const half = join(tmp(), 'half');
    mkdirSync(join(half, 'train', 'a'), { recursive: true });
    mkdirSync(join(half, 'train', 'b'), { recursive: true });
    writeFileSync(join(half, 'train', 'a', 'x.png'), (await drawing('circle', 0, lcg(1))).bytes);
    const noTest = cnnlab(['train', 'partA', '--data-dir', half, '--out', join(tmp(), 'r')], tmp());
    assert.equal(noTest.status, 2);
    assert.match(noTest.stderr, /test\/ not found; expected train\/<class>\/ and test\/<class>\//);
  });
});
