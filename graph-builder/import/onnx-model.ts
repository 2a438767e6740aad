import { CnnlabError, InputError, UsageError } from '../../common/errors.ts';
import { countList } from '../../common/text.ts';
import { GRAD_RULES } from '../autodiff/registry.ts';
import { attr, type Dim, type Graph, type Node, type Tensor } from '../graph/ir.ts';
import { decodeGraph, type DecodedGraph } from '../graph/onnx.ts';
import { elementCount, type LayerGroup, type Model, type OutputKind } from '../model.ts';
import type { NormalizeContext } from '../ops/spec.ts';
import { NON_DIFFERENTIABLE, opSpec } from '../ops/table.ts';
import { FOLDABLE, type Folded, foldedOf, foldNode } from './fold.ts';
import { type ImageInput, imageInputOf, probabilitiesBesideLogits } from './io.ts';
import { type Importer, paramsOf } from './params.ts';

/** The opsets cnnlab reads: the ONNX Model Zoo's opset 7-12 files up to the newest onnxruntime 1.30 loads. */
export const IMPORT_OPSETS = { min: 7, max: 26 };

/** Ops the train step lowers rather than differentiates as they stand. */
const LOWERED = new Set(['Dropout', 'BatchNormalization']);

export interface ImportOptions {
  /** What the output holds, where the graph's last op does not say (LogSoftmax, Softmax). */
  outputKind?: OutputKind;
  /** Height and width for an input whose height and width are symbolic (--input-size). */
  inputSize?: [number, number];
  /** Where the weights were: inside the file or in external data files (kept when the trained model is written). */
  layout?: 'inline' | 'external';
}

/** `--input-size HxW` (or one number for a square), or undefined where not given. */
export function parseInputSize(value: string | undefined): [number, number] | undefined {
  if (value === undefined) return undefined;
  const parts = value.toLowerCase().split('x').map((v) => Number(v.trim()));
  const [h, w] = parts.length === 1 ? [parts[0], parts[0]] : parts;
  if (parts.length > 2 || ![h, w].every((d) => Number.isInteger(d) && d >= 1 && d <= 4096)) throw new UsageError(`--input-size: expected HxW such as 224x224 (1..4096 each), got '${value}'`);
  return [h, w];
}

/** The image input (import/io.ts), its shape noted with the batch symbolic. */
function imageInput(im: Importer, opts: ImportOptions): ImageInput {
  const input = imageInputOf(im.file, im.graph, opts.inputSize);
  const [c, h, w] = input.shape;
  im.fixedBatch = input.fixedBatch;
  im.shapes.set(input.name, input.channelsLast ? ['N', h, w, c] : ['N', c, h, w]);
  return input;
}

/** A kept node's target-shape input as a Constant the train step can use: the batch entry becomes 0 (copy). */
function reshapeConstant(im: Importer, node: Node): Node {
  const f = im.folded.get(node.inputs[1]);
  if (!f) throw new InputError(`${im.file}: node ${node.name} (Reshape): its target shape is computed at run time from more than the input's shape; cnnlab needs it constant`);
  const values = f.values.map((v, i) => {
    if (v === 'N' || (i === 0 && v === im.fixedBatch && im.shapes.get(node.inputs[0])?.[0] === 'N')) {
      if (i !== 0) throw new InputError(`${im.file}: node ${node.name} (Reshape) moves the batch axis to position ${i}; keep the batch first`);
      return 0;
    }
    return v;
  });
  const name = `${node.inputs[1]}__cnnlab_shape`;
  im.folded.set(name, { dims: [values.length], values, dtype: 'int64' });
  // The batch entry's 0 means "copy": allowzero=1 (PyTorch 2.x writes it) would read it as size 0.
  const attrs = Object.fromEntries(Object.entries(node.attrs).filter(([k]) => k !== 'allowzero'));
  if (node.attrs.allowzero?.kind === 'int' && node.attrs.allowzero.value === 1 && f.values.some((v) => v === 0)) {
    throw new InputError(`${im.file}: node ${node.name} (Reshape) reshapes to a size of 0 (allowzero=1); cnnlab cannot train an empty tensor`);
  }
  return { ...node, inputs: [node.inputs[0], name], attrs };
}

/** A folded number as int64: INT64_MAX read back as a double is 2^63, which BigInt64Array would wrap to INT64_MIN. */
const int64 = (x: number): bigint => (x >= 2 ** 63 ? 2n ** 63n - 1n : x <= -(2 ** 63) ? -(2n ** 63n) : BigInt(Math.trunc(x)));

/** Constant nodes for the folded values and constant floats the kept nodes read (shapes, Clip bounds, scale factors). */
function constantNodes(im: Importer, params: Set<string>): Node[] {
  const out: Node[] = [];
  const done = new Set<string>();
  for (const n of im.kept) {
    for (const v of n.inputs) {
      if (!v || params.has(v) || done.has(v)) continue;
      const fl = im.floats.get(v);
      const f = im.folded.get(v);
      if (!fl && !f) continue;
      done.add(v);
      const value: Tensor = fl ?? { name: v, dtype: 'int64', dims: f!.dims, data: BigInt64Array.from(f!.values.map((x) => int64(x as number))) };
      if (!fl && (f!.values.includes('N') || f!.dtype === 'float32')) {
        if (f!.values.includes('N')) throw new InputError(`${im.file}: node ${n.name} (${n.op}) reads the batch size as a value; cnnlab cannot train such a graph`);
        value.dtype = 'float32';
        value.data = Float32Array.from(f!.values as number[]);
      }
      out.push({ op: 'Constant', name: `${v}__cnnlab_const`, inputs: [], outputs: [v], attrs: { value: attr.tensor({ ...value, name: `${v}_value` }) } });
    }
  }
  return out;
}

/** A Constant node's value as a tensor (value, value_float(s), value_int(s)); undefined for forms cnnlab does not read. */
function constantValue(node: Node): Tensor | undefined {
  const a = Object.values(node.attrs)[0];
  const name = node.outputs[0];
  if (!a) return undefined;
  if (a.kind === 'tensor') return { ...a.value, name };
  if (a.kind === 'float') return { name, dtype: 'float32', dims: [], data: Float32Array.of(a.value) };
  if (a.kind === 'floats') return { name, dtype: 'float32', dims: [a.value.length], data: Float32Array.from(a.value) };
  if (a.kind === 'int') return { name, dtype: 'int64', dims: [], data: BigInt64Array.of(BigInt(a.value)) };
  if (a.kind === 'ints') return { name, dtype: 'int64', dims: [a.value.length], data: BigInt64Array.from(a.value.map(BigInt)) };
  return undefined;
}

/** The rewrite context the op table's `normalize` entries get. */
function normalizeContext(im: Importer, opset: number): NormalizeContext {
  const fresh = (hint: string) => {
    let name = `${hint}__cnnlab`;
    for (let k = 1; im.names.has(name); k++) name = `${hint}__cnnlab_${k}`;
    im.names.add(name);
    return name;
  };
  return {
    opset,
    fresh,
    constI: (values, hint) => {
      const name = fresh(hint);
      im.folded.set(name, { dims: [values.length], values, dtype: 'int64' });
      return name;
    },
    constF: (values, dims, hint) => {
      const name = fresh(hint);
      im.floats.set(name, { name, dtype: 'float32', dims, data: Float32Array.from(values) });
      im.fixed.add(name);
      return name;
    },
    constant: (v) => constantOf(im, v),
    shape: (v) => shapeOf(im, v),
  };
}

const shapeOf = (im: Importer, v: string): Dim[] | undefined => im.shapes.get(v) ?? (im.floats.has(v) ? im.floats.get(v)!.dims : im.folded.get(v)?.dims);
const constantOf = (im: Importer, v: string): number[] | undefined => {
  const f = im.folded.get(v);
  if (f) return f.values.includes('N') ? undefined : (f.values as number[]);
  const t = im.floats.get(v);
  return t && t.data.length <= 4096 ? Array.from(t.data as Float32Array) : undefined;
};

/** A value as a folded constant: folded shapes, or a float scalar (a scale factor, never a weight). */
function foldable(im: Importer, v: string): Folded | undefined {
  const f = im.folded.get(v);
  if (f) return f;
  const t = im.floats.get(v);
  return t && t.data.length === 1 ? foldedOf(t) : undefined;
}

/** Drops what opset 6 and earlier wrote on every node and turns a float-to-float Cast into Identity. */
function legacyForm(node: Node, im: Importer): Node {
  let n = node;
  if (n.attrs.consumed_inputs) n = { ...n, attrs: Object.fromEntries(Object.entries(n.attrs).filter(([k]) => k !== 'consumed_inputs')) };
  if (n.op === 'Cast' && n.attrs.to?.kind === 'int' && n.attrs.to.value === 1 && !im.folded.has(n.inputs[0])) n = { ...n, op: 'Identity', attrs: {} };
  return n;
}

/** Records an op cnnlab cannot import and marks everything computed from it as unknown. */
function skip(im: Importer, node: Node, key: string): void {
  im.unsupported.set(key, (im.unsupported.get(key) ?? 0) + 1);
  for (const o of node.outputs) im.unknown.add(o);
}

/** Walks the nodes: folds shape computations, rewrites older opsets' forms, checks ops, infers shapes. */
function walk(im: Importer, opset: number, dropouts: Map<string, { p: number; salt: number }>): void {
  const ctx = normalizeContext(im, opset);
  im.graph.nodes.forEach((raw, index) => {
    if (raw.domain && raw.domain !== 'ai.onnx') return skip(im, raw, `${raw.domain}.${raw.op}`);
    if (raw.inputs.some((v) => im.unknown.has(v))) return skip(im, raw, opSpec(raw.op)?.shape || opSpec(raw.op)?.shapes || FOLDABLE.has(raw.op) || raw.op === 'Constant' ? '' : raw.op);
    if (raw.op === 'Constant') return readConstant(im, raw);
    if (untie(im, raw)) return;
    const spec = opSpec(raw.op);
    const node = legacyForm(raw, im);
    for (const n of spec?.normalize && node.op === raw.op ? normalized(im, node, () => spec.normalize!(node, ctx)) : [node]) {
      if (!foldInto(im, n)) keep(im, n, index, dropouts);
    }
  });
}

/** A node rewritten into cnnlab's form; a form it cannot rewrite is one line naming the node. */
function normalized(im: Importer, node: Node, rewrite: () => Node[]): Node[] {
  try {
    return rewrite();
  } catch (err) {
    if (err instanceof CnnlabError) throw err;
    throw new InputError(`${im.file}: node ${node.name} (${node.op}) ${(err as Error).message}`);
  }
}

/** A Constant node: float values may be weights (params.ts decides), the rest fold. */
function readConstant(im: Importer, node: Node): void {
  const t = constantValue(node);
  if (!t) return skip(im, node, 'Constant (sparse or string value)');
  if (t.dtype === 'float32') im.floats.set(node.outputs[0], t);
  else im.folded.set(node.outputs[0], foldedOf(t));
}

/**
 * PyTorch's exporter merges identical initialisers (all-ones BatchNorm scales and running
 * variances, all-zero biases) and reads the copies through Identity nodes; each copy was its
 * own parameter or buffer in the model, and is one again here (the trained model gets it back
 * as an initialiser of the Identity's output name).
 */
function untie(im: Importer, node: Node): boolean {
  const t = node.op === 'Identity' ? im.floats.get(node.inputs[0]) : undefined;
  if (!t || im.fixed.has(node.inputs[0]) || t.data.length < 2) return false;
  im.floats.set(node.outputs[0], { ...t, name: node.outputs[0], data: (t.data as Float32Array).slice() });
  return true;
}

/** Folds a node whose inputs are all constant (or a Shape of a static shape); true where it did. */
function foldInto(im: Importer, node: Node): boolean {
  if (!FOLDABLE.has(node.op)) return false;
  const inputs = node.inputs.filter(Boolean).map((v) => foldable(im, v));
  const ready = node.op === 'Shape' || inputs.every((f) => f !== undefined);
  const f = ready ? foldNode(node, inputs as Folded[], (v) => im.shapes.get(v)) : undefined;
  if (f) im.folded.set(node.outputs[0], f);
  return f !== undefined;
}

/** Keeps a forward node: checks it is known, lowers Dropout's inputs, infers its output shapes. */
function keep(im: Importer, node: Node, index: number, dropouts: Map<string, { p: number; salt: number }>): void {
  const where = `${im.file}: node ${node.name} (${node.op})`;
  const spec = opSpec(node.op);
  if (!spec || !(spec.shape || spec.shapes)) return skip(im, node, node.op);
  for (const v of node.inputs) if (v && !shapeOf(im, v)) throw new InputError(`${where}: reads ${v}, which no earlier node or initialiser defines`);
  let kept = node;
  if (node.op === 'Dropout') {
    const ratio = node.inputs[1] ? foldable(im, node.inputs[1]) : undefined;
    const p = ratio ? Number(ratio.values[0]) : node.attrs.ratio?.kind === 'float' ? node.attrs.ratio.value : 0.5;
    kept = { ...node, inputs: [node.inputs[0]], outputs: [node.outputs[0]], attrs: {} };
    dropouts.set(node.name, { p, salt: (index * 1000003 + 54321) % 2147483647 });
  } else if (node.op === 'BatchNormalization') {
    kept = { ...node, outputs: [node.outputs[0]], attrs: { epsilon: node.attrs.epsilon ?? attr.float(1e-5), momentum: node.attrs.momentum ?? attr.float(0.9) } };
  } else if (node.op === 'Reshape') {
    kept = reshapeConstant(im, node);
  }
  const sctx = { shape: (v: string) => shapeOf(im, v)!, constant: (v: string) => constantOf(im, v) };
  try {
    const shapes = spec.shapes ? spec.shapes(kept, sctx) : [spec.shape!(kept, sctx)];
    kept.outputs.forEach((o, i) => o && shapes[i] && im.shapes.set(o, shapes[i]));
  } catch (err) {
    if (err instanceof CnnlabError) throw err;
    throw new InputError(`${where} ${(err as Error).message}`);
  }
  im.kept.push(kept);
}

/** One line naming every op type cnnlab cannot import, with counts. */
function refuseUnsupported(im: Importer): void {
  const ops = [...im.unsupported].filter(([op]) => op !== '');
  if (ops.length === 0) return;
  const total = ops.reduce((a, [, n]) => a + n, 0);
  const list = countList(ops);
  throw new InputError(`${im.file}: ${total} node(s) of ${ops.length} op type(s) cnnlab cannot import: ${list} (the README's op table lists what it reads)`);
}

/**
 * The class-score output: the graph's one output, or of logits and their Softmax (import/io.ts)
 * the logits; `dropped` lists the nodes that only make the probabilities output.
 */
function scoresOutput(im: Importer): { name: string; dropped: Set<Node> } {
  const outs = im.graph.outputs.map((o) => o.name);
  if (outs.length === 1) return { name: outs[0], dropped: new Set() };
  const pair = probabilitiesBesideLogits({ nodes: im.kept, outputs: im.graph.outputs });
  if (!pair) throw new InputError(`${im.file}: expected one output (class scores), found ${outs.length}: ${outs.join(', ')} (two are read only as logits and their Softmax)`);
  return { name: pair.logits, dropped: new Set(im.kept.filter((n) => pair.only.has(n.outputs[0]))) };
}

/** The output, what it holds, and the node to train from (a final Softmax is left to the loss); `dropped`: nodes training leaves out. */
function outputOf(im: Importer, opts: ImportOptions): { output: string; kind: OutputKind; trainFrom: string; dropped: Set<Node> } {
  const { name: output, dropped } = scoresOutput(im);
  const last = im.kept.find((n) => n.outputs[0] === output);
  if (!last) throw new InputError(`${im.file}: output '${output}' is not computed by the graph's nodes`);
  const detected: OutputKind | undefined = last.op === 'LogSoftmax' ? 'log-probabilities' : last.op === 'Softmax' ? 'probabilities' : undefined;
  const kind = opts.outputKind ?? detected ?? 'logits';
  if (kind === 'probabilities' && last.op !== 'Softmax') throw new InputError(`${im.file}: output '${output}' comes from ${last.op}, not Softmax; --output-kind probabilities needs a final Softmax (use logits or log-probabilities)`);
  const s = im.shapes.get(output)!;
  if (s.length !== 2 || typeof s[1] !== 'number') throw new InputError(`${im.file}: output '${output}' is [${s.join(', ')}]; expected class scores [N, classes]`);
  if (kind === 'probabilities') dropped.add(last);
  return { output, kind, trainFrom: kind === 'probabilities' ? last.inputs[0] : output, dropped };
}

/** Decodes the bytes and checks the opset, each problem one line naming the file. */
function decode(bytes: Uint8Array, file: string): DecodedGraph {
  let decoded: DecodedGraph;
  try {
    decoded = decodeGraph(bytes);
  } catch (err) {
    throw new InputError(`${file}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const { opset } = decoded;
  if (opset < IMPORT_OPSETS.min || opset > IMPORT_OPSETS.max) throw new InputError(`${file}: ONNX opset ${opset}; cnnlab reads opsets ${IMPORT_OPSETS.min} to ${IMPORT_OPSETS.max}`);
  return decoded;
}

/**
 * The ONNX front-end: a classifier exported by PyTorch, tf2onnx, paddle2onnx or onnx's tools
 * becomes a Model. Older and newer opsets' forms are rewritten into cnnlab's (the op table's
 * `normalize`); float tensors that reach the loss become parameters under their own names
 * (params.ts); shape computations on the batch size are folded into constants; every problem is
 * one line naming the file and the node, and unsupported ops are listed all at once.
 */
export function importOnnxModel(bytes: Uint8Array, file: string, opts: ImportOptions = {}): Model {
  const decoded = decode(bytes, file);
  const { graph } = decoded;
  const names = new Set(graph.nodes.flatMap((n) => [...n.inputs, ...n.outputs]));
  const im: Importer = { file, graph, shapes: new Map(), folded: new Map(), floats: new Map(), kept: [], fixed: new Set(), unsupported: new Map(), unknown: new Set(), names };
  for (const t of graph.initializers) {
    if (t.dtype === 'float32') im.floats.set(t.name, t);
    else im.folded.set(t.name, foldedOf(t));
  }
  const input = imageInput(im, opts);
  const dropouts = new Map<string, { p: number; salt: number }>();
  walk(im, decoded.opset, dropouts);
  refuseUnsupported(im);
  const { output, kind, trainFrom, dropped } = outputOf(im, opts);
  im.kept = im.kept.filter((n) => !dropped.has(n));
  const params = paramsOf(im, trainFrom);
  const paramNames = new Set(params.map((p) => p.name));
  // A channels-last input is fed as [N, C, H, W] and transposed back inside the graph.
  const modelInput = input.channelsLast ? `${input.name}__cnnlab_nchw` : input.name;
  const toNhwc: Node[] = input.channelsLast ? [{ op: 'Transpose', name: `${input.name}__cnnlab_nhwc`, inputs: [modelInput], outputs: [input.name], attrs: { perm: attr.ints([0, 2, 3, 1]) } }] : [];
  if (input.channelsLast) im.shapes.set(modelInput, ['N', ...input.shape]);
  const nodes = [...toNhwc, ...constantNodes(im, paramNames), ...im.kept];
  const forward: Graph = {
    name: graph.name || 'imported',
    nodes,
    inputs: [{ name: modelInput, dtype: 'float32', shape: ['N', ...input.shape] }, ...params.map((p) => ({ name: p.name, dtype: 'float32' as const, shape: p.shape }))],
    outputs: [{ name: trainFrom, dtype: 'float32', shape: im.shapes.get(trainFrom) }],
    initializers: [],
  };
  const layers: LayerGroup[] = im.kept.map((n, i) => ({ index: i + 1, name: n.name, type: n.op, nodes: [n], output: n.outputs[0] }));
  return {
    id: `onnx:${file.split(/[\\/]/).pop()}`,
    graph: forward,
    input: modelInput,
    inputShape: input.shape,
    output: trainFrom,
    outputKind: kind === 'probabilities' ? 'logits' : kind,
    classes: im.shapes.get(output)![1] as number,
    params,
    trainableCount: params.filter((p) => p.trainable).reduce((a, p) => a + elementCount(p.shape), 0),
    shapes: im.shapes,
    layers,
    dropouts,
    source: { file, bytes, metadata: decoded.metadata, outputKind: kind, output, layout: opts.layout ?? 'inline', channelsLast: input.channelsLast },
  };
}

/** Refuses, before anything runs, a model with ops the autodiff has no gradient rule for (one line listing them with counts). */
export function checkTrainable(model: Model): void {
  const missing = new Map<string, number>();
  for (const n of model.graph.nodes) {
    if (n.op in GRAD_RULES || NON_DIFFERENTIABLE.has(n.op) || LOWERED.has(n.op)) continue;
    missing.set(n.op, (missing.get(n.op) ?? 0) + 1);
  }
  if (missing.size === 0) return;
  const file = model.source?.file ?? model.id;
  const list = countList(missing);
  throw new InputError(`${file}: no gradient rule for ${list}; cnnlab can evaluate this model but not train it`);
}
