/**
 * An imported classifier's head: the last layer with weights before the class scores (a Gemm, a
 * MatMul with its bias Add, or the 1x1 Conv before global pooling as in SqueezeNet), found by
 * walking back from the output through ops that keep the class axis; and its replacement by a
 * fresh layer of another width, initialised as PyTorch initialises that layer.
 */
import { InputError } from '../../common/errors.ts';
import type { Dim, Node } from '../graph/ir.ts';
import { elementCount, type Model, type ParamSpec } from '../model.ts';
import { attrInt } from '../ops/spec.ts';

/** Ops between the head and the output that keep the class axis where it is. */
const PASS_THROUGH = new Set(['Softmax', 'LogSoftmax', 'Flatten', 'Reshape', 'Identity', 'Relu', 'Dropout', 'GlobalAveragePool', 'ReduceMean', 'AveragePool', 'Squeeze', 'Sigmoid', 'Clip']);

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
  const shapes = new Map(model.shapes);
  for (const v of h.chain) {
    const s = shapes.get(v);
    if (!s || s.length < 2 || s[1] !== model.classes) throw new InputError(`${where}: value ${v} after the classifier is [${s?.join(', ')}]; cannot give it ${classes} classes`);
    shapes.set(v, s.map((d, i): Dim => (i === 1 ? classes : d)));
  }
  for (const n of model.graph.nodes) {
    if (n.op === 'Reshape' && h.chain.includes(n.outputs[0])) {
      const target = n.inputs[1] ? model.graph.nodes.find((c) => c.outputs[0] === n.inputs[1])?.attrs.value : undefined;
      const values = target?.kind === 'tensor' ? Array.from(target.value.data as BigInt64Array, Number) : [];
      if (values.includes(model.classes)) throw new InputError(`${where}: Reshape node ${n.name} after the classifier names the class count ${model.classes}; cannot give it ${classes} classes`);
    }
  }
  const params = model.params.map((p) => replaced.get(p.name) ?? p);
  const graph = {
    ...model.graph,
    inputs: model.graph.inputs.map((i) => (replaced.has(i.name) ? { ...i, shape: replaced.get(i.name)!.shape } : i)),
    outputs: model.graph.outputs.map((o) => ({ ...o, shape: shapes.get(o.name) })),
  };
  const trainableCount = params.filter((p) => p.trainable).reduce((a, p) => a + elementCount(p.shape), 0);
  const source = model.source && { ...model.source, head: { classes, dims: Object.fromEntries([...replaced].map(([k, p]) => [k, p.shape])) } };
  const shape = (p: ParamSpec) => `[${p.shape.join(', ')}]`;
  const note = `${where}: replaced the head, ${h.node.op} node ${h.node.name} (${model.classes} classes), by a new ${h.node.op}${h.biasNode ? ' + Add' : ''} of ${classes}: ${[...replaced.values()].map((p) => `${p.name} ${shape(p)}`).join(', ')}, U(±${bound.toPrecision(3)}) as PyTorch initialises it`;
  return { model: { ...model, graph, params, shapes, classes, trainableCount, source }, note };
}
