import { attr, type Graph, type Node } from '../graph/ir.ts';
import { decodeGraph, encodeModel } from '../graph/onnx.ts';

/**
 * A train-step model (buildTrainStepModel: K steps in one Loop) as a model of one step, no
 * Loop: the same inputs and outputs by name (images, labels, lr, momentum, dropout_seed with
 * K = 1; `losses` and `correct` of shape [1]), the Loop body's nodes at the top level. A
 * session on the WebGPU EP places the Loop node on the CPU EP, which copies every carried
 * tensor to the host and back at each step; without it they can stay on the GPU between runs.
 */
export function singleStepModel(trainStep: Uint8Array): Uint8Array {
  const { graph: outer, opset, metadata } = decodeGraph(trainStep);
  const loop = outer.nodes.find((n) => n.op === 'Loop');
  const bodyAttr = loop?.attrs.body;
  if (!loop || bodyAttr?.kind !== 'graph') throw new Error('singleStepModel: the train step has no Loop node');
  const body = bodyAttr.value as Graph;
  // The body's nodes stay as they are (names included, so any subgraph in them reads what it read);
  // its inputs (iter, cond, the carried values) and outputs (cond, carried, loss, correct) are tied to the outer names.
  const carried = body.inputs.length - 2;
  const tie = (op: string, from: string[], to: string): Node => ({ op, name: `${to}_single_step`, inputs: from, outputs: [to], attrs: {} });
  const one = `${outer.name}_single_step_shape`;
  const constant = (name: string, dtype: 'int64' | 'bool', dims: number[], data: BigInt64Array | Uint8Array): Node => ({ op: 'Constant', name: `${name}_single_step`, inputs: [], outputs: [name], attrs: { value: attr.tensor({ name, dtype, dims, data }) } });
  const nodes: Node[] = [
    constant(body.inputs[0].name, 'int64', [], BigInt64Array.of(0n)),
    constant(body.inputs[1].name, 'bool', [], Uint8Array.of(1)),
    constant(one, 'int64', [1], BigInt64Array.of(1n)),
    ...body.inputs.slice(2).map((v, i) => tie('Identity', [loop.inputs[i + 2]], v.name)),
    ...body.nodes,
    ...body.outputs.slice(1, 1 + carried).map((v, i) => tie('Identity', [v.name], loop.outputs[i])),
    tie('Reshape', [body.outputs[1 + carried].name, one], 'losses'),
    tie('Reshape', [body.outputs[2 + carried].name, one], 'correct'),
  ];
  const graph: Graph = {
    name: `${outer.name}_single`,
    nodes,
    inputs: outer.inputs,
    outputs: outer.outputs.map((o) => (o.name === 'losses' || o.name === 'correct' ? { ...o, shape: [1] } : o)),
    initializers: [...outer.initializers, ...body.initializers],
  };
  return encodeModel(graph, { opset, metadata });
}
