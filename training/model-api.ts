/**
 * The programmatic API for trained models: evaluate, predict, export and inspect, as the CLI's
 * eval, predict, export and inspect commands do (they call these), with plain objects back.
 */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import sharp from 'sharp';
import { CnnlabError, UsageError } from '../common/errors.ts';
import { writeFileAtomic } from '../common/files.ts';
import { misclassifiedTiles, renderGrid } from '../datasets/grid.ts';
import { isFolderRef, openDataset } from '../datasets/open.ts';
import { type DatasetName, FOLDER_PREFIX, type ImageShape, isDatasetName } from '../datasets/registry.ts';
import type { Split } from '../datasets/sources.ts';
import { evaluateInference } from '../inference/evaluate.ts';
import { type ExportFormat, exportModel as exportParameters, runModelFile } from '../inference/export.ts';
import { inspectModel as inspectReport } from '../inference/inspect.ts';
import { describePreparation, type ForeignModelOptions, type LoadedModel, loadInferenceModel, openModelSession } from '../inference/model.ts';
import { type Prediction, predictPixels } from '../inference/predict.ts';
import { prepareFor } from '../inference/prepare-input.ts';
import { createRuntime, type EpName } from '../runtime/ort.ts';

export type { Prediction } from '../inference/predict.ts';
export type { ExportFormat } from '../inference/export.ts';

/** Images in memory: `count` x C x H x W pixels 0..255 (planar, row-major), and a label per image. */
export interface ImageSet {
  images: Uint8Array;
  labels: Uint8Array;
  /** Per-image [C, H, W]. */
  shape: [number, number, number];
}

/** How a model is read: a run folder (its best.onnx) or an .onnx file, default the newest run under runs/; for a model cnnlab did not make, what it expects. */
export interface ModelOptions extends ForeignModelOptions {
  model?: string;
  /** Lines worth saying about the model (how its input is prepared); default none. */
  log?: (line: string) => void;
}

export interface EvaluateOptions extends ModelOptions {
  /** A built-in dataset (default: the one the model was trained on). */
  dataset?: DatasetName;
  /** The dataset's IDX files, or image folders train/<class>/ and test/<class>/. */
  dataDir?: string;
  /** Images in memory instead of a dataset. */
  data?: ImageSet;
  split?: 'test' | 'train';
  ep?: EpName;
  /** Write a PNG grid of up to `n` (default 48) misclassified images to `file`. */
  misclassified?: { file: string; n?: number };
}

export interface EvaluateResult {
  model: string;
  architecture: string;
  /** What the model was trained on ('unknown' for a model cnnlab did not make). */
  trainedOn: string;
  dataset: string;
  split: 'test' | 'train';
  count: number;
  loss: number;
  accuracy: number;
  classes: readonly string[];
  perClass: number[];
  /** confusion[true][predicted] */
  confusion: number[][];
  /** The predicted class of each image. */
  predicted: Uint8Array;
  /** The probability of each image's predicted class. */
  confidence: Float32Array;
  seconds: number;
  misclassified: { count: number; shown: number; file?: string };
}

/** The image folders a run trained on, where its model sits in its run folder and the folders are still there. */
function recordedFolder(model: LoadedModel): string | undefined {
  if (!model.dataset.startsWith(FOLDER_PREFIX)) return undefined;
  const config = join(dirname(model.path), 'config.json');
  try {
    const dir = (JSON.parse(readFileSync(config, 'utf8')) as { flags?: { 'data-dir'?: unknown } }).flags?.['data-dir'];
    return typeof dir === 'string' && existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Three planes with the first and last swapped: BGR shown as RGB in the misclassified grid. */
function planesSwapped(pixels: Uint8Array): Uint8Array {
  const n = pixels.length / 3;
  const out = pixels.slice();
  out.set(pixels.subarray(2 * n), 0);
  out.set(pixels.subarray(0, n), 2 * n);
  return out;
}

/** The model a set of options names, and what is worth saying about how its input is prepared. */
function loadModel(o: ModelOptions): LoadedModel {
  const { model: target, log, ...foreign } = o;
  const model = loadInferenceModel(target, foreign);
  const said = describePreparation(model);
  if (said) log?.(said);
  return model;
}

/** Images in memory as a split, checked against themselves (`what` names them in the message). */
export function splitOf(d: ImageSet, what = 'data'): Split {
  const size = d.shape[0] * d.shape[1] * d.shape[2];
  if (d.images.length !== d.labels.length * size) throw new UsageError(`${what}: ${d.labels.length} labels of ${d.shape.join('x')} images need ${d.labels.length * size} pixels, got ${d.images.length}`);
  return { images: d.images, labels: d.labels, count: d.labels.length, shape: d.shape as ImageShape };
}

/** The split to evaluate on and its class names: in memory, image folders (the run's own where recorded), or a dataset. */
async function evaluationData(model: LoadedModel, o: EvaluateOptions): Promise<{ name: string; split: Split; classes: readonly string[] }> {
  if (o.data) return { name: 'data', split: splitOf(o.data), classes: model.classes };
  const dataDir = o.dataDir ?? (o.dataset ? undefined : recordedFolder(model));
  const folder = dataDir !== undefined && isFolderRef({ dataDir });
  if (!folder && !o.dataset && model.dataset.startsWith(FOLDER_PREFIX)) throw new UsageError(`${model.path}: trained on image folders (${model.dataset}); pass them with --data-dir DIR`);
  if (folder && !o.dataDir) o.log?.(`the run's images: ${dataDir}`);
  const data = await openDataset({ dataset: folder ? undefined : (o.dataset ?? (isDatasetName(model.dataset) ? model.dataset : 'mnist')), dataDir }, model.input.shape, { conversion: model.conversion });
  if (data.info.classes.length !== model.classes.length) throw new UsageError(`${model.path}: scores ${model.classes.length} classes; ${data.info.name} has ${data.info.classes.length}`);
  return { name: data.info.name, split: o.split === 'train' ? data.train : data.test, classes: o.classes ? model.classes : data.info.classes };
}

/** Evaluates a run or .onnx model: accuracy, loss, per-class accuracy, confusion matrix, and optionally a grid of misclassified images. */
export async function evaluate(o: EvaluateOptions = {}): Promise<EvaluateResult> {
  const n = o.misclassified?.n ?? 48;
  if (!Number.isInteger(n) || n < 0) throw new UsageError(`--n: expected a whole number >= 0, got ${n}`);
  const model = loadModel(o);
  const { name, split, classes } = await evaluationData(model, o);
  const rt = await createRuntime({ ep: o.ep ?? 'cpu' });
  const session = await openModelSession(rt, model);
  const t0 = performance.now();
  const r = await evaluateInference(rt, session, model, split);
  const seconds = (performance.now() - t0) / 1000;
  await session.release();
  const wrong = r.count - r.confusion.reduce((a, row, k) => a + row[k], 0);
  const which = o.split ?? 'test';
  let shown = 0;
  if (o.misclassified) {
    const tiles = misclassifiedTiles(split, r.predicted, classes, n).map((t) => (model.conversion.channelOrder === 'bgr' ? { ...t, pixels: planesSwapped(t.pixels) } : t));
    if (tiles.length) writeFileAtomic(o.misclassified.file, await renderGrid(tiles, { columns: 8, title: `${model.architecture} on ${name} ${which}: misclassified (true → predicted)` }));
    shown = tiles.length;
  }
  return {
    model: model.path,
    architecture: model.architecture,
    trainedOn: model.dataset,
    dataset: name,
    split: which,
    count: r.count,
    loss: r.loss,
    accuracy: r.accuracy,
    classes,
    perClass: r.perClass,
    confusion: r.confusion,
    predicted: r.predicted,
    confidence: r.confidence,
    seconds,
    misclassified: { count: wrong, shown, ...(shown ? { file: o.misclassified!.file } : {}) },
  };
}

/** An image prepared already: pixels 0..1, planar [C, H, W] as the model takes them. */
export interface ImageTensor {
  pixels: Float32Array;
  shape: [number, number, number];
}

/** An image to classify: a file, an encoded image in memory (PNG, JPEG, WebP, GIF), or prepared pixels. */
export type PredictInput = string | Uint8Array | ImageTensor;

export interface PredictOptions extends ModelOptions {
  /** How many classes to return per image (1..10, default 3). */
  top?: number;
  /** Write what the model sees of each image file beside it as <image>.input.png. */
  showInput?: boolean;
}

/** One image's top classes, or why it could not be read (the others are classified all the same). */
export interface PredictResult {
  /** The file, or `#i` for the i-th input given in memory. */
  image: string;
  top?: Prediction[];
  /** The prepared input written with showInput. */
  input?: string;
  error?: string;
}

/** The prepared input as a PNG beside the image, 4x with hard pixel edges (BGR planes shown in their true colours). */
async function writeInput(file: string, pixels: Float32Array, [c, h, w]: readonly [number, number, number], bgr = false): Promise<string> {
  const out = `${file.replace(/\.[^./\\]+$/, '')}.input.png`;
  const interleaved = Buffer.alloc(c * h * w);
  for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) interleaved[p * c + (bgr ? c - 1 - ch : ch)] = Math.round(pixels[ch * h * w + p] * 255);
  const png = await sharp(interleaved, { raw: { width: w, height: h, channels: c as 1 | 3 } })
    .resize(4 * w, 4 * h, { kernel: 'nearest' })
    .png()
    .toBuffer();
  writeFileAtomic(out, png);
  return out;
}

/** Classifies images with a run or .onnx model: each image's top classes, or the one-line reason it could not be read. */
export async function predict(images: PredictInput[], o: PredictOptions = {}): Promise<{ model: string; results: PredictResult[] }> {
  const top = o.top ?? 3;
  if (!Number.isInteger(top) || top < 1 || top > 10) throw new UsageError(`--top: expected 1..10, got ${top}`);
  const model = loadModel(o);
  const rt = await createRuntime({ ep: 'cpu' });
  const session = await openModelSession(rt, model);
  const results: PredictResult[] = [];
  for (const [i, input] of images.entries()) {
    const image = typeof input === 'string' ? input : `#${i}`;
    try {
      const t = typeof input === 'string' || input instanceof Uint8Array ? await prepareFor(model, input, image) : input;
      const found = await predictPixels(rt, session, model, t.pixels, Math.min(top, model.classes.length), t.shape);
      const shown = o.showInput && typeof input === 'string' ? await writeInput(input, t.pixels, t.shape, model.conversion.channelOrder === 'bgr') : undefined;
      results.push({ image, top: found, ...(shown ? { input: shown } : {}) });
    } catch (err) {
      if (!(err instanceof CnnlabError)) throw err;
      results.push({ image, error: err.message });
    }
  }
  await session.release();
  return { model: model.path, results };
}

export interface ExportOptions {
  /** safetensors (PyTorch), npz (NumPy) or onnx; default safetensors. */
  format?: ExportFormat;
  /** A run folder's best epoch (best.onnx, default) or last (last.onnx). */
  which?: 'best' | 'last';
  /** The output file (default: beside the model, e.g. best.safetensors). */
  out?: string;
}

/** Writes a run's (or .onnx model's) trained parameters as safetensors, npz or ONNX; says where and how much. */
export function exportModel(run: string, o: ExportOptions = {}): { file: string; from: string; tensors: number; values: number } {
  const from = runModelFile(run, o.which ?? 'best');
  const format = o.format ?? 'safetensors';
  const file = o.out ?? from.replace(/\.onnx$/i, '') + (format === 'onnx' ? '.export.onnx' : `.${format}`);
  return { file, from, ...exportParameters(from, format, file) };
}

export interface InspectOptions {
  /** Height and width of an input whose size is symbolic. */
  inputSize?: [number, number];
  /** Mark what train's `freeze` (globs or 'backbone') would keep fixed. */
  freeze?: string;
}

/** What an ONNX model holds (inputs, outputs, ops, parameters) and what cnnlab can do with it, as the report `cnnlab inspect` prints. */
export function inspectModel(file: string, o: InspectOptions = {}): { file: string; report: string } {
  return { file, report: inspectReport(file, o.inputSize, o.freeze) };
}
