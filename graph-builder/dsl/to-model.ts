import { CnnlabError } from '../../common/errors.ts';
import { GraphBuilder } from '../graph/ir.ts';
import { type DropoutSite, elementCount, type LayerGroup, type Model, type ParamSpec, type Shape } from '../model.ts';
import { describeLayer, LAYER_KINDS, layerKind, type Sequential } from './layers.ts';
import { shapeText } from './layers/kind.ts';

export const INPUT_SHAPE: Shape = [1, 28, 28];

/** Salt of a dropout layer's masks (two dropout layers of one step draw different masks). */
const dropoutSalt = (index: number) => (index * 1000003 + 12345) % 2147483647;

/**
 * The same layers scoring `classes` classes: the last layer that can be a head (linear or
 * conv2d) gets that many outputs. Presets are written for ten classes; an image folder with
 * five makes their last linear layer five wide. The input to that layer stays as it was.
 */
export function withClasses(seq: Sequential, classes: number): Sequential {
  for (let i = seq.layers.length - 1; i >= 0; i--) {
    const kind = layerKind(seq.layers[i]);
    if (!kind?.withOutputs) continue;
    const layers = [...seq.layers];
    layers[i] = kind.withOutputs(seq.layers[i], classes);
    return { ...seq, layers };
  }
  return seq;
}

/**
 * The DSL front-end: checks each layer, infers its shape from the input (`seq.input`, default
 * 1x28x28), names its parameters and emits its forward nodes. A problem names the layer by
 * position and kind, what it expects and what it receives; a kind nobody registered is refused.
 * With `classes`, the model must end in that many scores; without, in any number >= 2.
 */
export function modelFromLayers(seq: Sequential, id: string, classes?: number): Model {
  if (seq.layers.length === 0) throw new CnnlabError('the model has no layers');
  const input: Shape = seq.input ?? INPUT_SHAPE;
  if (input.length !== 3 || !input.every((d) => Number.isInteger(d) && d >= 1) || (input[0] !== 1 && input[0] !== 3)) {
    throw new CnnlabError(`input ${JSON.stringify(input)}: expected [C, H, W] with C 1 (grey) or 3 (RGB) and whole H, W >= 1`);
  }
  const b = new GraphBuilder(`cnnlab_${id.replace(/\W+/g, '_')}_forward`);
  const x = b.input('input', 'float32', ['N', ...input]);
  const counters = new Map<string, number>();
  const layers: (LayerGroup & { inShape: Shape; outShape: Shape; kind: string })[] = [];
  const params: ParamSpec[] = [];
  const dropouts = new Map<string, DropoutSite>();
  let shape = input;
  let h = x;
  seq.layers.forEach((layer, i) => {
    const index = i + 1;
    const kind = layerKind(layer);
    if (!kind) throw new CnnlabError(`layer ${index}: unknown kind ${JSON.stringify(layer.kind)}; expected one of ${[...LAYER_KINDS.keys()].join(', ')}`);
    const where = `layer ${index} ${describeLayer(layer)}`;
    kind.check(layer, (what) => {
      throw new CnnlabError(`${where}: ${what}`);
    });
    const k = (counters.get(kind.prefix) ?? 0) + 1;
    counters.set(kind.prefix, k);
    const name = `${kind.prefix}${k}`;
    const fail = (what: string): never => {
      throw new CnnlabError(`${where} ${what}`);
    };
    const inShape = shape;
    const prev = layers[layers.length - 1];
    const maps = (): [number, number, number] => {
      if (inShape.length !== 3) fail(`expects a CxHxW feature map, receives ${inShape[0]} features; it cannot follow flatten or linear`);
      return inShape as [number, number, number];
    };
    const inferred = kind.infer(layer, { shape: inShape, name, fail, maps, prev: prev && { kind: prev.kind, inShape: prev.inShape } });
    for (const p of inferred.params) b.input(p.name, 'float32', p.shape);
    params.push(...inferred.params);
    const first = b.graph.nodes.length;
    h = kind.emit(layer, { b, x: h, name, index, dropoutSite: (node, p) => dropouts.set(node, { p, salt: dropoutSalt(index) }) });
    b.note(h, 'float32', ['N', ...inferred.out]);
    layers.push({ index, name, type: kind.summaryType, nodes: b.graph.nodes.slice(first), output: h, inShape, outShape: inferred.out, kind: layer.kind });
    shape = inferred.out;
  });
  if (shape.length !== 1 || (classes !== undefined ? shape[0] !== classes : shape[0] < 2)) {
    const last = seq.layers[seq.layers.length - 1];
    const want = classes !== undefined ? `${classes} class scores` : 'class scores (at least 2)';
    throw new CnnlabError(`the model ends in ${shapeText(shape)} (${describeLayer(last)}, layer ${seq.layers.length}); it must end in ${want} (add flatten() or a linear layer)`);
  }
  b.output(h, 'float32', ['N', shape[0]]);
  const trainableCount = params.filter((p) => p.trainable).reduce((a, p) => a + elementCount(p.shape), 0);
  return {
    id,
    graph: b.graph,
    input: x,
    inputShape: input,
    output: h,
    outputKind: seq.layers[seq.layers.length - 1].kind === 'logSoftmax' ? 'log-probabilities' : 'logits',
    classes: shape[0],
    params,
    trainableCount,
    shapes: b.shapes,
    layers: layers.map(({ index, name, type, nodes, output }) => ({ index, name, type, nodes, output })),
    dropouts,
  };
}
