import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as ort from 'onnxruntime-node';
import { type Browser, chromium, type Page } from 'playwright-core';
import sharp from 'sharp';
import { loadDataset } from '../datasets/sources.ts';
import { loadArchFile, loadArchitecture } from '../graph-builder/dsl/arch.ts';
import { TorchStyleExport } from './helpers/onnx-export.ts';
import { classify, loadInferenceModel, openModelSession } from '../inference/model.ts';
import { prepareFor } from '../inference/prepare-input.ts';
import { createRuntime } from '../runtime/ort.ts';
import { createDemoServer, decodeLanes, loadServedModels, MAX_UPLOAD } from '../inference/server.ts';
import { resolveRunConfig } from '../training/config.ts';
import { fit } from '../training/fit.ts';

// The few browser globals the page functions below touch (they run in Chromium, not in Node).
declare const window: unknown;
declare const document: { getElementById(id: string): { textContent: string | null } | null };

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const dir = mkdtempSync(join(tmpdir(), 'cnnlab-web-'));
export const SCREENSHOTS = process.env.CNNLAB_SCREENSHOTS ?? join(dir, 'screenshots');
mkdirSync(SCREENSHOTS, { recursive: true });
const mnist = await loadDataset('mnist', { env: {} });

let server: Server;
let base: string;
let browser: Browser;
let page: Page;

async function train(arch: string, dataset: 'mnist' | 'fashion-mnist', n: number, epochs: number, out: string): Promise<void> {
  const cfg = resolveRunConfig(await loadArchitecture(arch), { dataset, 'limit-train': n, epochs, batch: 100, opt: 'adam', lr: 2e-3, shuffle: true, threads: 2 });
  await fit(cfg, { runDir: out, resume: false, progress: false, log: () => {} });
}

before(async () => {
  await train('jhu-net', 'mnist', 20000, 2, join(dir, 'mnist'));
  await train('partD', 'fashion-mnist', 1000, 1, join(dir, 'fashion'));
  // A model from an architecture file (its layers travel in the metadata) and a PyTorch-style export.
  const archFile = join(dir, 'tiny.json');
  writeFileSync(archFile, JSON.stringify({ layers: [{ kind: 'conv2d', inChannels: 1, outChannels: 4, kernel: 3 }, { kind: 'relu' }, { kind: 'maxPool2d', kernel: 2 }, { kind: 'flatten' }, { kind: 'linear', inFeatures: 676, outFeatures: 10 }] }));
  const cfg = resolveRunConfig(await loadArchFile(archFile), { 'limit-train': 1000, epochs: 1, batch: 100, threads: 2 }, archFile);
  await fit(cfg, { runDir: join(dir, 'tiny'), resume: false, progress: false, log: () => {} });
  const e = new TorchStyleExport(7);
  writeFileSync(join(dir, 'net.onnx'), e.build(e.gemm('fc', e.viewBatch(e.maxPool(e.op('Relu', e.conv('conv1', 'input', 1, 4, 3, { pad: 1 })), 2)), 4 * 14 * 14, 10)));
  server = createDemoServer(await loadServedModels([join(dir, 'mnist'), join(dir, 'fashion'), join(dir, 'tiny'), join(dir, 'net.onnx')]));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  assert.ok(existsSync(CHROMIUM), `Chromium not found at ${CHROMIUM}: apt-get install chromium (.ci/run does)`);
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  page = await browser.newPage({ viewport: { width: 1280, height: 1000 } });
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(e.message));
  await page.goto(`${base}/`);
  await page.evaluate(() => (window as unknown as { cnnlab: { ready: Promise<void> } }).cnnlab.ready);
  assert.deepEqual(errors, []);
});

after(async () => {
  await browser?.close();
  server?.close();
});

type PageState = { pixels: number[] | null; probabilities: number[] | null; losses: number[] };
const pageState = () => page.evaluate(() => {
  const s = (window as unknown as { cnnlab: { state: { pixels: Float32Array | null; probabilities: number[] | null; losses: number[] } } }).cnnlab.state;
  return { pixels: s.pixels ? Array.from(s.pixels) : null, probabilities: s.probabilities, losses: s.losses } as PageState;
});

async function nodeProbabilities(model: string, pixels: number[]): Promise<Float32Array> {
  const session = await ort.InferenceSession.create(loadInferenceModel(model).bytes);
  const out = await session.run({ image: new ort.Tensor('float32', Float32Array.from(pixels), [1, 1, 28, 28]) });
  return out.probabilities.data as Float32Array;
}

/** A "7" drawn with the mouse: a top bar, then the diagonal. */
/** Adds the drawing on the pad as an example of `label` and runs `steps` fine-tuning steps at `lr` in the page. */
async function fineTune(label: string, steps: number, lr: number): Promise<PageState> {
  await page.selectOption('#label', label);
  await page.click('#add');
  await page.fill('#steps', String(steps));
  await page.fill('#lr', String(lr));
  await page.evaluate(() => (window as unknown as { cnnlab: { train: () => Promise<void> } }).cnnlab.train());
  return pageState();
}

const SEVEN = [[70, 60], [210, 60], [200, 90], [170, 150], [140, 230]];
const ONE = [[150, 50], [145, 120], [140, 240]];
const ZERO = [[140, 50], [90, 90], [80, 160], [120, 230], [180, 220], [205, 140], [190, 70], [140, 50]];

async function drawSeven(): Promise<void> {
  return draw(SEVEN);
}

/** One stroke through the points on the drawing pad. */
async function draw(pts: number[][]): Promise<void> {
  await page.click('#clear');
  const box = (await page.locator('#pad').boundingBox())!;
  await page.mouse.move(box.x + pts[0][0], box.y + pts[0][1]);
  await page.mouse.down();
  for (const [x, y] of pts.slice(1)) await page.mouse.move(box.x + x, box.y + y, { steps: 8 });
  await page.mouse.up();
  await page.evaluate(() => (window as unknown as { cnnlab: { settled: () => Promise<void> } }).cnnlab.settled());
}

describe('the demo page in Chromium', () => {
  it('before anything is drawn, and after Clear, the prediction panel says to draw a digit', async () => {
    assert.match((await page.locator('#result-panel').textContent())!, /Draw a digit/);
    assert.equal(await page.locator('#bars .bar').count(), 0);
    await drawSeven();
    assert.equal(await page.locator('#bars .bar').count(), 10);
    await page.click('#clear');
    assert.match((await page.locator('#bars').textContent())!, /Draw a digit/);
    assert.equal(await page.locator('#top').textContent(), '');
  });

  it('predicts a digit drawn with the mouse, matching onnxruntime-node on the same pixels within 1e-4', async () => {
    await drawSeven();
    const s = await pageState();
    assert.equal(await page.locator('#top').textContent(), '7');
    const node = await nodeProbabilities(join(dir, 'mnist'), s.pixels!);
    for (let k = 0; k < 10; k++) assert.ok(Math.abs(node[k] - s.probabilities![k]) <= 1e-4, `class ${k}: node ${node[k]} page ${s.probabilities![k]}`);
    assert.equal(await page.locator('#bars .bar').count(), 10);
    await page.screenshot({ path: join(SCREENSHOTS, 'draw.png'), fullPage: true });
  });

  it('shows the model card and a gallery of test samples with mistakes marked', async () => {
    const card = await page.locator('#card').textContent();
    assert.match(card!, /architecturejhu-net/);
    assert.match(card!, /parameters21,840/);
    assert.match(card!, /test accuracy\d+\.\d\d%/);
    // A real figure (rounds of many runs), or '< 0.01' where even those are below the card's precision: never 0.00.
    const ms = /inference(< 0\.01|\d+(?:\.\d+)?) ms per image \(median of 5 rounds of (\d+) runs?, wasm/.exec(card!);
    assert.ok(ms, card!);
    assert.ok(ms[1] === '< 0.01' || Number(ms[1]) > 0, card!);
    // COOP/COEP make the page cross-origin isolated, so onnxruntime-web may use wasm threads.
    assert.equal(await page.evaluate(() => (globalThis as unknown as { crossOriginIsolated: boolean }).crossOriginIsolated), true);
    assert.equal(await page.locator('#gallery .sample').count(), 24);
  });

  it('predicts an uploaded image', async () => {
    const file = join(dir, 'two.png');
    const px = Buffer.from(mnist.test.images.subarray(784, 2 * 784).map((v) => 255 - v));
    await sharp(px, { raw: { width: 28, height: 28, channels: 1 } }).resize(200, 200).png().toFile(file);
    await page.setInputFiles('#file', file);
    await page.waitForFunction(() => document.getElementById('status')!.textContent === 'two.png');
    await page.screenshot({ path: join(SCREENSHOTS, 'upload.png'), fullPage: true });
    assert.equal(await page.locator('#top').textContent(), '2');
  });

  it('fine-tunes in the browser: the loss falls and the prediction changes', async () => {
    await drawSeven();
    const before = (await pageState()).probabilities!;
    const s = await fineTune('1', 15, 0.05);
    assert.equal(s.losses.length, 15);
    assert.ok(s.losses[14] < s.losses[0] * 0.5, `loss ${s.losses[0]} -> ${s.losses[14]}`);
    assert.ok(s.probabilities![1] > before[1] + 0.3, `p(1) ${before[1]} -> ${s.probabilities![1]}`);
    assert.equal(await page.locator('#top').textContent(), '1');
    assert.match((await page.locator('#tune-status').textContent())!, /15 steps on 1 example\(s\) with 24 replayed training images in \d+ ms; loss/);
    await page.screenshot({ path: join(SCREENSHOTS, 'fine-tune.png'), fullPage: true });
    await page.click('#reset');
    await page.waitForFunction(() => document.getElementById('top')!.textContent === '7');
  });

  it('fine-tuning replays training images: teaching three drawings keeps the test accuracy (measured with and without replay)', async (t) => {
    type Page = { cnnlab: { sampleAccuracy: () => Promise<number>; state: { noReplay?: boolean } } };
    const accuracy = () => page.evaluate(() => (window as unknown as Page).cnnlab.sampleAccuracy());
    // Three drawings, each taught as its digit in its own round of 10 steps at the page's default lr.
    const teach = async () => {
      for (const [pts, label] of [[SEVEN, '7'], [ONE, '1'], [ZERO, '0']] as const) {
        await draw(pts as unknown as number[][]);
        await fineTune(label, 10, 0.01);
      }
    };
    const before = await accuracy();
    await teach();
    const withReplay = await accuracy();
    await page.click('#reset');
    await page.evaluate(() => ((window as unknown as Page).cnnlab.state.noReplay = true));
    await teach();
    const without = await accuracy();
    await page.evaluate(() => ((window as unknown as Page).cnnlab.state.noReplay = false));
    await page.click('#reset');
    t.diagnostic(`test accuracy on 500 samples: ${(100 * before).toFixed(1)}% before, ${(100 * withReplay).toFixed(1)}% after teaching 3 drawings with replay, ${(100 * without).toFixed(1)}% without`);
    assert.ok(withReplay >= before - 0.08, `with replay: ${before} -> ${withReplay}`);
    assert.ok(withReplay >= without + 0.2, `replay ${withReplay} vs none ${without}`);
  });

  it('offers the fine-tuned weights as a safetensors download', async () => {
    const download = page.waitForEvent('download');
    await page.click('#download');
    const file = await (await download).path();
    const bytes = readFileSync(file);
    const n = Number(bytes.readBigUInt64LE(0));
    const header = JSON.parse(bytes.subarray(8, 8 + n).toString('utf8')) as Record<string, { shape: number[] }>;
    assert.deepEqual(header['conv1.weight'].shape, [10, 1, 5, 5]);
    assert.equal((header.__metadata__ as unknown as Record<string, string>)['cnnlab.architecture'], 'jhu-net');
  });

  it('switches to the Fashion-MNIST model', async () => {
    await page.selectOption('#model', '1');
    await page.waitForFunction(() => /fashion-mnist/.test(document.getElementById('card')!.textContent ?? ''));
    await page.waitForFunction(() => /Ankle boot|Sneaker|Bag|Trouser|Shirt|Coat|Sandal|Dress|Pullover|T-shirt/.test(document.getElementById('gallery')!.textContent ?? ''));
    await page.selectOption('#model', '0');
    await page.waitForFunction(() => /jhu-net/.test(document.getElementById('card')!.textContent ?? ''));
  });

  for (const [id, name] of [['2', 'file:tiny.json'], ['3', 'onnx:net.onnx']]) {
    it(`predicts with and fine-tunes ${name === 'file:tiny.json' ? 'an architecture-file model' : 'an imported PyTorch-style model'}`, async () => {
      await page.selectOption('#model', id);
      await page.waitForFunction((n) => (document.getElementById('card')!.textContent ?? '').includes(n), name);
      await drawSeven();
      const before = await pageState();
      assert.ok(Math.abs(before.probabilities!.reduce((a, b) => a + b, 0) - 1) < 1e-4);
      const s = await fineTune('3', 10, 0.05);
      assert.equal(s.losses.length, 10, (await page.locator('#tune-status').textContent()) ?? '');
      assert.ok(s.losses[9] < s.losses[0], `loss ${s.losses[0]} -> ${s.losses[9]}`);
      assert.ok(s.probabilities![3] > before.probabilities![3], `p(3) ${before.probabilities![3]} -> ${s.probabilities![3]}`);
      await page.click('#reset');
    });
  }
});

describe('the demo server', () => {
  it('serves only its own files and answers bad requests with 4xx, then keeps serving', async () => {
    const status = async (path: string, init?: RequestInit) => (await fetch(`${base}${path}`, init)).status;
    for (const p of ['/../../etc/passwd', '/%2e%2e/%2e%2e/etc/passwd', '/ort/..%2f..%2fpackage.json', '/ort/ort.node.min.js', '/web/app.js', '/api/models/9/inference.onnx', '/api/models/0/secret']) {
      assert.equal(await status(p), 404, p);
    }
    assert.equal(await status('/api/prepare'), 405);
    assert.equal(await status('/api/prepare', { method: 'POST', body: 'not an image' }), 400);
    assert.equal(await status('/api/prepare', { method: 'POST', body: new Uint8Array(0) }), 400);
    assert.equal(await status('/api/prepare', { method: 'POST', body: new Uint8Array(MAX_UPLOAD + 1) }), 413);
    assert.equal(await status('/'), 200);
    assert.equal(await status('/ort/ort-wasm-simd-threaded.wasm'), 200);
    const models = (await (await fetch(`${base}/api/models`)).json()) as { name: string; fineTuning: boolean }[];
    assert.deepEqual(models.map((m) => m.name), ['jhu-net (mnist)', 'partD (fashion-mnist)', 'file:tiny.json (mnist)', 'onnx:net.onnx (mnist)']);
    assert.ok(models.every((m) => m.fineTuning));
  });

  it('decodes huge images in a lane of their own: with one decoding and four waiting, the other 11 of a flood get 503 with Retry-After and an ordinary multipart upload is answered meanwhile', { timeout: 60_000 }, async () => {
    // A server of its own whose large-image lane holds its first decode until the test lets it go,
    // so the flood's outcome does not depend on how fast this machine decodes.
    const lanes = decodeLanes();
    let release!: () => void;
    const held = new Promise<void>((r) => (release = r));
    const run = lanes.large.run.bind(lanes.large);
    lanes.large.run = <T>(job: () => Promise<T>) => run(async () => (await held, job()));
    const own = createDemoServer(await loadServedModels([join(dir, 'mnist')]), lanes);
    await new Promise<void>((r) => own.listen(0, '127.0.0.1', r));
    const url = `http://127.0.0.1:${(own.address() as AddressInfo).port}/api/prepare`;
    try {
      // A 40-megapixel PNG of a few kilobytes, the worst case an upload cap in bytes lets through.
      const huge = await sharp({ create: { width: 8000, height: 5000, channels: 3, background: '#fff' } }).png({ compressionLevel: 9 }).toBuffer();
      assert.ok(huge.length < MAX_UPLOAD);
      let refused = 0;
      let allRefused!: () => void;
      const elevenRefused = new Promise<void>((r) => (allRefused = r));
      const flood = Array.from({ length: 16 }, async () => {
        const r = await fetch(url, { method: 'POST', body: huge });
        await r.arrayBuffer();
        if (r.status === 503 && ++refused === 11) allRefused();
        return { status: r.status, retryAfter: r.headers.get('retry-after') };
      });
      await elevenRefused;
      const small = await sharp(Buffer.from(mnist.test.images.subarray(0, 784).map((v) => 255 - v)), { raw: { width: 28, height: 28, channels: 1 } }).png().toBuffer();
      const form = new FormData();
      form.append('image', new Blob([small], { type: 'image/png' }), 'seven.png');
      const ordinary = await fetch(url, { method: 'POST', body: form });
      assert.equal(ordinary.status, 200, await ordinary.clone().text());
      assert.equal(((await ordinary.json()) as { pixels: number[] }).pixels.length, 784);
      release();
      const results = await Promise.all(flood);
      // A blank page decodes to 'the image is blank' (400): decoded all the same.
      assert.equal(results.filter((r) => r.status === 400).length, 5, JSON.stringify(results));
      assert.equal(results.filter((r) => r.status === 503 && r.retryAfter === '1').length, 11, JSON.stringify(results));
    } finally {
      release();
      await new Promise((r) => own.close(r));
    }
  });

  it('keeps serving through 1,000 abusive requests', async () => {
    const png = await sharp({ create: { width: 64, height: 64, channels: 3, background: '#fff' } })
      .composite([{ input: Buffer.from('<svg width="64" height="64"><rect x="28" y="8" width="8" height="48" fill="black"/></svg>'), top: 0, left: 0 }])
      .png()
      .toBuffer();
    const kinds: [string, RequestInit | undefined, number][] = [
      ['/../../../etc/passwd', undefined, 404],
      ['/api/prepare', { method: 'POST', body: new Uint8Array(MAX_UPLOAD + 10) }, 413],
      ['/api/prepare', { method: 'POST', body: '--boundary\r\nContent-Disposition: form-data; name="x"\r\n\r\ntruncated', headers: { 'content-type': 'multipart/form-data; boundary=boundary' } }, 400],
      ['/api/prepare', { method: 'POST', body: png }, 200],
      ['/nope', undefined, 404],
      ['/api/models', undefined, 200],
    ];
    const heapBefore = process.memoryUsage().heapUsed;
    for (let i = 0; i < 1000; i += 10) {
      await Promise.all(
        Array.from({ length: 10 }, async (_, j) => {
          const [path, init, want] = kinds[(i + j) % kinds.length];
          const res = await fetch(`${base}${path}`, init);
          await res.arrayBuffer();
          assert.equal(res.status, want, `${path}`);
        }),
      );
    }
    assert.equal((await fetch(`${base}/`)).status, 200);
    const grown = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    assert.ok(grown < 200, `heap grew by ${grown.toFixed(0)} MiB`);
  });
});

/** Full-range BT.601 (YUV4MPEG2's C420jpeg) of an RGB colour. */
function yuv([r, g, b]: readonly number[]): [number, number, number] {
  const clip = (v: number) => Math.max(0, Math.min(255, Math.round(v)));
  return [clip(0.299 * r + 0.587 * g + 0.114 * b), clip(128 - 0.168736 * r - 0.331264 * g + 0.5 * b), clip(128 + 0.5 * r - 0.418688 * g - 0.081312 * b)];
}

/**
 * A Y4M clip for Chromium's fake camera (--use-file-for-fake-video-capture, which loops it):
 * `frames` frames of each colour in turn at `fps`, 160x120, a darker square in the middle so
 * the frames are not flat.
 */
function writeClip(file: string, colours: readonly (readonly number[])[], frames: number, fps: number): void {
  const [w, h] = [160, 120];
  const parts: Buffer[] = [Buffer.from(`YUV4MPEG2 W${w} H${h} F${fps}:1 Ip A1:1 C420jpeg\n`)];
  for (const colour of colours) {
    const [y0, u0, v0] = yuv(colour);
    const [y1, u1, v1] = yuv(colour.map((c) => c * 0.6));
    const inside = (x: number, y: number) => Math.abs(x - w / 2) < w / 5 && Math.abs(y - h / 2) < h / 5;
    const plane = (pw: number, ph: number, k: number, a: number, b: number) => Buffer.from(Array.from({ length: pw * ph }, (_, i) => (inside((i % pw) * k, Math.floor(i / pw) * k) ? b : a)));
    const frame = Buffer.concat([Buffer.from('FRAME\n'), plane(w, h, 1, y0, y1), plane(w / 2, h / 2, 2, u0, u1), plane(w / 2, h / 2, 2, v0, v1)]);
    for (let i = 0; i < frames; i++) parts.push(frame);
  }
  writeFileSync(file, Buffer.concat(parts));
}

/**
 * Names the classes "warm" and "cool" in the page's new-classes panel and adds two uploaded
 * examples of each (solid-colour PNGs written to `dir`, names starting with `prefix`); returns
 * the four files and a fifth, of colour `test`, to predict.
 */
async function addWarmAndCool(p: Page, prefix: string, test: readonly [number, number, number]): Promise<string[]> {
  const files: string[] = [];
  for (const [name, colour] of [['warm1', [220, 80, 20]], ['warm2', [250, 150, 40]], ['cool1', [20, 90, 220]], ['cool2', [40, 180, 200]], ['test', test]] as const) {
    const file = join(dir, `${prefix}${name}.png`);
    await sharp({ create: { width: 90, height: 60, channels: 3, background: { r: colour[0], g: colour[1], b: colour[2] } } }).png().toFile(file);
    files.push(file);
  }
  await p.fill('#head-classes', 'warm, cool');
  await p.dispatchEvent('#head-classes', 'change');
  await p.selectOption('#head-class', '0');
  await p.setInputFiles('#head-files', files.slice(0, 2));
  await p.waitForFunction(() => /warm: 2, cool: 0/.test(document.getElementById('head-examples')!.textContent ?? ''));
  await p.selectOption('#head-class', '1');
  await p.setInputFiles('#head-files', files.slice(2, 4));
  await p.waitForFunction(() => /warm: 2, cool: 2/.test(document.getElementById('head-examples')!.textContent ?? ''));
  return files;
}

describe('new classes on an RGB model (3x32x32, imported) in Chromium with a fake camera', () => {
  const RED = [200, 40, 40];
  const BLUE = [40, 60, 200];
  let rgbServer: Server;
  let rgbBrowser: Browser;
  let p: Page;
  type Hooks = {
    cnnlab: {
      ready: Promise<void>;
      state: { probabilities: number[] | null; shownClasses: string[]; frameMean: number[] | null; head: { losses: number[]; examples: unknown[] } };
      camera: { toggle: () => Promise<void>; addSnapshot: (label: number) => Promise<number[]>; removeLast: () => void };
      head: { train: () => Promise<void> };
    };
  };
  const isRed = (c: readonly number[]) => c[0] > 120 && c[2] < 100;
  const isBlue = (c: readonly number[]) => c[2] > 120 && c[0] < 100;

  before(async () => {
    const clip = join(dir, 'red-blue.y4m');
    // 1.5 s of each colour at 10 frames a second, looped by Chromium.
    writeClip(clip, [RED, BLUE], 15, 10);
    rgbServer = createDemoServer(await loadServedModels(['test/fixtures/families/resnet18.onnx']));
    await new Promise<void>((r) => rgbServer.listen(0, '127.0.0.1', r));
    rgbBrowser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--no-first-run', '--use-fake-ui-for-media-stream', '--use-fake-device-for-media-stream', `--use-file-for-fake-video-capture=${clip}`],
    });
    p = await rgbBrowser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await p.goto(`http://127.0.0.1:${(rgbServer.address() as AddressInfo).port}/`);
    await p.evaluate(() => (window as unknown as Hooks).cnnlab.ready);
    assert.deepEqual(errors, []);
  });

  after(async () => {
    await rgbBrowser?.close();
    rgbServer?.close();
  });

  /** Adds `n` camera snapshots of frames of one colour to class `label` (a snapshot of the other colour, taken as the clip turns, is taken back). */
  async function snapshots(label: number, colour: (c: readonly number[]) => boolean, n: number): Promise<void> {
    for (let added = 0, tries = 0; added < n; tries++) {
      assert.ok(tries < 100, `only ${added} snapshots of the colour in ${tries} tries`);
      const mean = await p.evaluate((l) => (window as unknown as Hooks).cnnlab.camera.addSnapshot(l), label);
      if (colour(mean)) added++;
      else await p.evaluate(() => (window as unknown as Hooks).cnnlab.camera.removeLast());
      await p.waitForTimeout(120);
    }
  }

  /** The page's live prediction of the next camera frame of one colour: its top class. */
  async function livePrediction(colour: 'red' | 'blue'): Promise<string> {
    const handle = await p.waitForFunction((c) => {
      const s = (window as unknown as Hooks).cnnlab.state;
      const m = s.frameMean;
      if (!m || s.shownClasses.join() !== 'red,blue' || !s.probabilities) return undefined;
      const seen = c === 'red' ? m[0] > 120 && m[2] < 100 : m[2] > 120 && m[0] < 100;
      return seen ? s.shownClasses[s.probabilities[0] > s.probabilities[1] ? 0 : 1] : undefined;
    }, colour, { timeout: 10_000 });
    return (await handle.jsonValue()) as string;
  }

  it('prepares uploads as the model reads them (3x32x32 planes, 0..1) and builds heads of 2..20 classes', async () => {
    const base = `http://127.0.0.1:${(rgbServer.address() as AddressInfo).port}/api/models/0`;
    const png = await sharp({ create: { width: 50, height: 40, channels: 3, background: { r: 255, g: 0, b: 0 } } }).png().toBuffer();
    const prepared = (await (await fetch(`${base}/prepare`, { method: 'POST', body: png })).json()) as { pixels: number[]; shape: number[] };
    assert.deepEqual(prepared.shape, [3, 32, 32]);
    assert.deepEqual([prepared.pixels[0], prepared.pixels[1024], prepared.pixels[2048]], [1, 0, 0]);
    for (const n of [1, 21]) assert.equal((await fetch(`${base}/head/${n}/train_interface`)).status, 400, `${n} classes`);
    const iface = (await (await fetch(`${base}/head/2/train_interface`)).json()) as { inputs: { name: string; dtype: string; shape: unknown[] }[] };
    assert.deepEqual(iface.inputs[0], { ...iface.inputs[0], name: 'images', dtype: 'float32' });
    assert.equal((await fetch(`${base}/head/2/model.onnx`)).status, 405);
    assert.equal((await fetch(`${base}/head/2/model.onnx?classes=["a","b"]`, { method: 'POST', body: new Uint8Array(12) })).status, 400);
    assert.equal((await fetch(`${base}/features.onnx`)).status, 200);
  });

  it('serves it without the drawing pad: its card says 3x32x32 and offers new classes', async () => {
    const card = (await p.locator('#card').textContent())!;
    assert.match(card, /input3x32x32/);
    assert.match(card, /new classesavailable/);
    assert.equal(await p.locator('#pad').isVisible(), false);
    assert.equal(await p.locator('#gallery-panel').isVisible(), false);
  });

  it('fine-tunes a new head on camera snapshots of two classes: the loss falls, and live predictions of each clip pick its class', async (t) => {
    await p.fill('#head-classes', 'red, blue');
    await p.dispatchEvent('#head-classes', 'change');
    await p.click('#camera');
    await p.waitForFunction(() => (window as unknown as Hooks).cnnlab.state.frameMean !== null);
    await snapshots(0, isRed, 3);
    await snapshots(1, isBlue, 3);
    assert.match((await p.locator('#head-examples').textContent())!, /red: 3, blue: 3/);
    await p.fill('#head-steps', '30');
    await p.fill('#head-lr', '0.05');
    await p.evaluate(() => (window as unknown as Hooks).cnnlab.head.train());
    const losses = await p.evaluate(() => (window as unknown as Hooks).cnnlab.state.head.losses);
    assert.equal(losses.length, 30, (await p.locator('#head-status').textContent()) ?? '');
    assert.ok(losses[29] < losses[0] * 0.5, `loss ${losses[0]} -> ${losses[29]}`);
    const status = (await p.locator('#head-status').textContent())!;
    assert.match(status, /30 steps of the new head on 6 example\(s\) in \d+ ms/);
    t.diagnostic(status);
    assert.equal(await livePrediction('red'), 'red');
    assert.equal(await livePrediction('blue'), 'blue');
    await p.screenshot({ path: join(SCREENSHOTS, 'camera-head.png'), fullPage: true });
    await p.click('#camera');
  });

  it('fine-tunes a new head on uploaded images and predicts an upload; the download is the whole model with the new classes', async () => {
    const files = await addWarmAndCool(p, '', [235, 110, 30]);
    await p.evaluate(() => (window as unknown as Hooks).cnnlab.head.train());
    await p.setInputFiles('#file', files[4]);
    await p.waitForFunction(() => document.getElementById('status')!.textContent === 'test.png');
    assert.equal(await p.locator('#top').textContent(), 'warm');
    const download = p.waitForEvent('download');
    await p.click('#head-download');
    const saved = join(dir, 'warm-cool.onnx');
    await (await download).saveAs(saved);
    const model = loadInferenceModel(saved);
    assert.deepEqual(model.classes, ['warm', 'cool']);
    assert.deepEqual(model.input.shape, [3, 32, 32]);
    // As cnnlab predict reads it: the test image is warm there too.
    const rt = await createRuntime({ ep: 'cpu' });
    const { pixels, shape } = await prepareFor(model, files[4]);
    const probs = await classify(rt, await openModelSession(rt, model), model, pixels, 1, shape);
    assert.ok(probs[0] > probs[1], `p(warm) ${probs[0]}`);
  });
});

describe('the page on WebGPU (onnxruntime-web\'s WebGPU build) in Chromium, where it gets an adapter', () => {
  let gpuServer: Server;
  let gpuBrowser: Browser;
  let p: Page;
  /** Why the page is not on WebGPU (the tests then skip saying so); undefined where it is. */
  let noWebGpu: string | undefined;
  type Hooks = {
    cnnlab: {
      ready: Promise<void>;
      backend: { kind: 'webgpu' | 'wasm'; adapter?: string; reason?: string };
      state: { head: { losses: number[] } };
      head: { train: () => Promise<void>; stepsOn: (on: 'webgpu' | 'wasm', K: number) => Promise<{ losses: number[]; ms: [number, number] }> };
    };
  };

  before(async () => {
    gpuServer = createDemoServer(await loadServedModels(['test/fixtures/families/resnet18.onnx']));
    await new Promise<void>((r) => gpuServer.listen(0, '127.0.0.1', r));
    // Chromium's WebGPU without a GPU: its software adapter (SwiftShader) where the build has it.
    gpuBrowser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--enable-unsafe-webgpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'] });
    p = await gpuBrowser.newPage({ viewport: { width: 1280, height: 1000 } });
    const errors: string[] = [];
    p.on('pageerror', (e) => errors.push(e.message));
    await p.goto(`http://127.0.0.1:${(gpuServer.address() as AddressInfo).port}/?backend=webgpu`);
    await p.evaluate(() => (window as unknown as Hooks).cnnlab.ready);
    assert.deepEqual(errors, []);
    const backend = await p.evaluate(() => (window as unknown as Hooks).cnnlab.backend);
    if (backend.kind !== 'webgpu') noWebGpu = `no WebGPU adapter in this Chromium (${backend.reason}): the page runs on wasm`;
  });

  after(async () => {
    await gpuBrowser?.close();
    gpuServer?.close();
  });

  it('stays on WebAssembly with a software adapter unless the address asks for ?backend=webgpu, and says why', async (t) => {
    if (noWebGpu) return t.skip(noWebGpu);
    const { adapter } = await p.evaluate(() => (window as unknown as Hooks).cnnlab.backend);
    if (!/swiftshader|llvmpipe|lavapipe/i.test(adapter ?? '')) return t.skip(`the adapter here (${adapter}) is not a software one`);
    const plain = await gpuBrowser.newPage();
    await plain.goto(`http://127.0.0.1:${(gpuServer.address() as AddressInfo).port}/`);
    await plain.evaluate(() => (window as unknown as Hooks).cnnlab.ready);
    const backend = await plain.evaluate(() => (window as unknown as Hooks).cnnlab.backend);
    assert.equal(backend.kind, 'wasm');
    assert.match(backend.reason ?? '', /is a software adapter, slower than WebAssembly \(\?backend=webgpu uses it\)/);
    assert.equal(await plain.locator('#backend').textContent(), 'training on WebAssembly');
    await plain.close();
  });

  it('says it trains on WebGPU, trains a new head on uploads there (the loss falls, an upload is predicted right), and the first step\'s loss equals the wasm step\'s within 1e-4', { timeout: 120_000 }, async (t) => {
    if (noWebGpu) return t.skip(noWebGpu);
    const backend = await p.evaluate(() => (window as unknown as Hooks).cnnlab.backend);
    assert.equal(await p.locator('#backend').textContent(), `training on WebGPU (${backend.adapter})`);
    const files = await addWarmAndCool(p, 'g', [40, 110, 235]);
    await p.fill('#head-steps', '20');
    await p.fill('#head-lr', '0.05');
    // The same new head's steps on each backend: its graphs for that backend, fresh sessions.
    const gpu = await p.evaluate(() => (window as unknown as Hooks).cnnlab.head.stepsOn('webgpu', 20));
    const cpu = await p.evaluate(() => (window as unknown as Hooks).cnnlab.head.stepsOn('wasm', 20));
    t.diagnostic(`20 head steps of 4 examples on WebGPU (${backend.adapter}): ${gpu.ms.map((ms) => ms.toFixed(0)).join(' / ')} ms (first run / again); on wasm: ${cpu.ms.map((ms) => ms.toFixed(0)).join(' / ')} ms`);
    assert.ok(Math.abs(gpu.losses[0] - cpu.losses[0]) <= 1e-4 * Math.abs(cpu.losses[0]), `first loss ${gpu.losses[0]} on WebGPU, ${cpu.losses[0]} on wasm`);
    await p.evaluate(() => (window as unknown as Hooks).cnnlab.head.train());
    const losses = await p.evaluate(() => (window as unknown as Hooks).cnnlab.state.head.losses);
    assert.equal(losses.length, 20, (await p.locator('#head-status').textContent()) ?? '');
    assert.ok(losses[19] < losses[0] * 0.5, `loss ${losses[0]} -> ${losses[19]}`);
    await p.setInputFiles('#file', files[4]);
    await p.waitForFunction(() => document.getElementById('status')!.textContent === 'gtest.png');
    assert.equal(await p.locator('#top').textContent(), 'cool');
    t.diagnostic((await p.locator('#head-status').textContent())!);
  });
});
