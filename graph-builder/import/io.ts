/**
 * What a foreign classifier's interface is, read the same way by the importer (training) and by
 * inference/model.ts (eval, predict, serve): its one image input, and which output holds the class
 * scores where it has logits beside their Softmax.
 */
import { InputError } from '../../common/errors.ts';
import type { Graph } from '../graph/ir.ts';

export interface ImageInput {
  name: string;
  /** [C, H, W] as fed (H and W from --input-size where the file leaves them symbolic). */
  shape: [number, number, number];
  /** The batch size the file fixes, if it does. */
  fixedBatch?: number;
  /** [N, H, W, C] in the file (tf2onnx, Keras); cnnlab's data is [N, C, H, W]. */
  channelsLast: boolean;
}

/**
 * The one graph input that is not an initialiser: float [N, C, H, W] or channels-last
 * [N, H, W, C], C 1 or 3, H and W fixed or given by `inputSize`; anything else one line naming
 * the file and the input.
 */
export function imageInputOf(file: string, graph: Graph, inputSize?: [number, number]): ImageInput {
  const inits = new Set(graph.initializers.map((t) => t.name));
  const inputs = graph.inputs.filter((i) => !inits.has(i.name));
  const list = inputs.slice(0, 4).map((i) => `${i.name} [${i.shape?.join(', ') ?? '?'}]`).join(', ') + (inputs.length > 4 ? ', ...' : '');
  if (inputs.length !== 1) throw new InputError(`${file}: expected one image input, found ${inputs.length}${list ? ` (${list})` : ''}`);
  const [x] = inputs;
  const s = x.shape;
  if (x.dtype !== 'float32' || !s || s.length !== 4) throw new InputError(`${file}: input '${x.name}' is ${x.dtype} [${s?.join(', ') ?? 'unknown shape'}]; expected float [N, C, H, W]`);
  const channelsLast = s[1] !== 1 && s[1] !== 3 && (s[3] === 1 || s[3] === 3);
  const [c, h, w] = channelsLast ? [s[3], s[1], s[2]] : [s[1], s[2], s[3]];
  if (c !== 1 && c !== 3) throw new InputError(`${file}: input '${x.name}' has ${c} channels [${s.join(', ')}]; expected 1 (grayscale) or 3 (RGB)`);
  const fixed = typeof h === 'number' && typeof w === 'number' && h > 0 && w > 0;
  if (!fixed && !inputSize) throw new InputError(`${file}: input '${x.name}' has a symbolic height or width [${s.join(', ')}]; give the image size with --input-size HxW`);
  if (fixed && inputSize && (inputSize[0] !== h || inputSize[1] !== w)) throw new InputError(`${file}: --input-size ${inputSize.join('x')} differs from input '${x.name}' [${s.join(', ')}], which fixes ${h}x${w}`);
  const [hh, ww] = fixed ? [h as number, w as number] : inputSize!;
  return { name: x.name, shape: [c, hh, ww], fixedBatch: typeof s[0] === 'number' ? s[0] : undefined, channelsLast };
}

/**
 * Of a graph's two outputs, the one that is the Softmax of the other (each possibly through
 * Identity), as cnnlab's own inference.onnx has them: `logits` and `probabilities`; `only` names
 * the values that serve the probabilities alone (the Softmax's output to the output itself).
 */
export function probabilitiesBesideLogits(graph: Pick<Graph, 'nodes' | 'outputs'>): { logits: string; probabilities: string; only: Set<string> } | undefined {
  const outs = graph.outputs.map((o) => o.name);
  if (outs.length !== 2) return undefined;
  const producer = (v: string) => graph.nodes.find((n) => n.outputs[0] === v);
  const unaliased = (v: string) => {
    for (let n = producer(v); n?.op === 'Identity'; n = producer(v)) v = n.inputs[0];
    return v;
  };
  for (const [probabilities, logits] of [outs, [outs[1], outs[0]]]) {
    const softmax = producer(unaliased(probabilities));
    if (softmax?.op !== 'Softmax' || unaliased(softmax.inputs[0]) !== unaliased(logits)) continue;
    const only = new Set([softmax.outputs[0]]);
    for (let v = probabilities; v !== softmax.outputs[0]; v = producer(v)!.inputs[0]) only.add(v);
    return { logits, probabilities, only };
  }
  return undefined;
}
