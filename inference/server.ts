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
import { lowerForWebGpu } from '../graph-builder/artifacts/webgpu.ts';
import { encodeCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { buildInferenceModel, type ModelMeta } from '../graph-builder/artifacts/inference.ts';
import { writeModelCard } from '../graph-builder/artifacts/model-card.ts';
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
import { type HeadArtifacts, PageHead, type PageTarget, stepGraphs } from './page-head.ts';
import { pageBundle } from './page-bundle.ts';
import { prepareFor, takesDigits } from './prepare-input.ts';
import { prepareImage } from './preprocess.ts';
import type { LabelledImages, ModelCard } from './web/api.ts';

/** Test images the page shows (the gallery) and measures itself on; training images it replays. */
const SAMPLES = 500;
const REPLAY = 300;

/** Uploads larger than this are refused (413): a drawing or a photo of a digit is far smaller. */
export const MAX_UPLOAD = 5 * 1024 * 1024;

/** A train step the page runs: its graph and interface, its first state, and the inference graph taking its parameters as inputs. */
type Trainer = Pick<HeadArtifacts, 'step' | 'inference' | 'state' | 'iface'>;

interface ServedModel {
  id: string;
  model: LoadedModel;
  card: ModelCard;
  /** Whole-model fine-tuning pieces, where the architecture can be rebuilt and its training images replayed. */
  train?: Trainer;
  /** The same for the page's WebGPU build: the 'webgpu' target, lowered (built on first use). */
  webgpuTrain?: () => Trainer;
  /** The graph the page predicts with on WebGPU, lowered (built on first use). */
  webgpuPage?: Uint8Array;
  /** The graph the page predicts with, where it is not the served file (a foreign model's interface differs). */
  page?: Uint8Array;
  /** Test images the page shows and measures itself on (none where the model's data does not fit its input). */
  samples?: Split;
  /** Training images the page's fine-tuning replays beside the user's examples, so it does not forget. */
  replay?: Split;
  /** New heads on the frozen backbone, where the model can be cut at its head. */
  head?: PageHead;
}

const WEB_DIR = join(import.meta.dirname, 'web');
const STATIC: Record<string, [string, string]> = {
  '/': ['index.html', 'text/html; charset=utf-8'],
  '/index.html': ['index.html', 'text/html; charset=utf-8'],
  '/style.css': ['style.css', 'text/css; charset=utf-8'],
};

/** The onnxruntime-web files the page loads, served from node_modules (no CDN). */
function ortDir(): string {
  // The package exports no package.json; its main entry lives in dist/ beside the wasm files.
  const require = createRequire(import.meta.url);
  return dirname(require.resolve('onnxruntime-web'));
}
/** The wasm build, and the WebGPU build with the asyncify wasm it loads (web/ort.ts picks one). */
const ORT_FILES = new Set(['ort.wasm.min.mjs', 'ort-wasm-simd-threaded.wasm', 'ort-wasm-simd-threaded.mjs', 'ort.webgpu.min.mjs', 'ort-wasm-simd-threaded.asyncify.wasm', 'ort-wasm-simd-threaded.asyncify.mjs']);

/** The graphs a request asks for: `?target=webgpu` for the page's WebGPU build, else the CPU kernels' (wasm). */
function targetOf(url: URL): PageTarget | string {
  const t = url.searchParams.get('target');
  if (t === null || t === 'cpu') return 'cpu';
  if (t === 'webgpu') return 'webgpu';
  return `?target=: expected cpu or webgpu, got ${JSON.stringify(t).slice(0, 40)}`;
}

/**
 * The model the page runs and fine-tunes, where one can be built: a preset or an architecture
 * file's layers named in cnnlab's metadata, or the served file itself imported (a foreign model,
 * or one cnnlab trained from an import). Undefined where none can (the page then only predicts).
 */
function pageModel(loaded: LoadedModel): Model | undefined {
  try {
    if (loaded.native) return architectureFromMetadata(loaded.metadata, loaded.path)?.model;
    return importOnnxModel(loaded.bytes, loaded.path, { outputKind: loaded.output.kind });
  } catch {
    return undefined;
  }
}

/**
 * The data the page shows samples of and replays while fine-tuning: the model's built-in
 * dataset, or the image folder its run was trained on (from the run's config.json), else MNIST
 * for a foreign digit model; none for a foreign model of another input.
 */
async function pageData(model: LoadedModel): Promise<{ dataset: string; data?: Dataset }> {
  if (isDatasetName(model.dataset)) return { dataset: model.dataset, data: await openDataset({ dataset: model.dataset }) };
  const run = model.card.run;
  const config = run ? join(run, 'config.json') : undefined;
  if (model.dataset.startsWith(FOLDER_PREFIX) && config && existsSync(config)) {
    const dataDir = (readJsonFile(config, 1024 * 1024) as { dataDir?: string }).dataDir;
    if (dataDir) return { dataset: model.dataset, data: await openDataset({ dataset: model.dataset, dataDir }, model.input.shape, { conversion: model.conversion }) };
  }
  if (model.dataset.startsWith(FOLDER_PREFIX)) throw new InputError(`${model.path}: trained on ${model.dataset}, whose folder the page needs for its samples and replay; serve it from its run folder`);
  if (model.input.shape.join('x') !== '1x28x28') return { dataset: model.dataset };
  return { dataset: 'mnist', data: await openDataset({ dataset: 'mnist' }) };
}

/** What the page normalises with, as the model's graphs take it: cnnlab's recorded normalisation, or a foreign model's preparation. */
function pageMeta(model: LoadedModel, dataset: string): ModelMeta {
  const norm: Normalization = model.card.normalization ?? { mean: 0, std: 1 };
  const prep = model.native ? norm : { mean: model.preparation.mean, std: model.preparation.std, inputRange: model.preparation.range };
  return { architecture: model.architecture, dataset, classes: model.classes, ...prep, ...(model.conversion.channelOrder || model.conversion.resize ? { conversion: model.conversion } : {}) };
}

/** The models serve shows, read as eval and predict read them (`opts`: their flags, for models without cnnlab metadata). */
export async function loadServedModels(targets: (string | undefined)[], opts: ForeignModelOptions = {}): Promise<ServedModel[]> {
  const out: ServedModel[] = [];
  for (const [i, target] of targets.entries()) {
    const model = loadInferenceModel(target, opts);
    const { dataset, data } = await pageData(model);
    const meta = pageMeta(model, dataset);
    const forward = pageModel(model);
    const params: ParamSet = new Map(model.graph.initializers.filter((t) => t.dtype === 'float32').map((t) => [t.name, t.data as Float32Array]));
    // The importer's own copies of shared initialisers (untied, named apart) carry their values.
    for (const p of forward?.params ?? []) if (p.init.kind === 'given' && params.get(p.name)?.length !== elementCount(p.shape)) params.set(p.name, p.init.data);
    const rebuilt = forward && forward.params.every((p) => params.get(p.name)?.length === elementCount(p.shape)) ? forward : undefined;
    if (!rebuilt && !model.native) throw new InputError(`${model.path}: the demo page needs ops cnnlab can import (cnnlab inspect ${model.path} says why not); eval and predict take it as it is`);
    const served: ServedModel = { id: String(i), model, card: card(i, model, dataset, data?.test.count ?? 0), samples: data && sliceSplit(data.test, SAMPLES), replay: data && sliceSplit(data.train, REPLAY) };
    if (rebuilt && data) {
      // Fine-tuning on a handful of drawings: plain SGD with momentum; the page feeds lr per step.
      // The page trains with onnxruntime-web's wasm backend (onnxruntime's CPU kernels) or its WebGPU build.
      const loss = rebuilt.outputKind === 'log-probabilities' ? 'nll' : 'cross-entropy';
      const trainer = (target: PageTarget): Trainer => {
        const built = compile(rebuilt, { optimizer: defaultOptimizer('sgd', 0, true), loss, meta, target });
        return { ...stepGraphs(built, target), state: encodeCheckpoint(built.initialCheckpoint(params, { architecture: model.architecture, step: 0 })), iface: built.iface };
      };
      let gpu: Trainer | undefined;
      served.train = trainer('cpu');
      served.webgpuTrain = () => (gpu ??= trainer('webgpu'));
    }
    // A foreign model is shown through cnnlab's image-in, probabilities-out graph of it.
    if (rebuilt && !model.native) served.page = buildInferenceModel(rebuilt, params, meta);
    if (rebuilt) {
      try {
        served.head = new PageHead(rebuilt, params, meta);
      } catch (err) {
        if (!(err instanceof CnnlabError)) throw err;
        served.card.headTuning = err.message;
      }
    } else served.card.headTuning = `${model.path}: its architecture cannot be rebuilt from its metadata`;
    served.card.fineTuning = Boolean(served.train);
    out.push(served);
  }
  return out;
}

/** The model card the page shows (fine-tuning filled in by the caller). */
function card(i: number, model: LoadedModel, dataset: string, tests: number): ModelCard {
  return {
    id: String(i),
    name: `${model.architecture} (${dataset})`,
    architecture: model.architecture,
    dataset,
    classes: model.classes,
    parameters: model.parameters,
    testAccuracy: model.testAccuracy ?? null,
    file: model.path,
    inputShape: model.input.shape,
    bgr: model.conversion.channelOrder === 'bgr',
    drawing: takesDigits(model),
    samples: Math.min(SAMPLES, tests),
    fineTuning: false,
    headTuning: true,
  };
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

const ONNX = 'application/octet-stream';

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
    form = await new Response(new Uint8Array(body), { headers: { 'content-type': contentType } }).formData();
  } catch {
    return 'not a readable multipart/form-data upload';
  }
  for (const value of form.values()) if (typeof value !== 'string') return new Uint8Array(await value.arrayBuffer());
  return 'the form holds no file';
}

/** POST of an image, prepared by `prepare` in its decode lane: planar pixels 0..1 and their shape as JSON, or 400/413/503. */
async function prepareRoute(req: IncomingMessage, res: ServerResponse, lanes: ReturnType<typeof decodeLanes>, prepare: (image: Uint8Array) => Promise<{ pixels: Float32Array; shape: readonly number[] }>): Promise<void> {
  if (req.method !== 'POST') return send(res, 405, 'POST an image\n');
  const raw = await readBody(req, res, MAX_UPLOAD);
  if (!raw) return;
  const body = await uploadedImage(raw, req.headers['content-type']);
  if (typeof body === 'string') return send(res, 400, `${body}\n`);
  try {
    const { pixels, shape } = await (await laneFor(lanes, body)).run(() => prepare(body));
    return json(res, { pixels: Array.from(pixels), shape });
  } catch (err) {
    if (err instanceof LaneFull) {
      res.setHeader('retry-after', '1');
      return send(res, 503, `busy decoding large images (${err.message}); try again shortly\n`);
    }
    if (err instanceof CnnlabError) return json(res, { error: err.message }, 400);
    throw err;
  }
}

/**
 * The parameters a page POSTs: the float32 values of the carried parameters and buffers of
 * `iface`, in its order; undefined (answered) where the body is not that.
 */
async function postedParams(req: IncomingMessage, res: ServerResponse, iface: TrainStepInterface): Promise<{ name: string; shape: number[]; data: Float32Array }[] | undefined> {
  if (req.method !== 'POST') {
    send(res, 405, 'POST the fine-tuned parameters\n');
    return undefined;
  }
  const kept = iface.carried.filter((c) => c.role === 'param' || c.role === 'buffer');
  const size = kept.reduce((a, c) => a + 4 * elementCount(c.shape), 0);
  const body = await readBody(req, res, size);
  if (!body) return undefined;
  if (body.length !== size) {
    send(res, 400, `expected ${size} bytes of float32 parameters, got ${body.length}\n`);
    return undefined;
  }
  const data = new Float32Array(new Uint8Array(body).buffer);
  let at = 0;
  return kept.map((c) => {
    const n = elementCount(c.shape);
    at += n;
    return { name: c.name, shape: c.shape, data: data.subarray(at - n, at) };
  });
}

const attachment = (res: ServerResponse, name: string) => res.setHeader('content-disposition', `attachment; filename="${name.replace(/[^A-Za-z0-9._=-]+/g, '_')}"`);

/** GET of a served model's own files: its inference graph, samples, and the whole-model fine-tuning graphs (the graphs for `target`). */
function modelFile(res: ServerResponse, served: ServedModel, file: string, target: PageTarget): void {
  const labelled = (split: Split | undefined): LabelledImages => ({ labels: Array.from(split?.labels ?? []), pixels: Buffer.from(split?.images ?? []).toString('base64') });
  switch (file) {
    case 'inference.onnx':
      if (target === 'webgpu') return send(res, 200, (served.webgpuPage ??= lowerForWebGpu(served.page ?? served.model.bytes)), ONNX);
      return send(res, 200, served.page ?? served.model.bytes, ONNX);
    case 'samples':
      return json(res, labelled(served.samples));
    case 'replay':
      return json(res, labelled(served.replay));
    case 'features.onnx':
      if (!served.head) return send(res, 404, `${served.card.headTuning}\n`);
      return send(res, 200, served.head.featuresGraph(target), ONNX);
  }
  if (!served.train) return send(res, 404, 'fine-tuning is not available for this model\n');
  return trainerFile(res, target === 'webgpu' ? served.webgpuTrain!() : served.train, file, 'inference_inputs.onnx');
}

/** GET of a train step's files: its graph, its interface, its first state, and the inference graph taking its parameters (named `inference`). */
function trainerFile(res: ServerResponse, t: Trainer, file: string, inference: string): void {
  if (file === 'train_step.onnx') return send(res, 200, t.step, ONNX);
  if (file === inference) return send(res, 200, t.inference, ONNX);
  if (file === 'train_state.bin') return send(res, 200, t.state, ONNX);
  if (file === 'train_interface') return json(res, t.iface);
  return send(res, 404, 'not found\n');
}

/** The whole model's fine-tuned parameters (POSTed by the page) as safetensors. */
async function wholeWeights(req: IncomingMessage, res: ServerResponse, served: ServedModel): Promise<void> {
  if (!served.train) return send(res, 404, 'fine-tuning is not available for this model\n');
  const tensors = await postedParams(req, res, served.train.iface);
  if (!tensors) return;
  const bytes = encodeSafetensors(tensors, writeModelCard({ architecture: served.model.architecture, classes: served.model.classes, fineTuned: 'in the demo page' }));
  attachment(res, `${served.model.architecture}-fine-tuned.safetensors`);
  return send(res, 200, bytes, 'application/octet-stream');
}

/**
 * A new head of `classes` classes: GET its train step, inference graph, first state and
 * interface; POST its trained parameters with `?classes=` the class names (JSON) for the whole
 * model with that head as an ONNX file.
 */
async function headFile(req: IncomingMessage, res: ServerResponse, url: URL, served: ServedModel, classes: number, file: string, target: PageTarget): Promise<void> {
  if (!served.head) return send(res, 404, `${served.card.headTuning}\n`);
  let head;
  try {
    head = served.head.forClasses(classes, file === 'model.onnx' ? 'cpu' : target);
  } catch (err) {
    if (err instanceof CnnlabError) return send(res, 400, `${err.message}\n`);
    throw err;
  }
  if (file === 'model.onnx') {
    if (req.method !== 'POST') return send(res, 405, 'POST the head\'s trained parameters\n');
    let names: unknown;
    try {
      names = JSON.parse(url.searchParams.get('classes') ?? 'null');
    } catch {
      names = undefined;
    }
    if (!Array.isArray(names) || names.length !== classes || !names.every((n) => typeof n === 'string' && n.length > 0 && n.length <= 100)) return send(res, 400, `?classes=: expected a JSON list of ${classes} class names\n`);
    const tensors = await postedParams(req, res, head.iface);
    if (!tensors) return;
    attachment(res, `${served.model.architecture}-${names.join('-')}.onnx`.slice(0, 120));
    return send(res, 200, served.head.wholeModel(names as string[], new Map(tensors.map((t) => [t.name, t.data]))), ONNX);
  }
  if (req.method !== 'GET') return send(res, 405, 'GET it\n');
  return trainerFile(res, head, file, 'inference.onnx');
}

/** The demo server: the page, its script (bundled on first request), onnxruntime-web's files, and the models' API. */
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
      if (req.method === 'GET' && path === '/app.js') return send(res, 200, await pageBundle(), 'text/javascript; charset=utf-8');
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
      // The digit preparation of `cnnlab predict` (a 1x28x28 digit model's), whatever the model.
      if (path === '/api/prepare') return await prepareRoute(req, res, lanes, async (image) => ({ pixels: (await prepareImage(image, 'upload')).pixels, shape: [1, 28, 28] }));
      const m = /^\/api\/models\/(\d+)\/(?:head\/(\d+)\/)?([a-z_.-]+)$/.exec(path);
      const served = m && byId.get(m[1]);
      if (!m) return send(res, 404, 'not found\n');
      if (!served) return send(res, 404, 'no such model\n');
      const target = targetOf(url);
      if (target !== 'cpu' && target !== 'webgpu') return send(res, 400, `${target}\n`);
      if (m[2]) return await headFile(req, res, url, served, Number(m[2]), m[3], target);
      if (m[3] === 'prepare') return await prepareRoute(req, res, lanes, (image) => prepareFor(served.model, image, 'upload'));
      if (m[3] === 'weights.safetensors') return await wholeWeights(req, res, served);
      if (req.method === 'GET') return modelFile(res, served, m[3], target);
      return send(res, 404, 'not found\n');
    } catch (err) {
      if (!res.headersSent) send(res, 500, `internal error: ${(err as Error).message}\n`);
      else res.destroy();
    }
  });
}
