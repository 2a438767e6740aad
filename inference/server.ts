import { existsSync, readFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { CnnlabError, InputError } from '../common/errors.ts';
import { FOLDER_PREFIX, isDatasetName } from '../datasets/registry.ts';
import { openDataset } from '../datasets/open.ts';
import { readJsonFile } from '../common/json.ts';
import { type Dataset, sliceSplit, type Split } from '../datasets/sources.ts';
import { compile } from '../graph-builder/artifacts/compile.ts';
import { encodeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { buildInferenceModel, type ModelMeta } from '../graph-builder/artifacts/inference.ts';
import type { TrainStepInterface } from '../graph-builder/artifacts/train-step.ts';
import { architectureFromMetadata } from '../graph-builder/dsl/arch.ts';
import { importOnnxModel } from '../graph-builder/import/onnx-model.ts';
import { elementCount, type Model } from '../graph-builder/model.ts';
import type { ParamSet } from '../graph-builder/dsl/init.ts';
import { defaultOptimizer } from '../graph-builder/optimizers.ts';
import { type ForeignModelOptions, type LoadedModel, loadInferenceModel } from './model.ts';
import type { Normalization } from '../graph-builder/model.ts';
import sharp from 'sharp';
import { encodeSafetensors } from '../graph-builder/export/safetensors.ts';
import { DecodeLane, LaneFull } from './decode-lane.ts';
import { prepareImage } from './preprocess.ts';

/** Test images the page shows (the gallery) and measures itself on; training images it replays. */
const SAMPLES = 500;
const REPLAY = 300;

/** Uploads larger than this are refused (413): a drawing or a photo of a digit is far smaller. */
export const MAX_UPLOAD = 5 * 1024 * 1024;

interface ServedModel {
  id: string;
  model: LoadedModel;
  card: Record<string, unknown>;
  /** Fine-tuning pieces, where the architecture can be rebuilt (presets and JSON specs). */
  train?: { step: Uint8Array; inference: Uint8Array; state: Uint8Array; iface: TrainStepInterface };
  /** The graph the page predicts with, where it is not the served file (a foreign model's interface differs). */
  page?: Uint8Array;
  /** Test images the page shows and measures itself on. */
  samples: Split;
  /** Training images the page's fine-tuning replays beside the user's examples, so it does not forget. */
  replay: Split;
}

const WEB_DIR = join(import.meta.dirname, 'web');
const STATIC: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/app.js': ['app.js', 'text/javascript; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};

/** The onnxruntime-web files the page loads, served from node_modules (no CDN). */
function ortDir(): string {
  // The package exports no package.json; its main entry lives in dist/ beside the wasm files.
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('onnxruntime-web'));
}
const ORT_FILES = new Set(['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.wasm', 'ort-wasm-simd-threaded.mjs']);

/**
 * The model the page runs and fine-tunes, where one can be built: a preset or an architecture
 * file's layers named in cnnlab's metadata, or the served file itself imported (a foreign model,
 * or one cnnlab trained from an import). Undefined where none can (the page then only predicts).
 */
function pageModel(loaded: LoadedModel): Model | undefined {
  if (loaded.native) {
    try {
      return architectureFromMetadata(loaded.metadata, loaded.path)?.model;
    } catch {
      return undefined;
    }
  }
  try {
    const model = importOnnxModel(loaded.bytes, loaded.path, { outputKind: loaded.output.kind });
    return model.inputShape.join('x') === '1x28x28' ? model : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The data the page shows samples of and replays while fine-tuning: the model's built-in
 * dataset, or the image folder its run was trained on (from the run's config.json), else MNIST.
 */
async function pageData(model: LoadedModel): Promise<{ dataset: string; data: Dataset }> {
  if (isDatasetName(model.dataset)) return { dataset: model.dataset, data: await openDataset({ dataset: model.dataset }) };
  const run = model.metadata['cnnlab.run'];
  const config = run ? join(run, 'config.json') : undefined;
  if (model.dataset.startsWith(FOLDER_PREFIX) && config && existsSync(config)) {
    const dataDir = (readJsonFile(config, 1024 * 1024) as { dataDir?: string }).dataDir;
    if (dataDir) return { dataset: model.dataset, data: await openDataset({ dataset: model.dataset, dataDir }, model.input.shape, { conversion: model.conversion }) };
  }
  if (model.dataset.startsWith(FOLDER_PREFIX)) throw new InputError(`${model.path}: trained on ${model.dataset}, whose folder the page needs for its samples and replay; serve it from its run folder`);
  return { dataset: 'mnist', data: await openDataset({ dataset: 'mnist' }) };
}

/** The models serve shows, read as eval and predict read them (`opts`: their flags, for models without cnnlab metadata). */
export async function loadServedModels(targets: (string | undefined)[], opts: ForeignModelOptions = {}): Promise<ServedModel[]> {
  const out: ServedModel[] = [];
  for (const [i, target] of targets.entries()) {
    const model = loadInferenceModel(target, opts);
    if (model.input.shape.join('x') !== '1x28x28') throw new InputError(`${model.path}: the demo page draws 1x28x28 images; this model takes ${model.input.shape.join('x')} (eval and predict take it as it is)`);
    const { dataset, data } = await pageData(model);
    const norm = JSON.parse(model.metadata['cnnlab.normalization'] ?? '{"mean":0,"std":1}') as Normalization;
    const card = {
      id: String(i),
      name: `${model.architecture} (${dataset})`,
      architecture: model.architecture,
      dataset,
      classes: model.classes,
      parameters: model.parameters,
      testAccuracy: model.testAccuracy ?? null,
      file: model.path,
      normalization: norm,
    };
    const served: ServedModel = {
      id: String(i),
      model,
      card,
      samples: sliceSplit(data.test, SAMPLES),
      replay: sliceSplit(data.train, REPLAY),
    };
    const forward = pageModel(model);
    const params: ParamSet = new Map(model.graph.initializers.filter((t) => t.dtype === 'float32').map((t) => [t.name, t.data as Float32Array]));
    if (forward && forward.params.every((p) => params.get(p.name)?.length === elementCount(p.shape))) {
      const prep = model.native ? norm : { mean: model.preparation.mean, std: model.preparation.std, inputRange: model.preparation.range };
      const meta: ModelMeta = { architecture: model.architecture, dataset, classes: model.classes, ...prep };
      // Fine-tuning on a handful of drawings: plain SGD with momentum; the page feeds lr per step.
      // The page trains with onnxruntime-web's wasm backend: onnxruntime's CPU kernels.
      const built = compile(forward, { optimizer: defaultOptimizer('sgd', 0, true), loss: forward.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy', meta, target: 'cpu' });
      served.train = { step: built.trainStep, inference: built.inference('inputs'), state: encodeCheckpoint(built.initialCheckpoint(params, { architecture: model.architecture, step: 0 })), iface: built.iface };
      // A foreign model is shown through cnnlab's image-in, probabilities-out graph of it.
      if (!model.native) served.page = buildInferenceModel(forward, params, meta);
    } else if (!model.native) {
      throw new InputError(`${model.path}: the demo page needs a 1x28x28 input and ops cnnlab can import (cnnlab inspect ${model.path} says why not); eval and predict take it as it is`);
    }
    (served.card as Record<string, unknown>).fineTuning = Boolean(served.train);
    out.push(served);
  }
  return out;
}

/**
 * Every response makes the page cross-origin isolated (COOP + COEP): browsers give WebAssembly
 * threads (SharedArrayBuffer) only to such pages, and every resource here is same-origin.
 */
const HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-embedder-policy': 'require-corp',
  'cross-origin-resource-policy': 'same-origin',
};

function send(res: ServerResponse, status: number, body: string | Uint8Array, type = 'text/plain; charset=utf-8'): void {
  res.writeHead(status, { ...HEADERS, 'content-type': type, 'content-length': Buffer.byteLength(body) });
  res.end(body);
}

function json(res: ServerResponse, value: unknown, status = 200): void {
  send(res, status, JSON.stringify(value), 'application/json');
}

/** Reads a request body up to `limit` bytes; past it, answers 413 and resolves undefined. */
function readBody(req: IncomingMessage, res: ServerResponse, limit: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    const declared = Number(req.headers['content-length'] ?? 0);
    if (declared > limit) {
      send(res, 413, `upload larger than ${limit} bytes\n`);
      req.resume();
      resolve(undefined);
      return;
    }
    const chunks: Buffer[] = [];
    let size = 0;
    let done = false;
    req.on('data', (c: Buffer) => {
      if (done) return;
      size += c.length;
      if (size > limit) {
        done = true;
        send(res, 413, `upload larger than ${limit} bytes\n`);
        resolve(undefined);
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => {
      if (!done) resolve(Buffer.concat(chunks));
    });
    req.on('error', () => {
      if (!done) resolve(undefined);
    });
  });
}

/** Images over this many pixels are decoded in their own, narrower lane. */
export const LARGE_IMAGE_PIXELS = 4_000_000;

/** The decode lanes: ordinary images (two at a time, as many cores as this machine has) and large ones (one at a time, four waiting). */
export function decodeLanes(): { small: DecodeLane; large: DecodeLane } {
  return { small: new DecodeLane(2, 64), large: new DecodeLane(1, 4) };
}

/** The lane an upload decodes in, from its header alone (sharp reads no pixels for this). */
async function laneFor(lanes: ReturnType<typeof decodeLanes>, image: Uint8Array): Promise<DecodeLane> {
  try {
    const { width = 0, height = 0 } = await sharp(image).metadata();
    return width * height > LARGE_IMAGE_PIXELS ? lanes.large : lanes.small;
  } catch {
    return lanes.small; // not an image: prepareImage says so in one line
  }
}

/**
 * The image of an upload: the raw body, or the first file of a multipart/form-data form (what an
 * HTML form or `curl -F image=@digit.png` sends). A string says what is wrong.
 */
async function uploadedImage(body: Buffer, contentType: string | undefined): Promise<Uint8Array | string> {
  if (!contentType?.toLowerCase().startsWith('multipart/form-data')) return body.length ? body : 'empty upload';
  let form: FormData;
  try {
    form = await new Response(body, { headers: { 'content-type': contentType } }).formData();
  } catch {
    return 'not a readable multipart/form-data upload';
  }
  for (const value of form.values()) if (typeof value !== 'string') return new Uint8Array(await value.arrayBuffer());
  return 'the form holds no file';
}

export function createDemoServer(models: ServedModel[], lanes = decodeLanes()): Server {
  const ort = ortDir();
  const byId = new Map(models.map((m) => [m.id, m]));
  return createServer(async (req, res) => {
    try {
      const url = new URL(req.url ?? '/', 'http://localhost');
      const path = url.pathname;
      if (req.method === 'GET' && STATIC[path]) {
        const [file, type] = STATIC[path];
        return send(res, 200, readFileSync(join(WEB_DIR, file)), type);
      }
      if (path === '/favicon.ico') {
        res.writeHead(204).end();
        return;
      }
      if (req.method === 'GET' && path.startsWith('/ort/')) {
        const file = path.slice(5);
        if (!ORT_FILES.has(file)) return send(res, 404, 'not found\n');
        return send(res, 200, readFileSync(join(ort, file)), file.endsWith('.wasm') ? 'application/wasm' : 'text/javascript; charset=utf-8');
      }
      if (req.method === 'GET' && path === '/api/models') return json(res, models.map((m) => m.card));
      const m = /^\/api\/models\/(\d+)\/([a-z_.-]+)$/.exec(path);
      if (req.method === 'GET' && m) {
        const served = byId.get(m[1]);
        if (!served) return send(res, 404, 'no such model\n');
        switch (m[2]) {
          case 'inference.onnx':
            return send(res, 200, served.page ?? served.model.bytes, 'application/octet-stream');
          case 'samples':
          case 'replay': {
            const split = m[2] === 'samples' ? served.samples : served.replay;
            return json(res, { labels: Array.from(split.labels), pixels: Buffer.from(split.images).toString('base64') });
          }
          case 'train_step.onnx':
          case 'inference_inputs.onnx':
          case 'train_state.bin':
            if (!served.train) return send(res, 404, 'fine-tuning is not available for this model\n');
            return send(res, 200, m[2] === 'train_step.onnx' ? served.train.step : m[2] === 'inference_inputs.onnx' ? served.train.inference : served.train.state, 'application/octet-stream');
          case 'train_interface':
            if (!served.train) return send(res, 404, 'fine-tuning is not available for this model\n');
            return json(res, served.train.iface);
        }
        return send(res, 404, 'not found\n');
      }
      const w = /^\/api\/models\/(\d+)\/weights\.safetensors$/.exec(path);
      if (w) {
        if (req.method !== 'POST') return send(res, 405, 'POST the fine-tuned parameters\n');
        const served = byId.get(w[1]);
        if (!served?.train) return send(res, 404, 'fine-tuning is not available for this model\n');
        const kept = served.train.iface.carried.filter((c) => c.role === 'param' || c.role === 'buffer');
        const size = kept.reduce((a, c) => a + 4 * elementCount(c.shape), 0);
        const body = await readBody(req, res, size);
        if (!body) return;
        if (body.length !== size) return send(res, 400, `expected ${size} bytes of float32 parameters, got ${body.length}\n`);
        const data = new Float32Array(new Uint8Array(body).buffer);
        let at = 0;
        const tensors = kept.map((c) => {
          const n = elementCount(c.shape);
          const t = { name: c.name, shape: c.shape, data: data.subarray(at, at + n) };
          at += n;
          return t;
        });
        const bytes = encodeSafetensors(tensors, { 'cnnlab.architecture': served.model.architecture, 'cnnlab.classes': JSON.stringify(served.model.classes), 'cnnlab.fine_tuned': 'in the demo page' });
        res.setHeader('content-disposition', `attachment; filename="${served.model.architecture.replace(/[^A-Za-z0-9._=-]+/g, '_')}-fine-tuned.safetensors"`);
        return send(res, 200, bytes, 'application/octet-stream');
      }
      if (path === '/api/prepare') {
        if (req.method !== 'POST') return send(res, 405, 'POST an image\n');
        const raw = await readBody(req, res, MAX_UPLOAD);
        if (!raw) return;
        const body = await uploadedImage(raw, req.headers['content-type']);
        if (typeof body === 'string') return send(res, 400, `${body}\n`);
        try {
          const { pixels } = await (await laneFor(lanes, body)).run(() => prepareImage(body, 'upload'));
          return json(res, { pixels: Array.from(pixels) });
        } catch (err) {
          if (err instanceof LaneFull) {
            res.setHeader('retry-after', '1');
            return send(res, 503, `busy decoding large images (${err.message}); try again shortly\n`);
          }
          if (err instanceof CnnlabError) return json(res, { error: err.message }, 400);
          throw err;
        }
      }
      return send(res, 404, 'not found\n');
    } catch (err) {
      if (!res.headersSent) send(res, 500, `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  });
}
