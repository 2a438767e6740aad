import onnxProto from 'onnx-proto';
import type { AttrValue, DType, Graph, Node, Tensor, TensorData, ValueInfo } from './ir.ts';

const { onnx } = onnxProto;

/**
 * Opset 18 (ONNX 1.13) is the newest that every runtime we target runs in full: onnxruntime-node
 * CPU and CUDA, and onnxruntime-web's wasm backend. IR version 8 is the one that goes with it.
 */
export const OPSET = 18;
export const IR_VERSION = 8;
export const PRODUCER = 'cnnlab';

/** ONNX's TensorProto.DataType code of each dtype (attributes such as Cast's `to` take these). */
export const DTYPE_CODE: Record<DType, number> = {
  float32: onnx.TensorProto.DataType.FLOAT,
  uint8: onnx.TensorProto.DataType.UINT8,
  int32: onnx.TensorProto.DataType.INT32,
  uint32: onnx.TensorProto.DataType.UINT32,
  int64: onnx.TensorProto.DataType.INT64,
  bool: onnx.TensorProto.DataType.BOOL,
};

function codeToDtype(code: number): DType {
  for (const [k, v] of Object.entries(DTYPE_CODE)) if (v === code) return k as DType;
  throw new Error(`unsupported ONNX tensor type ${code}`);
}

function rawBytes(data: TensorData): Uint8Array {
  // All our hosts are little-endian, as ONNX raw_data is.
  return new Uint8Array(data.buffer, data.byteOffset, data.byteLength).slice();
}

function tensorProto(t: Tensor): onnxProto.onnx.ITensorProto {
  return { name: t.name, dataType: DTYPE_CODE[t.dtype], dims: t.dims, rawData: rawBytes(t.data) };
}

function valueInfo(v: ValueInfo): onnxProto.onnx.IValueInfoProto {
  const tensorType: onnxProto.onnx.TypeProto.ITensor = { elemType: DTYPE_CODE[v.dtype] };
  if (v.shape) {
    tensorType.shape = { dim: v.shape.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) };
  }
  return { name: v.name, type: { tensorType } };
}

function attribute(name: string, a: AttrValue): onnxProto.onnx.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.kind) {
    case 'int':
      return { name, type: T.INT, i: a.value };
    case 'ints':
      return { name, type: T.INTS, ints: a.value };
    case 'float':
      return { name, type: T.FLOAT, f: a.value };
    case 'floats':
      return { name, type: T.FLOATS, floats: a.value };
    case 'string':
      return { name, type: T.STRING, s: new TextEncoder().encode(a.value) };
    case 'tensor':
      return { name, type: T.TENSOR, t: tensorProto(a.value) };
    case 'graph':
      return { name, type: T.GRAPH, g: graphProto(a.value) };
  }
}

function nodeProto(n: Node): onnxProto.onnx.INodeProto {
  return {
    name: n.name,
    opType: n.op,
    domain: n.domain,
    input: n.inputs,
    output: n.outputs,
    attribute: Object.entries(n.attrs).map(([k, v]) => attribute(k, v)),
  };
}

function graphProto(g: Graph): onnxProto.onnx.IGraphProto {
  return {
    name: g.name,
    node: g.nodes.map(nodeProto),
    input: g.inputs.map(valueInfo),
    output: g.outputs.map(valueInfo),
    initializer: g.initializers.map(tensorProto),
  };
}

export interface ModelOptions {
  docString?: string;
  metadata?: Record<string, string>;
  /** The default domain's opset (default OPSET) and the producer's name. */
  opset?: number;
  producer?: string;
}

/** The operator-set domains other than ONNX's that a graph's nodes use, Loop and If bodies included. */
function domainsOf(graph: Graph, into = new Set<string>()): Set<string> {
  for (const n of graph.nodes) {
    if (n.domain) into.add(n.domain);
    for (const a of Object.values(n.attrs)) if (a.kind === 'graph') domainsOf(a.value, into);
  }
  return into;
}

/** Serialises a graph as an ONNX model (protobuf bytes). */
export function encodeModel(graph: Graph, opts: ModelOptions = {}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: opts.producer ?? PRODUCER,
    producerVersion: '0.1.0',
    docString: opts.docString ?? '',
    opsetImport: [{ domain: '', version: opts.opset ?? OPSET }, ...[...domainsOf(graph)].map((domain) => ({ domain, version: 1 }))],
    graph: graphProto(graph),
    metadataProps: Object.entries(opts.metadata ?? {}).map(([key, value]) => ({ key, value })),
  });
  return onnx.ModelProto.encode(model).finish();
}

export interface DecodedModel {
  metadata: Record<string, string>;
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers: Tensor[];
  opset: number;
  ops: string[];
}

function decodeValueInfo(v: onnxProto.onnx.IValueInfoProto): ValueInfo {
  const t = v.type?.tensorType;
  return {
    name: v.name ?? '',
    dtype: codeToDtype(t?.elemType ?? 1),
    shape: t?.shape?.dim?.map((d) => (d.dimParam ? d.dimParam : Number(d.dimValue ?? 0))),
  };
}

function decodeTensor(t: onnxProto.onnx.ITensorProto): Tensor {
  const name = t.name ?? '';
  if (t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL || t.externalData?.length) {
    throw new Error(`tensor ${name} keeps its data in an external file; re-export the model with its weights inside it`);
  }
  const dtype = codeToDtype(t.dataType ?? 1);
  const dims = (t.dims ?? []).map((d) => Number(d));
  const raw = t.rawData ?? new Uint8Array();
  const copy = new Uint8Array(raw).buffer;
  const count = dims.reduce((x, y) => x * y, 1);
  let data: TensorData;
  if (dtype === 'float32') data = raw.length ? new Float32Array(copy) : Float32Array.from(t.floatData ?? []);
  else if (dtype === 'int64') data = raw.length ? new BigInt64Array(copy) : BigInt64Array.from((t.int64Data ?? []).map((v) => BigInt(v.toString())));
  else if (dtype === 'int32') data = raw.length ? new Int32Array(copy) : Int32Array.from(t.int32Data ?? []);
  else if (dtype === 'uint32') data = new Uint32Array(copy);
  else data = raw.length ? new Uint8Array(copy) : Uint8Array.from(t.int32Data ?? []);
  if (data.length !== count) throw new Error(`tensor ${name} holds ${data.length} values, its dims [${dims.join(', ')}] say ${count}`);
  return { name, dtype, dims, data };
}

function decodeAttribute(a: onnxProto.onnx.IAttributeProto): AttrValue | undefined {
  const T = onnx.AttributeProto.AttributeType;
  switch (a.type) {
    case T.INT:
      return { kind: 'int', value: Number(a.i ?? 0) };
    case T.INTS:
      return { kind: 'ints', value: (a.ints ?? []).map(Number) };
    case T.FLOAT:
      return { kind: 'float', value: a.f ?? 0 };
    case T.FLOATS:
      return { kind: 'floats', value: a.floats ?? [] };
    case T.STRING:
      return { kind: 'string', value: new TextDecoder().decode(a.s ?? new Uint8Array()) };
    case T.TENSOR:
      return a.t ? { kind: 'tensor', value: decodeTensor(a.t) } : undefined;
    case T.GRAPH:
      return a.g ? { kind: 'graph', value: decodeGraphProto(a.g) } : undefined;
    default:
      return undefined;
  }
}

function decodeGraphProto(g: onnxProto.onnx.IGraphProto): Graph {
  return {
    name: g.name ?? '',
    nodes: (g.node ?? []).map((n, i) => {
      const attrs: Record<string, AttrValue> = {};
      for (const a of n.attribute ?? []) {
        const v = decodeAttribute(a);
        if (v) attrs[a.name ?? ''] = v;
      }
      return { op: n.opType ?? '', name: n.name || `node_${i}`, inputs: n.input ?? [], outputs: n.output ?? [], attrs, domain: n.domain || undefined };
    }),
    inputs: (g.input ?? []).map(decodeValueInfo),
    outputs: (g.output ?? []).map(decodeValueInfo),
    initializers: (g.initializer ?? []).map(decodeTensor),
  };
}

export interface DecodedGraph {
  graph: Graph;
  /** The default domain's opset version. */
  opset: number;
  /** Other operator-set domains the model imports (com.microsoft, ...). */
  domains: string[];
  metadata: Record<string, string>;
  producer: string;
}

/** Decodes a whole model into the IR (nodes, attributes, initialisers). Throws on bad bytes or unsupported tensor types. */
export function decodeGraph(bytes: Uint8Array): DecodedGraph {
  const m = onnx.ModelProto.decode(bytes);
  if (!m.graph) throw new Error('the model has no graph');
  return {
    graph: decodeGraphProto(m.graph),
    opset: Number(m.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0),
    domains: (m.opsetImport ?? []).map((o) => o.domain ?? '').filter((d) => d && d !== 'ai.onnx'),
    metadata: Object.fromEntries((m.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? ''])),
    producer: `${m.producerName ?? ''} ${m.producerVersion ?? ''}`.trim(),
  };
}

/**
 * The same model with new data for the named float initialisers (and Constant nodes) and metadata added: every name,
 * node, input and output stays as it was, so a trained model drops back into its user's pipeline.
 */
export function replaceInitializers(bytes: Uint8Array, values: ReadonlyMap<string, Float32Array>, metadata: Record<string, string>, head?: { output: string; classes: number; dims: Record<string, number[]> }): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  if (head && m.graph) reshapeHead(m.graph, head);
  if (m.graph) toInferenceForm(m.graph);
  const put = (t: onnxProto.onnx.ITensorProto, v: Float32Array | undefined) => {
    if (!v) return;
    t.rawData = rawBytes(v);
    t.floatData = [];
  };
  for (const t of m.graph?.initializer ?? []) put(t, t.name ? values.get(t.name) : undefined);
  // Weights older exporters hold in Constant nodes: the node's output names the parameter.
  for (const n of m.graph?.node ?? []) {
    const t = constantTensor(n);
    if (t && n.output?.[0]) put(t, values.get(n.output[0]));
  }
  if (m.graph) untieCopies(m.graph, values);
  const kept = (m.metadataProps ?? []).filter((p) => !(p.key && p.key in metadata));
  m.metadataProps = [...kept, ...Object.entries(metadata).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }))];
  return onnx.ModelProto.encode(m).finish();
}

/** The value tensor of a Constant node (undefined for any other node, or another form of Constant). */
function constantTensor(n: onnxProto.onnx.INodeProto): onnxProto.onnx.ITensorProto | undefined {
  return n.opType === 'Constant' ? (n.attribute?.find((a) => a.name === 'value')?.t ?? undefined) : undefined;
}

/**
 * A copy the exporter merged into another initialiser (read through an Identity), which the
 * importer trained as its own parameter, becomes its own initialiser again, the Identity gone.
 */
function untieCopies(g: onnxProto.onnx.IGraphProto, values: ReadonlyMap<string, Float32Array>): void {
  const initialisers = new Map((g.initializer ?? []).map((t) => [t.name ?? '', t]));
  const constants = new Map((g.node ?? []).flatMap((n) => (constantTensor(n) && n.output?.[0] ? [[n.output[0], constantTensor(n)!] as const] : [])));
  const copies = (g.node ?? []).filter((n) => n.opType === 'Identity' && n.output?.[0] && values.has(n.output[0]) && !initialisers.has(n.output[0]));
  for (const n of copies) {
    const v = values.get(n.output![0])!;
    const source = initialisers.get(n.input?.[0] ?? '') ?? constants.get(n.input?.[0] ?? '');
    g.initializer = [...(g.initializer ?? []), { name: n.output![0], dataType: onnx.TensorProto.DataType.FLOAT, dims: source?.dims ?? [v.length], rawData: rawBytes(v) }];
  }
  g.node = (g.node ?? []).filter((n) => !copies.includes(n));
}

/**
 * A training-mode export's nodes in inference form, so the trained model's answers do not depend
 * on the batch: BatchNormalization without training_mode (0) and only its Y output, Dropout without
 * its training_mode input (the identity at inference, as at import).
 */
function toInferenceForm(g: onnxProto.onnx.IGraphProto): void {
  const read = new Set([...(g.node ?? []).flatMap((n) => n.input ?? []), ...(g.output ?? []).map((o) => o.name ?? '')]);
  for (const n of g.node ?? []) {
    if (n.opType === 'BatchNormalization') {
      const mode = n.attribute?.find((a) => a.name === 'training_mode');
      if (mode && Number(mode.i) === 1 && !(n.output ?? []).slice(1).some((o) => o && read.has(o))) {
        // Absent means 0, in every opset that has the attribute (and in the older ones, which lack it).
        n.attribute = (n.attribute ?? []).filter((a) => a.name !== 'training_mode');
        n.output = (n.output ?? []).slice(0, 1);
      }
    } else if (n.opType === 'Dropout' && (n.input?.length ?? 0) > 2) {
      n.input = n.input!.slice(0, 2);
    }
  }
}

/**
 * A replaced head's new width in the file: the head's tensors get their new dims, the output its
 * new class count, and the exporter's intermediate shape annotations go (onnxruntime infers them;
 * stale ones along the head would contradict the new width).
 */
function reshapeHead(g: onnxProto.onnx.IGraphProto, head: { output: string; classes: number; dims: Record<string, number[]> }): void {
  for (const t of g.initializer ?? []) if (t.name && head.dims[t.name]) t.dims = head.dims[t.name];
  for (const n of g.node ?? []) {
    const t = constantTensor(n);
    if (t && n.output?.[0] && head.dims[n.output[0]]) t.dims = head.dims[n.output[0]];
  }
  for (const o of g.output ?? []) {
    const dim = o.name === head.output ? o.type?.tensorType?.shape?.dim : undefined;
    if (dim && dim.length > 1) dim[1] = { dimValue: head.classes };
  }
  g.valueInfo = [];
}

/** Reads the parts of a model cnnlab needs (metadata, interface, weights). Throws on bad bytes. */
export function decodeModel(bytes: Uint8Array): DecodedModel {
  const m = onnx.ModelProto.decode(bytes);
  const g = m.graph;
  if (!g) throw new Error('the model has no graph');
  const ops = new Set<string>();
  const walk = (graph: onnxProto.onnx.IGraphProto) => {
    for (const n of graph.node ?? []) {
      ops.add(n.opType ?? '');
      for (const a of n.attribute ?? []) if (a.g) walk(a.g);
    }
  };
  walk(g);
  return {
    metadata: Object.fromEntries((m.metadataProps ?? []).map((p) => [p.key ?? '', p.value ?? ''])),
    inputs: (g.input ?? []).map(decodeValueInfo),
    outputs: (g.output ?? []).map(decodeValueInfo),
    initializers: (g.initializer ?? []).map(decodeTensor),
    opset: Number(m.opsetImport?.find((o) => !o.domain)?.version ?? 0),
    ops: [...ops].sort(),
  };
}
