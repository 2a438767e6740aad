import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CnnlabError } from '../common/errors.ts';
import { PREPARATION_KEY, readPreparation } from '../graph-builder/artifacts/compile.ts';
import type { Graph } from '../graph-builder/graph/ir.ts';
import { decodeGraph, type DecodedGraph } from '../graph-builder/graph/onnx.ts';
import type { Runtime, Session } from '../runtime/ort.ts';

export type OutputKind = 'logits' | 'probabilities' | 'log-probabilities';

/** How pixels in 0..1 become the model's input: times `range`, then (x - mean) / std (cnnlab's own graphs normalise inside). */
export interface Preparation {
  range: 1 | 255;
  mean: number;
  std: number;
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
  /** The decoded graph (its initialisers are the weights the page fine-tunes). */
  graph: Graph;
  /** The image input: its name, [C, H, W], and the batch size it was exported with, if fixed. */
  input: { name: string; shape: [number, number, number]; fixedBatch?: number };
  output: { name: string; kind: OutputKind; from: 'graph' | 'flag' | 'default' };
  preparation: Preparation;
  /** cnnlab's own inference model (image 0..1 in, normalised inside, probabilities out). */
  native: boolean;
}

/** What the user says about a model cnnlab did not make (flags of eval, predict and serve). */
export interface ForeignModelOptions {
  outputKind?: OutputKind;
  inputRange?: 1 | 255;
  normalize?: { mean: number; std: number };
  classes?: string[];
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
  if (!where) throw new CnnlabError('no model given and no run with a best.onnx under runs/; train one first (cnnlab train partB) or pass a model', 2);
  let path = where;
  if (existsSync(where) && statSync(where).isDirectory()) {
    path = ['best.onnx', 'last.onnx', 'inference.onnx'].map((f) => join(where, f)).find(existsSync) ?? '';
    if (!path) throw new CnnlabError(`${where}: no best.onnx, last.onnx or inference.onnx in this folder`, 2);
  }
  if (!existsSync(path)) throw new CnnlabError(`${path}: no such file or run folder`, 2);
  const size = statSync(path).size;
  if (size > MAX_MODEL_BYTES) throw new CnnlabError(`${path}: ${size} bytes is larger than any cnnlab model (limit ${MAX_MODEL_BYTES})`);
  const bytes = readFileSync(path);
  let full: DecodedGraph;
  try {
    full = decodeGraph(bytes);
  } catch (err) {
    throw new CnnlabError(`${path}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const { metadata: md, graph } = full;
  const native = graph.inputs.some((i) => i.name === 'image') && graph.outputs.some((o) => o.name === 'probabilities') && md['cnnlab.architecture'] !== undefined && !md[PREPARATION_KEY];
  const input = foreignInput(path, graph);
  const output = native ? { name: 'probabilities', kind: 'probabilities' as const, from: 'graph' as const } : foreignOutput(path, full, opts);
  const classCount = Number(graph.outputs.find((o) => o.name === output.name)?.shape?.[1]);
  let classes: string[] | undefined = opts.classes;
  if (!classes && md['cnnlab.classes']) {
    try {
      classes = JSON.parse(md['cnnlab.classes']) as string[];
    } catch {
      throw new CnnlabError(`${path}: metadata cnnlab.classes is not valid JSON`);
    }
    if (!Array.isArray(classes) || !classes.every((c) => typeof c === 'string')) throw new CnnlabError(`${path}: metadata cnnlab.classes must list class names`);
  }
  classes ??= Number.isInteger(classCount) && classCount !== 10 ? Array.from({ length: classCount }, (_, k) => String(k)) : ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'];
  if (Number.isInteger(classCount) && classCount > 0 && classes.length !== classCount) {
    throw new CnnlabError(`${path}: output '${output.name}' scores ${classCount} classes, ${opts.classes ? '--classes' : 'the metadata'} names ${classes.length}`);
  }
  const acc = Number(md['cnnlab.test_accuracy']);
  return {
    path,
    bytes,
    architecture: md['cnnlab.architecture'] ?? `onnx:${path.split(/[\\/]/).pop()}`,
    dataset: md['cnnlab.dataset'] ?? 'unknown',
    classes,
    parameters: Number(md['cnnlab.parameters'] ?? graph.initializers.filter((t) => t.dtype === 'float32').reduce((a, t) => a + t.data.length, 0)),
    testAccuracy: Number.isFinite(acc) ? acc : undefined,
    metadata: md,
    graph,
    input,
    output,
    preparation: native ? { range: 1, mean: 0, std: 1, from: 'metadata' } : preparationOf(path, md, opts),
    native,
  };
}

/** The one float [N, C, H, W] input of a foreign model (C 1 or 3, H and W fixed). */
function foreignInput(path: string, graph: Graph): LoadedModel['input'] {
  const inits = new Set(graph.initializers.map((t) => t.name));
  const real = graph.inputs.filter((i) => !inits.has(i.name));
  const list = real.slice(0, 4).map((i) => `${i.name} [${i.shape?.join(', ') ?? '?'}]`).join(', ') + (real.length > 4 ? ', ...' : '');
  if (real.length !== 1) throw new CnnlabError(`${path}: expected one image input, found ${real.length}${list ? ` (${list})` : ''}`);
  const [x] = real;
  const s = x.shape;
  if (x.dtype !== 'float32' || !s || s.length !== 4 || typeof s[1] !== 'number' || typeof s[2] !== 'number' || typeof s[3] !== 'number') {
    throw new CnnlabError(`${path}: input '${x.name}' is ${x.dtype} [${s?.join(', ') ?? 'unknown shape'}]; expected float [N, C, H, W] with fixed C, H and W`);
  }
  if (s[1] !== 1 && s[1] !== 3) throw new CnnlabError(`${path}: input '${x.name}' has ${s[1]} channels; expected 1 (grayscale) or 3 (RGB)`);
  return { name: x.name, shape: [s[1], s[2], s[3]], fixedBatch: typeof s[0] === 'number' ? s[0] : undefined };
}

/** The class-score output and what it holds: from the graph's last op (LogSoftmax, Softmax), else --output-kind, else logits. */
function foreignOutput(path: string, full: DecodedGraph, opts: ForeignModelOptions): LoadedModel['output'] {
  const outputs = full.graph.outputs;
  if (outputs.length !== 1) throw new CnnlabError(`${path}: expected one output (class scores), found ${outputs.length}: ${outputs.map((o) => o.name).join(', ')}`);
  const [o] = outputs;
  if (o.shape && (o.shape.length !== 2 || typeof o.shape[1] !== 'number')) throw new CnnlabError(`${path}: output '${o.name}' is [${o.shape.join(', ')}]; expected class scores [N, classes]`);
  const last = full.graph.nodes.find((n) => n.outputs.includes(o.name));
  const detected: OutputKind | undefined = last?.op === 'LogSoftmax' ? 'log-probabilities' : last?.op === 'Softmax' ? 'probabilities' : undefined;
  if (opts.outputKind) return { name: o.name, kind: opts.outputKind, from: 'flag' };
  const saved = full.metadata['cnnlab.output_kind'];
  if (!detected && (saved === 'logits' || saved === 'probabilities' || saved === 'log-probabilities')) return { name: o.name, kind: saved, from: 'graph' };
  return { name: o.name, kind: detected ?? 'logits', from: detected ? 'graph' : 'default' };
}

function preparationOf(path: string, md: Record<string, string>, opts: ForeignModelOptions): Preparation {
  if (opts.inputRange !== undefined || opts.normalize) return { range: opts.inputRange ?? 1, mean: opts.normalize?.mean ?? 0, std: opts.normalize?.std ?? 1, from: 'flags' };
  const saved = readPreparation(md, path);
  return saved ? { ...saved, from: 'metadata' } : { range: 1, mean: 0, std: 1, from: 'default' };
}

/** One line on how a foreign model's inputs and outputs are read (eval and predict print it). */
export function describePreparation(m: LoadedModel): string | undefined {
  if (m.native) return undefined;
  const p = m.preparation;
  const prep = `pixels 0..${p.range === 255 ? 255 : 1}${p.mean !== 0 || p.std !== 1 ? `, then (x - ${p.mean}) / ${p.std}` : ', no normalisation'}`;
  const from = p.from === 'default' ? ' (the default for a model without cnnlab metadata; --input-range and --normalize change it)' : p.from === 'flags' ? ' (from the flags)' : ' (from its metadata)';
  const out = `output '${m.output.name}' read as ${m.output.kind}${m.output.from === 'default' ? ' (its last op is not Softmax or LogSoftmax; --output-kind changes it)' : ''}`;
  return `${m.path}: input '${m.input.name}' [${m.input.fixedBatch ?? 'N'}, ${m.input.shape.join(', ')}], ${prep}${from}; ${out}`;
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
  if (h0 !== h || w0 !== w || (c0 !== c && c0 !== 1)) throw new CnnlabError(`${m.path}: input '${m.input.name}' takes ${m.input.shape.join('x')} images; these are ${shape.join('x')}`);
  const { range, mean, std } = m.preparation;
  const chunk = m.input.fixedBatch ?? n;
  const K = m.classes.length;
  const probs = new Float32Array(n * K);
  for (let start = 0; start < n; start += chunk) {
    const count = Math.min(chunk, n - start);
    const x = new Float32Array(chunk * c * h * w);
    for (let i = 0; i < count; i++) {
      for (let ch = 0; ch < c; ch++) {
        const from = ((start + i) * c0 + (c0 === 1 ? 0 : ch)) * h * w;
        const to = (i * c + ch) * h * w;
        for (let j = 0; j < h * w; j++) x[to + j] = (pixels[from + j] * range - mean) / std;
      }
    }
    const out = await session.run({ [m.input.name]: new rt.ort.Tensor('float32', x, [chunk, c, h, w]) });
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
    throw new CnnlabError(`${model.path}: onnxruntime cannot load it (${(err as Error).message.split('\n')[0].slice(0, 300)})`);
  }
}
