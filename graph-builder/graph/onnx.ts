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
}

/** Serialises a graph as an ONNX model (protobuf bytes). */
export function encodeModel(graph: Graph, opts: ModelOptions = {}): Uint8Array {
  const model = onnx.ModelProto.create({
    irVersion: IR_VERSION,
    producerName: PRODUCER,
    producerVersion: '0.1.0',
    docString: opts.docString ?? '',
    opsetImport: [{ domain: '', version: OPSET }],
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
  const dtype = codeToDtype(t.dataType ?? 1);
  const dims = (t.dims ?? []).map((d) => Number(d));
  const raw = t.rawData ?? new Uint8Array();
  const copy = new Uint8Array(raw).buffer;
  const data: TensorData =
    dtype === 'float32'
      ? raw.length
        ? new Float32Array(copy)
        : Float32Array.from(t.floatData ?? [])
      : dtype === 'int64'
        ? new BigInt64Array(copy)
        : dtype === 'int32'
          ? new Int32Array(copy)
          : new Uint8Array(copy);
  return { name: t.name ?? '', dtype, dims, data };
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
