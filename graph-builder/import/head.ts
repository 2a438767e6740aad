/**
 * An imported classifier's head: the last layer with weights before the class scores (a Gemm, a
 * MatMul with its bias Add, or the 1x1 Conv before global pooling as in SqueezeNet), found by
 * walking back from the output through ops that keep the class axis; and its replacement by a
 * fresh layer of another width, initialised as PyTorch initialises that layer (a Reshape after
 * it that names the class count, as Keras' Flatten does, given the new one).
 */
import { InputError } from '../../common/errors.ts';
import onnxProto from 'onnx-proto';
import { attr, type Dim, type Node } from '../graph/ir.ts';
import { elementCount, type Model, type ParamSpec } from '../model.ts';
import { attrInt } from '../ops/spec.ts';

const { onnx } = onnxProto;

/** Ops between the head and the output that keep the class axis where it is. */
const PASS_THROUGH = new Set(['Softmax', 'LogSoftmax', 'Flatten', 'Reshape', 'Identity', 'Relu', 'Dropout', 'GlobalAveragePool', 'ReduceMean', 'AveragePool', 'Squeeze', 'Sigmoid', 'Clip', 'Transpose']);

export interface Head {
  /** The node whose output has the class axis first (Gemm, MatMul, Conv). */
  node: Node;
  weight: ParamSpec;
  bias?: ParamSpec;
  /** The bias Add after a MatMul (tf2onnx's Dense). */
  biasNode?: Node;
  /** The values from the head's output to the model's output, in order. */
  chain: string[];
  /** The weight's axis that counts classes. */
  classAxis: number;
  /** Inputs per class: the fan-in PyTorch's default initialisation divides by. */
  fanIn: number;
}

/** The model's head, or one line saying why it cannot be found. */
export function findHead(model: Model): Head {
  const where = model.source?.file ?? model.id;
  const producer = new Map(model.graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  const param = (v: string | undefined) => model.params.find((p) => p.name === v && p.trainable);
  const chain: string[] = [];
  let v = model.output;
  for (;;) {
    chain.unshift(v);
    const n = producer.get(v);
    if (!n) throw new InputError(`${where}: no classifier layer (Gemm, MatMul or Conv) found before output '${model.output}'`);
    if (n.op === 'Add' && n.inputs.some((i) => param(i)?.shape.length === 1)) {
      const bias = param(n.inputs.find((i) => param(i)?.shape.length === 1))!;
      const mm = producer.get(n.inputs.find((i) => i !== bias.name)!);
      const weight = mm?.op === 'MatMul' ? param(mm.inputs[1]) : undefined;
      if (mm && weight) return { node: mm, weight, bias, biasNode: n, chain: [mm.outputs[0], ...chain], classAxis: 1, fanIn: weight.shape[0] };
    }
    if (n.op === 'Gemm' && param(n.inputs[1])) {
      const weight = param(n.inputs[1])!;
      const transB = attrInt(n, 'transB', 0) === 1;
      return { node: n, weight, bias: param(n.inputs[2]), chain, classAxis: transB ? 0 : 1, fanIn: transB ? weight.shape[1] : weight.shape[0] };
    }
    if (n.op === 'MatMul' && param(n.inputs[1])) {
      const weight = param(n.inputs[1])!;
      return { node: n, weight, chain, classAxis: 1, fanIn: weight.shape[0] };
    }
    if (n.op === 'Conv' && param(n.inputs[1]) && attrInt(n, 'group', 1) === 1) {
      const weight = param(n.inputs[1])!;
      return { node: n, weight, bias: param(n.inputs[2]), chain, classAxis: 0, fanIn: elementCount(weight.shape.slice(1)) };
    }
    if (!PASS_THROUGH.has(n.op)) throw new InputError(`${where}: the output '${model.output}' comes from ${n.op} node ${n.name}, not from a classifier layer (Gemm, MatMul or a 1x1 Conv) through ${[...PASS_THROUGH].join(', ')}`);
    v = n.inputs[0];
  }
}

/** The names of the head's parameters. */
export function headParams(model: Model): Set<string> {
  const h = findHead(model);
  return new Set([h.weight.name, ...(h.bias ? [h.bias.name] : [])]);
}

/** A Reshape after the head whose target names the class count, and the axis where it does. */
interface Retarget {
  node: string;
  axis: number;
}

/**
 * Where each value after the head has its classes: axis 1 out of the head, moved by a Transpose
 * (tf2onnx's NCHW-to-NHWC after a Conv head), else where the count alone stands; one line
 * naming the value where that is not one axis.
 */
function classAxes(model: Model, h: Head, classes: number): Map<string, number> {
  const where = model.source?.file ?? model.id;
  const producer = new Map(model.graph.nodes.map((n) => [n.outputs[0], n] as const));
  const axes = new Map<string, number>();
  let axis = 1;
  for (const v of h.chain) {
    const s = model.shapes.get(v) ?? [];
    const n = producer.get(v);
    const perm = n?.op === 'Transpose' && n.attrs.perm?.kind === 'ints' ? n.attrs.perm.value : undefined;
    if (perm) axis = perm.indexOf(axis);
    else if (s[axis] !== model.classes) axis = s.indexOf(model.classes) === s.lastIndexOf(model.classes) ? s.indexOf(model.classes) : -1;
    if (axis < 1 || s[axis] !== model.classes) throw new InputError(`${where}: value ${v} after the classifier is [${s.join(', ')}]; cannot give it ${classes} classes`);
    axes.set(v, axis);
  }
  return axes;
}

/**
 * The Reshape nodes after the head whose target shape names the class count at the class axis
 * (Keras' Flatten after MobileNetV3's 1x1 Conv head, [-1, classes] in tf2onnx's export), given
 * the new count in the model's graph; a target naming it elsewhere is one line naming the node.
 */
function retargetReshapes(model: Model, h: Head, axes: ReadonlyMap<string, number>, classes: number): { nodes: Node[]; retargeted: Retarget[] } {
  const where = model.source?.file ?? model.id;
  const retargeted: Retarget[] = [];
  const nodes: Node[] = [];
  for (const n of model.graph.nodes) {
    const c = n.op === 'Reshape' && h.chain.includes(n.outputs[0]) && n.inputs[1] ? model.graph.nodes.find((k) => k.outputs[0] === n.inputs[1]) : undefined;
    const target = c?.attrs.value;
    const values = target?.kind === 'tensor' ? Array.from(target.value.data as BigInt64Array, Number) : [];
    if (!c || target?.kind !== 'tensor' || !values.includes(model.classes)) {
      nodes.push(n);
      continue;
    }
    const axis = axes.get(n.outputs[0]);
    if (values.indexOf(model.classes) !== axis || values.lastIndexOf(model.classes) !== axis) throw new InputError(`${where}: Reshape node ${n.name} after the classifier names the class count ${model.classes} off the class axis ([${values.join(', ')}]); cannot give it ${classes} classes`);
    // A Constant of its own: the old target may serve other Reshapes too.
    const name = `${n.name}__cnnlab_classes`;
    const data = BigInt64Array.from(values.map((v, i) => BigInt(i === axis ? classes : v)));
    nodes.push({ op: 'Constant', name, inputs: [], outputs: [name], attrs: { value: attr.tensor({ ...target.value, name, data }) } }, { ...n, inputs: [n.inputs[0], name] });
    retargeted.push({ node: n.name, axis: axis! });
  }
  // The old targets where nothing reads them any more.
  const read = new Set(nodes.flatMap((n) => n.inputs));
  return { nodes: nodes.filter((n) => n.op !== 'Constant' || read.has(n.outputs[0]) || !model.graph.nodes.some((k) => k.op === 'Reshape' && k.inputs[1] === n.outputs[0])), retargeted };
}

/**
 * The file's Reshape nodes named in `reshapes` with the class axis of their int64 target set to
 * `classes`: the initialiser or Constant node itself where only that Reshape reads it, else a
 * new initialiser for that Reshape.
 */
function retargetFile(bytes: Uint8Array, reshapes: Retarget[], classes: number): Uint8Array {
  const m = onnx.ModelProto.decode(bytes);
  const g = m.graph!;
  for (const { node: name, axis } of reshapes) {
    const reshape = g.node?.find((n) => n.opType === 'Reshape' && n.name === name);
    const shape = reshape?.input?.[1];
    const t = g.initializer?.find((i) => i.name === shape) ?? g.node?.find((n) => n.opType === 'Constant' && n.output?.[0] === shape)?.attribute?.find((a) => a.name === 'value')?.t;
    if (!reshape || !t) throw new Error(`Reshape node ${name}: its target shape is neither an initialiser nor a Constant node`);
    const raw = t.rawData?.length ? new BigInt64Array(Uint8Array.from(t.rawData).buffer) : BigInt64Array.from((t.int64Data ?? []).map((v) => BigInt(v.toString())));
    raw[axis] = BigInt(classes);
    const shared = (g.node ?? []).filter((n) => n.input?.includes(shape!)).length > 1;
    const target = shared ? onnx.TensorProto.create({ name: `${name}__cnnlab_classes`, dataType: t.dataType, dims: t.dims }) : t;
    target.rawData = new Uint8Array(raw.buffer);
    target.int64Data = [];
    if (shared) {
      g.initializer = [...(g.initializer ?? []), target];
      reshape.input![1] = target.name!;
    }
  }
  return onnx.ModelProto.encode(m).finish();
}

/**
 * The model with its head made `classes` wide: new weight and bias, U(-1/sqrt(fan_in),
 * 1/sqrt(fan_in)) as PyTorch's Linear and Conv2d start (drawn from the run's seed), every shape
 * after it given the new class count. Returns the model and a line saying what was replaced.
 */
export function replaceHead(model: Model, classes: number): { model: Model; note: string } {
  const h = findHead(model);
  const where = model.source?.file ?? model.id;
  const bound = 1 / Math.sqrt(h.fanIn);
  const widen = (p: ParamSpec, axis: number): ParamSpec => ({ ...p, shape: p.shape.map((d, i) => (i === axis ? classes : d)), init: { kind: 'uniform', bound } });
  const replaced = new Map<string, ParamSpec>([[h.weight.name, widen(h.weight, h.classAxis)]]);
  if (h.bias) replaced.set(h.bias.name, widen(h.bias, 0));
  const axes = classAxes(model, h, classes);
  const shapes = new Map(model.shapes);
  for (const v of h.chain) shapes.set(v, shapes.get(v)!.map((d, i): Dim => (i === axes.get(v) ? classes : d)));
  const { nodes, retargeted } = retargetReshapes(model, h, axes, classes);
  const params = model.params.map((p) => replaced.get(p.name) ?? p);
  const graph = {
    ...model.graph,
    nodes,
    inputs: model.graph.inputs.map((i) => (replaced.has(i.name) ? { ...i, shape: replaced.get(i.name)!.shape } : i)),
    outputs: model.graph.outputs.map((o) => ({ ...o, shape: shapes.get(o.name) })),
  };
  const trainableCount = params.filter((p) => p.trainable).reduce((a, p) => a + elementCount(p.shape), 0);
  const bytes = model.source && retargeted.length ? retargetFile(model.source.bytes, retargeted, classes) : model.source?.bytes;
  const source = model.source && { ...model.source, bytes: bytes!, head: { classes, dims: Object.fromEntries([...replaced].map(([k, p]) => [k, p.shape])) } };
  const shape = (p: ParamSpec) => `[${p.shape.join(', ')}]`;
  const note = `${where}: replaced the head, ${h.node.op} node ${h.node.name} (${model.classes} classes), by a new ${h.node.op}${h.biasNode ? ' + Add' : ''} of ${classes}: ${[...replaced.values()].map((p) => `${p.name} ${shape(p)}`).join(', ')}, U(±${bound.toPrecision(3)}) as PyTorch initialises it${retargeted.length ? `; Reshape ${retargeted.map((r) => r.node).join(', ')} to ${classes} classes` : ''}`;
  return { model: { ...model, graph, params, shapes, classes, trainableCount, source }, note };
}
