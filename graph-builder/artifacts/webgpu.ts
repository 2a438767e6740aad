/**
 * A graph made for onnxruntime's WebGPU kernels: the same computation with the ops its WebGPU EP
 * lacks (onnxruntime 1.30, docs/webgpu.md) written as ops it has. Sum becomes a chain of Add,
 * LogSoftmax becomes x - m - Log(ReduceSum(Exp(x - m))) with m its ReduceMax, OneHot becomes a
 * comparison of the labels with the class numbers, and a MaxPool Indices output nothing reads
 * is dropped (the WebGPU MaxPool kernel cannot write it; the 'webgpu' graph target's max-pool
 * gradient does not read it). Loop bodies are rewritten too. What stays on the CPU is shape and
 * int64 bookkeeping (Shape, Size, Range, Cast of the labels), which onnxruntime places there.
 */
import onnxProto from 'onnx-proto';

const { onnx } = onnxProto;
type NodeProto = onnxProto.onnx.INodeProto;
type GraphProto = onnxProto.onnx.IGraphProto;
type AttributeProto = onnxProto.onnx.IAttributeProto;

const A = onnx.AttributeProto.AttributeType;
const FLOAT = onnx.TensorProto.DataType.FLOAT;
const INT64 = onnx.TensorProto.DataType.INT64;

const ints = (name: string, values: number[]): AttributeProto => ({ name, type: A.INTS, ints: values });
const int = (name: string, value: number): AttributeProto => ({ name, type: A.INT, i: value });
const node = (opType: string, input: string[], output: string[], name: string, attribute: AttributeProto[] = []): NodeProto => ({ opType, input, output, name, attribute });

/** A Constant node holding an int64 or float tensor. */
function constant(name: string, dataType: number, dims: number[], values: number[]): NodeProto {
  const raw = dataType === INT64 ? new Uint8Array(BigInt64Array.from(values.map(BigInt)).buffer) : new Uint8Array(Float32Array.from(values).buffer);
  return node('Constant', [], [name], name, [{ name: 'value', type: A.TENSOR, t: { name, dataType, dims, rawData: raw } }]);
}

function attrOf(n: NodeProto, name: string): AttributeProto | undefined {
  return n.attribute?.find((a) => a.name === name);
}

/** The values of a Constant node's tensor (int64 or float), or undefined. */
function constantValues(n: NodeProto | undefined): number[] | undefined {
  const t = n?.opType === 'Constant' ? attrOf(n, 'value')?.t : undefined;
  if (!t) return undefined;
  const raw = t.rawData?.length ? new Uint8Array(t.rawData).buffer : undefined;
  if (t.dataType === INT64) return raw ? Array.from(new BigInt64Array(raw), Number) : (t.int64Data ?? []).map(Number);
  if (t.dataType === FLOAT) return raw ? Array.from(new Float32Array(raw)) : (t.floatData ?? []);
  return undefined;
}

/** What one graph level needs to rewrite its nodes: the opset, and the Constant nodes in scope by output. */
interface Scope {
  opset: number;
  constants: Map<string, NodeProto>;
}

/** Reduce ops take their axes as an input from opset 13 (ReduceSum) and 18 (the rest), as an attribute before. */
function reduce(op: 'ReduceSum' | 'ReduceMax', x: string, axis: number, out: string, s: Scope, extra: NodeProto[]): NodeProto {
  if (s.opset >= (op === 'ReduceSum' ? 13 : 18)) {
    extra.push(constant(`${out}_axes`, INT64, [1], [axis]));
    return node(op, [x, `${out}_axes`], [out], out, [int('keepdims', 1)]);
  }
  return node(op, [x], [out], out, [ints('axes', [axis]), int('keepdims', 1)]);
}

function sumAsAdds(n: NodeProto): NodeProto[] {
  const inputs = n.input ?? [];
  const out = n.output![0];
  if (inputs.length === 1) return [node('Identity', inputs, [out], n.name ?? out)];
  const chain: NodeProto[] = [];
  let acc = inputs[0];
  for (let i = 1; i < inputs.length; i++) {
    const to = i === inputs.length - 1 ? out : `${out}_add${i}`;
    chain.push(node('Add', [acc, inputs[i]], [to], `${n.name ?? out}_add${i}`));
    acc = to;
  }
  return chain;
}

function logSoftmax(n: NodeProto, s: Scope): NodeProto[] {
  const x = n.input![0];
  const out = n.output![0];
  const axis = Number(attrOf(n, 'axis')?.i ?? (s.opset >= 13 ? -1 : 1));
  const p = `${out}_lsm`;
  const extra: NodeProto[] = [];
  const max = reduce('ReduceMax', x, axis, `${p}_max`, s, extra);
  const sum = reduce('ReduceSum', `${p}_exp`, axis, `${p}_sum`, s, extra);
  return [
    ...extra,
    max,
    node('Sub', [x, `${p}_max`], [`${p}_shifted`], `${p}_shifted`),
    node('Exp', [`${p}_shifted`], [`${p}_exp`], `${p}_exp`),
    sum,
    node('Log', [`${p}_sum`], [`${p}_log`], `${p}_log`),
    node('Sub', [`${p}_shifted`, `${p}_log`], [out], n.name ?? out),
  ];
}

/** OneHot(labels, depth, [off, on]) along the last axis, with constant depth and values. */
function oneHot(n: NodeProto, s: Scope): NodeProto[] | undefined {
  const [labels, depthName, valuesName] = n.input ?? [];
  const depth = constantValues(s.constants.get(depthName));
  const values = constantValues(s.constants.get(valuesName));
  const axis = Number(attrOf(n, 'axis')?.i ?? -1);
  if (!depth || depth.length !== 1 || !values || values.length !== 2 || axis !== -1) return undefined;
  const out = n.output![0];
  const p = `${out}_onehot`;
  const [off, on] = values;
  const hits = off === 0 && on === 1 ? out : `${p}_hits`;
  const nodes = [
    constant(`${p}_axis`, INT64, [1], [-1]),
    constant(`${p}_classes`, FLOAT, [depth[0]], Array.from({ length: depth[0] }, (_, i) => i)),
    node('Cast', [labels], [`${p}_labels_f`], `${p}_labels_f`, [int('to', FLOAT)]),
    node('Unsqueeze', [`${p}_labels_f`, `${p}_axis`], [`${p}_labels_col`], `${p}_labels_col`),
    node('Equal', [`${p}_labels_col`, `${p}_classes`], [`${p}_eq`], `${p}_eq`),
    node('Cast', [`${p}_eq`], [hits], `${p}_cast`, [int('to', FLOAT)]),
  ];
  if (hits === out) return nodes;
  return [
    ...nodes,
    constant(`${p}_span`, FLOAT, [], [on - off]),
    constant(`${p}_off`, FLOAT, [], [off]),
    node('Mul', [hits, `${p}_span`], [`${p}_scaled`], `${p}_scaled`),
    node('Add', [`${p}_scaled`, `${p}_off`], [out], n.name ?? out),
  ];
}

/** Every value name read anywhere in the graph and its subgraphs, and the graphs' outputs. */
function valuesRead(g: GraphProto, into = new Set<string>()): Set<string> {
  for (const o of g.output ?? []) if (o.name) into.add(o.name);
  for (const n of g.node ?? []) {
    for (const i of n.input ?? []) into.add(i);
    for (const a of n.attribute ?? []) if (a.g) valuesRead(a.g, into);
  }
  return into;
}

function lowerGraph(g: GraphProto, opset: number, read: Set<string>, outer: Map<string, NodeProto>): void {
  const constants = new Map(outer);
  for (const n of g.node ?? []) if (n.opType === 'Constant' && n.output?.[0]) constants.set(n.output[0], n);
  const scope: Scope = { opset, constants };
  g.node = (g.node ?? []).flatMap((n): NodeProto[] => {
    for (const a of n.attribute ?? []) if (a.g) lowerGraph(a.g, opset, read, constants);
    if (n.domain) return [n];
    switch (n.opType) {
      case 'Sum':
        return sumAsAdds(n);
      case 'LogSoftmax':
        return logSoftmax(n, scope);
      case 'OneHot':
        return oneHot(n, scope) ?? [n];
      case 'MaxPool':
        if ((n.output?.length ?? 0) > 1 && !read.has(n.output![1])) n.output = [n.output![0]];
        return [n];
      default:
        return [n];
    }
  });
}

/** The model with the ops onnxruntime's WebGPU EP lacks rewritten as ops it has (see above). */
export function lowerForWebGpu(bytes: Uint8Array): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  if (!m.graph) return bytes;
  const opset = Number(m.opsetImport?.find((o) => !o.domain || o.domain === 'ai.onnx')?.version ?? 0);
  lowerGraph(m.graph, opset, valuesRead(m.graph), new Map());
  return onnx.ModelProto.encode(m).finish();
}
