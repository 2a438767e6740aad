import { CnnlabError } from '../../common/errors.ts';
import { GRAD_RULES, NON_DIFFERENTIABLE } from '../autodiff/registry.ts';
import { attr, type Dim, type Graph, type Node, type Tensor } from '../graph/ir.ts';
import { decodeGraph, type DecodedGraph } from '../graph/onnx.ts';
import { elementCount, type LayerGroup, type Model, type OutputKind, type ParamSpec } from '../model.ts';
import { inferShape } from './shapes.ts';

/** The opsets cnnlab reads: what PyTorch's exporter, tf2onnx and onnx's own tools write today. */
export const IMPORT_OPSETS = { min: 13, max: 18 };

/** Forward ops an imported graph may use (shape computations are folded away before this list applies). */
export const IMPORT_OPS = [
  'Conv', 'ConvTranspose', 'Gemm', 'MatMul', 'Add', 'Sub', 'Mul', 'Div', 'Relu', 'LeakyRelu', 'Sigmoid', 'Tanh', 'Clip',
  'HardSwish', 'MaxPool', 'AveragePool', 'GlobalAveragePool', 'BatchNormalization', 'Dropout', 'Flatten', 'Reshape',
  'Transpose', 'Concat', 'Softmax', 'LogSoftmax', 'Identity', 'Constant',
] as const;

/** Ops whose all-constant inputs are evaluated at import (PyTorch's Shape/Gather/Unsqueeze/Concat before a Reshape). */
const FOLDABLE = new Set(['Shape', 'Gather', 'Unsqueeze', 'Squeeze', 'Concat', 'Slice', 'Cast', 'Add', 'Sub', 'Mul', 'Div', 'Identity', 'Constant', 'Reshape']);

/** Ops lowered by the train step rather than differentiated as they stand. */
const LOWERED = new Set(['Dropout', 'BatchNormalization']);

export interface ImportOptions {
  /** What the output holds, where the graph's last op does not say (LogSoftmax, Softmax). */
  outputKind?: OutputKind;
}

/** A folded value: numbers, with 'N' where the batch size stands (from Shape of a batched value). */
interface Folded {
  dims: number[];
  values: (number | 'N')[];
  dtype: Tensor['dtype'];
}

const isFloatParamSlot = (op: string, i: number) =>
  ((op === 'Conv' || op === 'ConvTranspose' || op === 'Gemm') && (i === 1 || i === 2)) || (op === 'MatMul' && i === 1) || (op === 'BatchNormalization' && i >= 1);

function roleOf(op: string, i: number): ParamSpec['role'] {
  if (op === 'BatchNormalization') return (['weight', 'weight', 'bias', 'running_mean', 'running_var'] as const)[i];
  return i === 2 ? 'bias' : 'weight';
}

/** Evaluates one foldable node over folded inputs; undefined where it cannot be folded. */
function foldNode(node: Node, inputs: Folded[], shapeOf: (v: string) => Dim[] | undefined): Folded | undefined {
  const ints = (key: string, fallback: number[]) => (node.attrs[key]?.kind === 'ints' ? (node.attrs[key].value as number[]) : fallback);
  const int = (key: string, fallback: number) => (node.attrs[key]?.kind === 'int' ? (node.attrs[key].value as number) : fallback);
  const vec = (values: (number | 'N')[], dtype: Tensor['dtype'] = 'int64'): Folded => ({ dims: [values.length], values, dtype });
  const [a, b] = inputs;
  switch (node.op) {
    case 'Shape': {
      const s = shapeOf(node.inputs[0]);
      if (!s || s.some((d) => typeof d === 'string' && d !== 'N')) return undefined;
      return vec(s.slice(int('start', 0), node.attrs.end ? int('end', s.length) : s.length) as (number | 'N')[]);
    }
    case 'Gather': {
      if (!a || !b || a.dims.length !== 1 || int('axis', 0) !== 0) return undefined;
      const pick = b.values.map((i) => (typeof i === 'number' ? a.values[i < 0 ? i + a.values.length : i] : undefined));
      if (pick.some((v) => v === undefined)) return undefined;
      return { dims: b.dims, values: pick as (number | 'N')[], dtype: a.dtype };
    }
    case 'Unsqueeze':
    case 'Squeeze':
      if (!a) return undefined;
      return a.dims.length <= 1 ? vec(a.values, a.dtype) : undefined;
    case 'Concat':
      return inputs.every((x) => x && x.dims.length === 1) ? vec(inputs.flatMap((x) => x.values), a.dtype) : undefined;
    case 'Slice': {
      if (!a || a.dims.length !== 1 || !b || !inputs[2]) return undefined;
      const n = a.values.length;
      const at = (v: number | 'N') => (typeof v === 'number' ? Math.max(0, Math.min(n, v < 0 ? v + n : v)) : undefined);
      const [start, end] = [at(b.values[0]), at(inputs[2].values[0])];
      const step = inputs[4] ? inputs[4].values[0] : 1;
      if (start === undefined || end === undefined || step !== 1) return undefined;
      return vec(a.values.slice(start, end), a.dtype);
    }
    case 'Cast':
      return a && int('to', 0) !== 1 ? { ...a, dtype: 'int64' } : undefined;
    case 'Identity':
      return a;
    case 'Add':
    case 'Sub':
    case 'Mul':
    case 'Div': {
      if (!a || !b || a.dtype === 'float32' || b.dtype === 'float32' || a.values.includes('N') || b.values.includes('N')) return undefined;
      const n = Math.max(a.values.length, b.values.length);
      if (a.values.length !== n && a.values.length !== 1) return undefined;
      if (b.values.length !== n && b.values.length !== 1) return undefined;
      const f = { Add: (x: number, y: number) => x + y, Sub: (x: number, y: number) => x - y, Mul: (x: number, y: number) => x * y, Div: (x: number, y: number) => Math.trunc(x / y) }[node.op];
      const values = Array.from({ length: n }, (_, i) => f(a.values[a.values.length === 1 ? 0 : i] as number, b.values[b.values.length === 1 ? 0 : i] as number));
      return { dims: a.values.length === n ? a.dims : b.dims, values, dtype: a.dtype };
    }
    default:
      return undefined;
  }
}

function foldedOf(t: Tensor): Folded {
  const values = t.data instanceof BigInt64Array ? Array.from(t.data, Number) : Array.from(t.data as ArrayLike<number>);
  return { dims: t.dims, values, dtype: t.dtype };
}

interface Importer {
  file: string;
  graph: Graph;
  shapes: Map<string, Dim[]>;
  folded: Map<string, Folded>;
  floats: Map<string, Tensor>;
  kept: Node[];
  fixedBatch?: number;
}

/** The image input: the one graph input that is not an initialiser, float [N,C,H,W] with C 1 or 3. */
function imageInput(im: Importer): { name: string; shape: number[] } {
  const inits = new Set(im.graph.initializers.map((t) => t.name));
  const inputs = im.graph.inputs.filter((i) => !inits.has(i.name));
  const list = inputs.slice(0, 4).map((i) => `${i.name} [${i.shape?.join(', ') ?? '?'}]`).join(', ') + (inputs.length > 4 ? ', ...' : '');
  if (inputs.length !== 1) throw new CnnlabError(`${im.file}: expected one image input, found ${inputs.length}${list ? ` (${list})` : ''}`);
  const x = inputs[0];
  const s = x.shape;
  if (x.dtype !== 'float32' || !s || s.length !== 4) throw new CnnlabError(`${im.file}: input '${x.name}' is ${x.dtype} [${s?.join(', ') ?? 'unknown shape'}]; expected float [N, C, H, W]`);
  const [n, c, h, w] = s;
  if (c !== 1 && c !== 3) throw new CnnlabError(`${im.file}: input '${x.name}' has ${c} channels [${s.join(', ')}]; expected 1 (grayscale) or 3 (RGB)`);
  if (typeof h !== 'number' || typeof w !== 'number' || h < 1 || w < 1) throw new CnnlabError(`${im.file}: input '${x.name}' has a symbolic height or width [${s.join(', ')}]; export it with a fixed image size`);
  if (typeof n === 'number') im.fixedBatch = n;
  im.shapes.set(x.name, ['N', c, h, w]);
  return { name: x.name, shape: [c, h, w] };
}

/** A kept node's target-shape input as a Constant the train step can use: the batch entry becomes 0 (copy). */
function reshapeConstant(im: Importer, node: Node): Node {
  const f = im.folded.get(node.inputs[1]);
  if (!f) throw new CnnlabError(`${im.file}: node ${node.name} (Reshape): its target shape is computed at run time from more than the input's shape; cnnlab needs it constant`);
  const values = f.values.map((v, i) => {
    if (v === 'N' || (i === 0 && v === im.fixedBatch && im.shapes.get(node.inputs[0])?.[0] === 'N')) {
      if (i !== 0) throw new CnnlabError(`${im.file}: node ${node.name} (Reshape) moves the batch axis to position ${i}; keep the batch first`);
      return 0;
    }
    return v;
  });
  const name = `${node.inputs[1]}__cnnlab_shape`;
  im.folded.set(name, { dims: [values.length], values, dtype: 'int64' });
  return { ...node, inputs: [node.inputs[0], name] };
}

/** Constant nodes for the folded values the kept nodes read (shapes, Clip bounds, scale factors). */
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
      const value: Tensor = fl ?? { name: v, dtype: 'int64', dims: f!.dims, data: BigInt64Array.from(f!.values.map((x) => BigInt(x as number))) };
      if (!fl && (f!.values.includes('N') || f!.dtype === 'float32')) {
        if (f!.values.includes('N')) throw new CnnlabError(`${im.file}: node ${n.name} (${n.op}) reads the batch size as a value; cnnlab cannot train such a graph`);
        value.dtype = 'float32';
        value.data = Float32Array.from(f!.values as number[]);
      }
      out.push({ op: 'Constant', name: `${v}__cnnlab_const`, inputs: [], outputs: [v], attrs: { value: attr.tensor({ ...value, name: `${v}_value` }) } });
    }
  }
  return out;
}

/** Walks the nodes: folds shape computations, checks ops, infers shapes, lowers Dropout's inputs. */
function walk(im: Importer, dropouts: Map<string, { p: number; salt: number }>): void {
  const shapeOf = (v: string) => im.shapes.get(v) ?? (im.floats.has(v) ? im.floats.get(v)!.dims : im.folded.get(v)?.dims);
  im.graph.nodes.forEach((node, index) => {
    const where = `${im.file}: node ${node.name} (${node.op})`;
    if (node.domain && node.domain !== 'ai.onnx') throw new CnnlabError(`${where}: op of domain ${node.domain}; cnnlab reads standard ONNX ops only`);
    if (node.op === 'Constant') {
      const t = node.attrs.value;
      if (t?.kind !== 'tensor') throw new CnnlabError(`${where}: only 'value' constants are supported`);
      if (t.value.dtype === 'float32') im.floats.set(node.outputs[0], { ...t.value, name: node.outputs[0] });
      else im.folded.set(node.outputs[0], foldedOf(t.value));
      return;
    }
    if (FOLDABLE.has(node.op)) {
      const inputs = node.inputs.filter(Boolean).map((v) => im.folded.get(v));
      const ready = node.op === 'Shape' || inputs.every((f) => f !== undefined);
      const f = ready ? foldNode(node, inputs as Folded[], (v) => im.shapes.get(v)) : undefined;
      if (f) {
        im.folded.set(node.outputs[0], f);
        return;
      }
    }
    if (!(IMPORT_OPS as readonly string[]).includes(node.op)) throw new CnnlabError(`${where}: not an op cnnlab can import; supported: ${IMPORT_OPS.join(', ')}`);
    for (const v of node.inputs) if (v && !shapeOf(v)) throw new CnnlabError(`${where}: reads ${v}, which no earlier node or initialiser defines`);
    let kept = node;
    if (node.op === 'Dropout') {
      const ratio = node.inputs[1] ? (im.folded.get(node.inputs[1]) ?? (im.floats.get(node.inputs[1]) && foldedOf(im.floats.get(node.inputs[1])!))) : undefined;
      const p = ratio ? Number(ratio.values[0]) : 0.5;
      kept = { ...node, inputs: [node.inputs[0]], outputs: [node.outputs[0]], attrs: {} };
      dropouts.set(node.name, { p, salt: (index * 1000003 + 54321) % 2147483647 });
    } else if (node.op === 'BatchNormalization') {
      kept = { ...node, outputs: [node.outputs[0]], attrs: { epsilon: node.attrs.epsilon ?? attr.float(1e-5), momentum: node.attrs.momentum ?? attr.float(0.9) } };
    } else if (node.op === 'Reshape') {
      kept = reshapeConstant(im, node);
    }
    try {
      im.shapes.set(kept.outputs[0], inferShape(kept, (v) => shapeOf(v)!, (v) => im.folded.get(v)?.values as number[] | undefined));
    } catch (err) {
      if (err instanceof CnnlabError) throw err;
      throw new CnnlabError(`${where} ${(err as Error).message}`);
    }
    im.kept.push(kept);
  });
}

/** Parameters: float initialisers read as weights and biases (trained) or as BatchNorm statistics (buffers). */
function paramsOf(im: Importer): ParamSpec[] {
  const out = new Map<string, ParamSpec>();
  for (const n of im.kept) {
    n.inputs.forEach((v, i) => {
      const t = im.floats.get(v);
      if (!t || !isFloatParamSlot(n.op, i) || out.has(v) || !im.graph.initializers.some((g) => g.name === v)) return;
      const role = roleOf(n.op, i);
      out.set(v, { name: v, shape: t.dims, role, trainable: role === 'weight' || role === 'bias', init: { kind: 'given', data: t.data as Float32Array } });
    });
  }
  return [...out.values()];
}

/** The output, what it holds, and the node to train from (a final Softmax is left to the loss). */
function outputOf(im: Importer, opts: ImportOptions): { output: string; kind: OutputKind; trainFrom: string } {
  const outs = im.graph.outputs;
  if (outs.length !== 1) throw new CnnlabError(`${im.file}: expected one output (class scores), found ${outs.length}: ${outs.map((o) => o.name).join(', ')}`);
  const output = outs[0].name;
  const last = im.kept.find((n) => n.outputs[0] === output);
  if (!last) throw new CnnlabError(`${im.file}: output '${output}' is not computed by the graph's nodes`);
  const detected: OutputKind | undefined = last.op === 'LogSoftmax' ? 'log-probabilities' : last.op === 'Softmax' ? 'probabilities' : undefined;
  const kind = opts.outputKind ?? detected ?? 'logits';
  if (kind === 'probabilities' && last.op !== 'Softmax') throw new CnnlabError(`${im.file}: output '${output}' comes from ${last.op}, not Softmax; --output-kind probabilities needs a final Softmax (use logits or log-probabilities)`);
  const s = im.shapes.get(output)!;
  if (s.length !== 2 || typeof s[1] !== 'number') throw new CnnlabError(`${im.file}: output '${output}' is [${s.join(', ')}]; expected class scores [N, classes]`);
  return { output, kind, trainFrom: kind === 'probabilities' ? last.inputs[0] : output };
}

/**
 * The ONNX front-end: a classifier exported by PyTorch, tf2onnx or onnx's tools becomes a Model.
 * Its float initialisers become parameters under their own names; shape computations on the
 * batch size are folded into constants; every problem is one line naming the file and the node.
 */
export function importOnnxModel(bytes: Uint8Array, file: string, opts: ImportOptions = {}): Model {
  let decoded: DecodedGraph;
  try {
    decoded = decodeGraph(bytes);
  } catch (err) {
    throw new CnnlabError(`${file}: not an ONNX model (${(err as Error).message.split('\n')[0]})`);
  }
  const { graph, opset } = decoded;
  if (opset < IMPORT_OPSETS.min || opset > IMPORT_OPSETS.max) throw new CnnlabError(`${file}: ONNX opset ${opset}; cnnlab reads opsets ${IMPORT_OPSETS.min} to ${IMPORT_OPSETS.max} (export with opset_version=17)`);
  const im: Importer = { file, graph, shapes: new Map(), folded: new Map(), floats: new Map(), kept: [] };
  for (const t of graph.initializers) {
    if (t.dtype === 'float32') im.floats.set(t.name, t);
    else im.folded.set(t.name, foldedOf(t));
  }
  const input = imageInput(im);
  const dropouts = new Map<string, { p: number; salt: number }>();
  walk(im, dropouts);
  const params = paramsOf(im);
  const { output, kind, trainFrom } = outputOf(im, opts);
  const paramNames = new Set(params.map((p) => p.name));
  const keep = im.kept.filter((n) => !(kind === 'probabilities' && n.outputs[0] === output));
  im.kept = keep;
  const nodes = [...constantNodes(im, paramNames), ...keep];
  const forward: Graph = {
    name: graph.name || 'imported',
    nodes,
    inputs: [{ name: input.name, dtype: 'float32', shape: ['N', ...input.shape] }, ...params.map((p) => ({ name: p.name, dtype: 'float32' as const, shape: p.shape }))],
    outputs: [{ name: trainFrom, dtype: 'float32', shape: im.shapes.get(trainFrom) }],
    initializers: [],
  };
  const layers: LayerGroup[] = keep.map((n, i) => ({ index: i + 1, name: n.name, type: n.op, nodes: [n], output: n.outputs[0] }));
  const classes = im.shapes.get(output)![1] as number;
  return {
    id: `onnx:${file.split(/[\\/]/).pop()}`,
    graph: forward,
    input: input.name,
    inputShape: input.shape,
    output: trainFrom,
    outputKind: kind === 'probabilities' ? 'logits' : kind,
    classes,
    params,
    trainableCount: params.filter((p) => p.trainable).reduce((a, p) => a + elementCount(p.shape), 0),
    shapes: im.shapes,
    layers,
    dropouts,
    source: { file, bytes, metadata: decoded.metadata, outputKind: kind, output },
  };
}

/** Refuses, before anything runs, a model with an op the autodiff has no gradient rule for (one line naming the node). */
export function checkTrainable(model: Model): void {
  for (const n of model.graph.nodes) {
    if (n.op in GRAD_RULES || NON_DIFFERENTIABLE.has(n.op) || LOWERED.has(n.op)) continue;
    const file = model.source?.file ?? model.id;
    throw new CnnlabError(`${file}: node ${n.name} (${n.op}) has no gradient rule; cnnlab can evaluate this model but not train it`);
  }
}
