import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { asInputError, InputError, UsageError } from '../common/errors.ts';
import { type ChannelOrder, conversionOf, describeConversion, type ImageConversion, type ResizeMode } from '../datasets/registry.ts';
import { CARD_KEYS, type CardImage, type ModelCard, readModelCard } from '../graph-builder/artifacts/model-card.ts';
import { type Normalization, normalizationMismatch } from '../graph-builder/model.ts';
import type { Graph } from '../graph-builder/graph/ir.ts';
import { decodeGraph, type DecodedGraph } from '../graph-builder/graph/onnx.ts';
import { readOnnxFile } from '../graph-builder/graph/onnx-file.ts';
import { type ImageInput, imageInputOf, probabilitiesBesideLogits } from '../graph-builder/import/io.ts';
import type { Runtime, Session } from '../runtime/ort.ts';

export type OutputKind = 'logits' | 'probabilities' | 'log-probabilities';

/** How pixels in 0..1 become the model's input: times `range`, then (x - mean) / std, each a number or one per channel (cnnlab's own graphs normalise inside). */
export interface Preparation {
  range: 1 | 255;
  mean: number | number[];
  std: number | number[];
  /** Where it came from: the model's metadata, the flags, or the default for a foreign model. */
  from: 'metadata' | 'flags' | 'default';
}

export interface LoadedModel {
  path: string;
  bytes: Uint8Array;
  architecture: string;
  dataset: string;
  classes: string[];
  parameters: number;
  testAccuracy?: number;
  metadata: Record<string, string>;
  /** What its cnnlab metadata says, checked (empty for a model cnnlab did not make). */
  card: Partial<ModelCard>;
  /** The decoded graph (its initialisers are the weights the page fine-tunes). */
  graph: Graph;
  /** The image input: its name, [C, H, W], and the batch size it was exported with, if fixed. */
  input: ImageInput;
  output: { name: string; kind: OutputKind; from: 'graph' | 'flag' | 'default' };
  preparation: Preparation;
  /** How image files become its input planes (channel order, resizing): the flags', else its metadata's, else the default (`{}`). */
  conversion: ImageConversion;
  /** Whether a flag set the conversion (else the metadata or the default did). */
  conversionFromFlags: boolean;
  /** cnnlab's own inference model (image 0..1 in, normalised inside, probabilities out). */
  native: boolean;
}

/** What the user says about a model cnnlab did not make (flags of eval, predict and serve). */
export interface ForeignModelOptions {
  outputKind?: OutputKind;
  inputRange?: 1 | 255;
  normalize?: Normalization;
  classes?: string[];
  /** Height and width of an input whose size is symbolic. */
  inputSize?: [number, number];
  channelOrder?: ChannelOrder;
  resize?: ResizeMode;
}

const MAX_MODEL_BYTES = 512 * 1024 * 1024;

/** The newest run folder under runs/ that holds a model, for commands given no model. */
export function latestRun(root = 'runs'): string | undefined {
  if (!existsSync(root)) return undefined;
  const runs = readdirSync(root)
    .map((d) => join(root, d))
    .filter((d) => existsSync(join(d, 'best.onnx')))
    .sort((a, b) => statSync(join(b, 'best.onnx')).mtimeMs - statSync(join(a, 'best.onnx')).mtimeMs);
  return runs[0];
}

/**
 * A run folder (its best.onnx) or an .onnx file: cnnlab's own inference model, or any image
 * classifier with one float [N, C, H, W] input and one class-score output.
 */
export function loadInferenceModel(target: string | undefined, opts: ForeignModelOptions = {}): LoadedModel {
  const where = target ?? latestRun();
  if (!where) throw new InputError('no model given and no run with a best.onnx under runs/; train one first (cnnlab train partB) or pass a model');
  let path = where;
  if (existsSync(where) && statSync(where).isDirectory()) {
    path = ['best.onnx', 'last.onnx', 'inference.onnx'].map((f) => join(where, f)).find(existsSync) ?? '';
    if (!path) throw new InputError(`${where}: no best.onnx, last.onnx or inference.onnx in this folder`);
  }
  if (!existsSync(path)) throw new InputError(`${path}: no such file or run folder`);
  const size = statSync(path).size;
  if (size > MAX_MODEL_BYTES) throw new InputError(`${path}: ${size} bytes is larger than any cnnlab model (limit ${MAX_MODEL_BYTES})`);
  let bytes: Uint8Array;
  try {
    bytes = readOnnxFile(path, readFileSync(path)).bytes;
  } catch (err) {
    throw asInputError(err);
  }
  let full: DecodedGraph;
  try {
    full = decodeGraph(bytes);
  } catch (err) {
    throw new InputError(`${path}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const { metadata: md, graph } = full;
  const card = readModelCard(md, path);
  const native = graph.inputs.some((i) => i.name === 'image') && graph.outputs.some((o) => o.name === 'probabilities') && card.architecture !== undefined && !card.preprocess;
  const image: CardImage = card.image ?? {};
  const input = imageInputOf(path, graph, opts.inputSize ?? image.size);
  const wrong = opts.normalize && normalizationMismatch(opts.normalize, input.shape[0]);
  if (wrong) throw new UsageError(`--normalize: ${wrong}`);
  const output = native ? { name: 'probabilities', kind: 'probabilities' as const, from: 'graph' as const } : foreignOutput(path, full, card, opts);
  const classCount = Number(graph.outputs.find((o) => o.name === output.name)?.shape?.[1]);
  let classes: string[] | undefined = opts.classes ?? card.classes;
  classes ??= Number.isInteger(classCount) && classCount !== 10 ? Array.from({ length: classCount }, (_, k) => String(k)) : ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
  if (Number.isInteger(classCount) && classCount > 0 && classes.length !== classCount) {
    throw new InputError(`${path}: output '${output.name}' scores ${classCount} classes, ${opts.classes ? '--classes' : 'the metadata'} names ${classes.length}`);
  }
  return {
    path,
    bytes,
    architecture: card.architecture ?? `onnx:${path.split(/[\\/]/).pop()}`,
    dataset: card.dataset ?? 'unknown',
    classes,
    parameters: card.parameters ?? graph.initializers.filter((t) => t.dtype === 'float32').reduce((a, t) => a + t.data.length, 0),
    testAccuracy: Number.isFinite(card.testAccuracy) ? card.testAccuracy : undefined,
    metadata: md,
    card,
    graph,
    input,
    output,
    preparation: native ? { range: 1, mean: 0, std: 1, from: 'metadata' } : preparationOf(path, card, opts, input.shape[0]),
    conversion: conversionFor(opts, image, input.shape[0]),
    conversionFromFlags: opts.channelOrder !== undefined || opts.resize !== undefined,
    native,
  };
}

/** --channel-order and --resize, else what the metadata records; BGR for a grey input is one line naming the flag. */
function conversionFor(opts: ForeignModelOptions, saved: ImageConversion, channels: number): ImageConversion {
  if (opts.channelOrder === 'bgr' && channels !== 3) throw new UsageError(`--channel-order: bgr applies to a 3-channel (RGB) input; this one takes ${channels} channel${channels === 1 ? '' : 's'}`);
  return conversionOf(opts.channelOrder ?? saved.channelOrder, opts.resize ?? saved.resize) ?? {};
}

/**
 * The class-score output and what it holds: from the graph's last op (LogSoftmax, Softmax), else
 * --output-kind, else logits. Of a logits output and its Softmax, the probabilities are read.
 */
function foreignOutput(path: string, full: DecodedGraph, card: Partial<ModelCard>, opts: ForeignModelOptions): LoadedModel['output'] {
  const pair = probabilitiesBesideLogits(full.graph);
  const outputs = pair ? full.graph.outputs.filter((o) => o.name === pair.probabilities) : full.graph.outputs;
  if (outputs.length !== 1) throw new InputError(`${path}: expected one output (class scores), found ${outputs.length}: ${outputs.map((o) => o.name).join(', ')} (two are read only as logits and their Softmax)`);
  const [o] = outputs;
  if (pair) return { name: o.name, kind: 'probabilities', from: 'graph' };
  if (o.shape && (o.shape.length !== 2 || typeof o.shape[1] !== 'number')) throw new InputError(`${path}: output '${o.name}' is [${o.shape.join(', ')}]; expected class scores [N, classes]`);
  const last = full.graph.nodes.find((n) => n.outputs.includes(o.name));
  const detected: OutputKind | undefined = last?.op === 'LogSoftmax' ? 'log-probabilities' : last?.op === 'Softmax' ? 'probabilities' : undefined;
  if (opts.outputKind) return { name: o.name, kind: opts.outputKind, from: 'flag' };
  if (!detected && card.outputKind) return { name: o.name, kind: card.outputKind, from: 'graph' };
  return { name: o.name, kind: detected ?? 'logits', from: detected ? 'graph' : 'default' };
}

/** The flags' preparation (checked against the input by the caller), else the metadata's, else none. */
function preparationOf(path: string, card: Partial<ModelCard>, opts: ForeignModelOptions, channels: number): Preparation {
  if (opts.inputRange !== undefined || opts.normalize) {
    return { range: opts.inputRange ?? 1, mean: opts.normalize?.mean ?? 0, std: opts.normalize?.std ?? 1, from: 'flags' };
  }
  const saved = card.preprocess;
  const wrong = saved && normalizationMismatch(saved, channels);
  if (wrong) throw new InputError(`${path}: metadata ${CARD_KEYS.preprocess} holds ${wrong.split(';')[0]}`);
  return saved ? { ...saved, from: 'metadata' } : { range: 1, mean: 0, std: 1, from: 'default' };
}

/** A mean or std as the lines print it: `0.5`, or `[0.485, 0.456, 0.406]`. */
function stat(v: number | number[]): string {
  return Array.isArray(v) ? `[${v.join(', ')}]` : String(v);
}

const isIdentity = (p: Normalization) => [p.mean].flat().every((v) => v === 0) && [p.std].flat().every((v) => v === 1);

/**
 * One line on how a model's inputs and outputs are read (eval and predict print it): for a
 * foreign model always; for cnnlab's own (which normalises inside) where its images are read
 * other than as RGB stretched to the input.
 */
export function describePreparation(m: LoadedModel): string | undefined {
  const converted = m.conversion.channelOrder || m.conversion.resize ? `; images read as ${describeConversion(m.conversion)}${m.conversionFromFlags ? ' (from the flags)' : ' (from its metadata)'}` : '';
  if (m.native) {
    if (!converted) return undefined;
    const norm = m.card.normalization;
    return `${m.path}: input 'image' [N, ${m.input.shape.join(', ')}], pixels 0..1${norm ? `, normalised inside the model by (x - ${stat(norm.mean)}) / ${stat(norm.std)}` : ''}${converted}`;
  }
  const p = m.preparation;
  const prep = `pixels 0..${p.range === 255 ? 255 : 1}${isIdentity(p) ? ', no normalisation' : `, then (x - ${stat(p.mean)}) / ${stat(p.std)}`}`;
  const from = p.from === 'default' ? ' (the default for a model without cnnlab metadata; --input-range and --normalize change it)' : p.from === 'flags' ? ' (from the flags)' : ' (from its metadata)';
  const out = `output '${m.output.name}' read as ${m.output.kind}${m.output.from === 'default' ? ' (its last op is not Softmax or LogSoftmax; --output-kind changes it)' : ''}`;
  return `${m.path}: input '${m.input.name}' [${m.input.fixedBatch ?? 'N'}, ${m.input.shape.join(', ')}], ${prep}${from}${converted}; ${out}`;
}

/**
 * Class probabilities [n x classes] of n images given as planar [C, H, W] pixels in 0..1
 * (`shape`, default MNIST's 1x28x28): prepared as the model wants them (a grey channel repeated
 * for an RGB model), run in batches of a fixed export batch where there is one (the last
 * padded), and turned into probabilities from logits or log-probabilities.
 */
export async function classify(rt: Runtime, session: Session, m: LoadedModel, pixels: Float32Array, n: number, shape: readonly [number, number, number] = [1, 28, 28]): Promise<Float32Array> {
  const [c, h, w] = m.input.shape;
  const [c0, h0, w0] = shape;
  if (h0 !== h || w0 !== w || (c0 !== c && c0 !== 1)) throw new InputError(`${m.path}: input '${m.input.name}' takes ${m.input.shape.join('x')} images; these are ${shape.join('x')}`);
  const { range } = m.preparation;
  const perChannel = (v: number | number[]) => Array.from({ length: c }, (_, ch) => (Array.isArray(v) ? v[ch] : v));
  const [mean, std] = [perChannel(m.preparation.mean), perChannel(m.preparation.std)];
  const chunk = m.input.fixedBatch ?? n;
  const K = m.classes.length;
  const probs = new Float32Array(n * K);
  for (let start = 0; start < n; start += chunk) {
    const count = Math.min(chunk, n - start);
    const x = new Float32Array(chunk * c * h * w);
    for (let i = 0; i < count; i++) {
      for (let ch = 0; ch < c; ch++) {
        const from = ((start + i) * c0 + (c0 === 1 ? 0 : ch)) * h * w;
        // Planar [C, H, W], or interleaved [H, W, C] for a channels-last input.
        const [to, stride] = m.input.channelsLast ? [i * h * w * c + ch, c] : [(i * c + ch) * h * w, 1];
        for (let j = 0; j < h * w; j++) x[to + j * stride] = (pixels[from + j] * range - mean[ch]) / std[ch];
      }
    }
    const out = await session.run({ [m.input.name]: new rt.ort.Tensor('float32', x, m.input.channelsLast ? [chunk, h, w, c] : [chunk, c, h, w]) });
    const y = out[m.output.name].data as Float32Array;
    for (let i = 0; i < count; i++) {
      const row = y.subarray(i * K, (i + 1) * K);
      const dst = probs.subarray((start + i) * K, (start + i + 1) * K);
      if (m.output.kind === 'probabilities') dst.set(row);
      else {
        const max = Math.max(...row);
        let sum = 0;
        for (let k = 0; k < K; k++) sum += dst[k] = Math.exp(row[k] - max);
        for (let k = 0; k < K; k++) dst[k] /= sum;
      }
    }
  }
  return probs;
}

/** An onnxruntime session for a loaded model; a model onnxruntime refuses is a one-line error naming the file. */
export async function openModelSession(rt: Runtime, model: LoadedModel): Promise<Session> {
  try {
    return await rt.createSession(model.bytes);
  } catch (err) {
    throw new InputError(`${model.path}: onnxruntime cannot load it (${(err as Error).message.split('\n')[0].slice(0, 300)})`);
  }
}
