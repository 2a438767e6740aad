/**
 * A classifier cut at its head: the frozen part before the head's input (the features) and the
 * head after it. With the backbone frozen, a training run computes each image's features once
 * and trains the head on them (training/fit.ts); the demo page does the same in the browser.
 *
 * The head is a Model whose input is the float32 feature tensor (inputKind 'features'), so
 * compile(head, recipe) gives a train step, an eval and an inference graph taking features
 * where the whole model's take images. The features are a Model too, from the image input to
 * the cut, turned into ONNX by featuresGraph with its parameters baked in.
 */
import { InputError } from '../common/errors.ts';
import type { ParamSet } from './dsl/init.ts';
import { emitForward, emitImageFromBytes, emitNormalize } from './forward.ts';
import { attr, GraphBuilder, type Node } from './graph/ir.ts';
import { encodeModel } from './graph/onnx.ts';
import { findHead } from './import/head.ts';
import { emitLoss, type LossKind } from './losses.ts';
import { byteImageDims, elementCount, type Model, paramsRead } from './model.ts';
import { addParams, emitImageInput, type ModelMeta, metadataProps } from './artifacts/inference.ts';
import { writeModelCard } from './artifacts/model-card.ts';

export interface HeadSplit {
  /** The model from its image input (as model.input takes it) to the cut; `output` is the cut, `classes` the whole model's. */
  features: Model;
  /** The layers from the cut to the scores; input `cut`, float32 [N, ...featureShape]; its own parameters only. */
  head: Model;
  /** The value the two share: the head's input (before any Dropout feeding it, which stays with the head). */
  cut: string;
  /** Its per-example shape, as the graph has it: [1280], [512, 13, 13], ... */
  featureShape: number[];
  /** The model was imported (its inference graph takes its own input, prepared outside). */
  imported: boolean;
}

/** The nodes `targets` need, in graph order, walking back no further than `stop` and the parameters. */
function neededNodes(model: Model, targets: string[], stop: ReadonlySet<string>): { nodes: Node[]; reads: Set<string> } {
  const params = new Set(model.params.map((p) => p.name));
  const wanted = new Set(targets);
  const reads = new Set<string>();
  const picked: Node[] = [];
  for (const node of [...model.graph.nodes].reverse()) {
    if (!node.outputs.some((o) => wanted.has(o))) continue;
    picked.push(node);
    for (const i of node.inputs) {
      if (!i || params.has(i)) continue;
      if (stop.has(i)) reads.add(i);
      else wanted.add(i);
    }
  }
  if (wanted.has(model.input)) reads.add(model.input);
  return { nodes: picked.reverse(), reads };
}

/** The model restricted to `nodes`: their parameters, layers and dropouts, input and output as given. */
function restrict(model: Model, nodes: Node[], input: string, inputShape: number[], output: string): Model {
  const params = paramsRead(model, nodes);
  const names = new Set(nodes.map((n) => n.name));
  const outShape = model.shapes.get(output);
  return {
    ...model,
    graph: {
      ...model.graph,
      nodes,
      inputs: [{ name: input, dtype: 'float32', shape: ['N', ...inputShape] }, ...params.map((p) => ({ name: p.name, dtype: 'float32' as const, shape: p.shape }))],
      outputs: [{ name: output, dtype: 'float32', shape: outShape }],
    },
    input,
    inputShape,
    output,
    params,
    trainableCount: params.filter((p) => p.trainable).reduce((a, p) => a + elementCount(p.shape), 0),
    layers: model.layers.filter((l) => l.nodes.every((n) => names.has(n.name))),
    dropouts: new Map([...model.dropouts].filter(([n]) => names.has(n))),
    source: undefined,
  };
}

/**
 * Cuts `model` at its head's input (findHead(model).node.inputs[0], moved back through a Dropout
 * feeding it). Everything before the cut must be fixed in training, as the full graph with
 * `frozen` (default: every trainable parameter but the head's, --freeze backbone) runs it: frozen
 * parameters only, BatchNorm on running statistics, no Dropout; else one line saying what is not.
 */
export function splitAtHead(model: Model, frozen?: ReadonlySet<string>): HeadSplit {
  const where = model.source?.file ?? model.id;
  const h = findHead(model);
  const producer = new Map(model.graph.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
  let cut = h.node.inputs[0];
  while (producer.get(cut)?.op === 'Dropout') cut = producer.get(cut)!.inputs[0];
  const shape = model.shapes.get(cut);
  if (!shape || shape.slice(1).some((d) => typeof d !== 'number')) throw new InputError(`${where}: the head's input ${cut} has no static shape ([${shape?.join(', ') ?? '?'}]); cannot cut the model there`);
  const featureShape = shape.slice(1) as number[];
  const head = neededNodes(model, [model.output], new Set([cut, model.input]));
  if (head.reads.has(model.input)) throw new InputError(`${where}: the layers after ${cut} read values from before it besides ${cut}; cannot cut the model at its head`);
  const feat = neededNodes(model, [cut], new Set([model.input]));
  const headNames = new Set([h.weight.name, ...(h.bias ? [h.bias.name] : [])]);
  const isFixed = (name: string | undefined) => {
    const p = model.params.find((q) => q.name === name);
    return !p || !p.trainable || (frozen ? frozen.has(p.name) : !headNames.has(p.name));
  };
  const trained = paramsRead(model, feat.nodes).find((p) => p.trainable && !isFixed(p.name));
  if (trained) throw new InputError(`${where}: parameter ${trained.name} is trained but comes before the head's input ${cut}; only a frozen backbone can be cut off (--freeze backbone)`);
  // The full graph runs a BatchNorm on batch statistics unless its scale and shift are both frozen.
  const frozenSet = frozen ?? new Set(model.params.filter((p) => p.trainable && !headNames.has(p.name)).map((p) => p.name));
  const batchStats = feat.nodes.find((n) => n.op === 'BatchNormalization' && !(frozenSet.has(n.inputs[1]) && frozenSet.has(n.inputs[2])));
  if (batchStats) throw new InputError(`${where}: BatchNormalization node ${batchStats.name} before ${cut} runs on batch statistics in training (its scale and shift are not frozen parameters)`);
  const dropout = feat.nodes.find((n) => n.op === 'Dropout' && (model.dropouts.get(n.name)?.p ?? 0) > 0);
  if (dropout) throw new InputError(`${where}: Dropout node ${dropout.name} before ${cut} is random in training; its features cannot be computed once`);
  return {
    features: restrict(model, feat.nodes, model.input, model.inputShape, cut),
    head: { ...restrict(model, head.nodes, cut, featureShape, model.output), inputKind: 'features' },
    cut,
    featureShape,
    imported: model.source !== undefined,
  };
}

/**
 * How featuresGraph takes images: 'bytes', uint8 pixels as the eval graph takes them
 * (`images` [N,H,W] grey or [N,C,H,W], converted and normalised inside with `meta`); 'model',
 * as the model's own inference graph does: cnnlab's models `image` float32 0..1 normalised
 * inside, an imported model its own input (name and layout, channels-last included), prepared
 * outside as its metadata says.
 */
export type FeaturesInput = 'bytes' | 'model';

/**
 * The features as an ONNX graph: images in (see FeaturesInput), `features` float32
 * [N, ...featureShape] out, eval mode, the features' parameters (from `params`, which may hold
 * the whole model's) as initialisers.
 */
export function featuresGraph(split: HeadSplit, params: ParamSet, meta: ModelMeta, input: FeaturesInput): Uint8Array {
  const m = split.features;
  const b = new GraphBuilder('cnnlab_features');
  b.reserve('features');
  let x: string;
  if (input === 'bytes') {
    const images = b.input('images', 'uint8', ['N', ...byteImageDims(m)]);
    x = emitNormalize(b, emitImageFromBytes(b, images, m.inputShape, meta.inputRange), meta.mean, meta.std);
  } else if (split.imported) {
    x = importedInput(b, m);
  } else {
    x = emitImageInput(b, m, meta);
  }
  addParams(b, m, params);
  const out = emitForward(b, m, x, { param: (n) => n });
  b.expose(out, 'features', 'float32', ['N', ...split.featureShape]);
  return encodeModel(b.graph, { docString: `cnnlab ${meta.architecture} features (cut at ${split.cut})`, metadata: { ...metadataProps(m, meta), ...writeModelCard({ artifact: 'features', features: { cut: split.cut, shape: split.featureShape } }) } });
}

/** An imported model's own input (channels-last transposed to the [N,C,H,W] the forward graph reads). */
function importedInput(b: GraphBuilder, m: Model): string {
  const nhwc = m.graph.nodes.find((n) => n.op === 'Transpose' && n.inputs[0] === m.input && n.name.endsWith('__cnnlab_nhwc'));
  if (!nhwc) return b.input(m.input, 'float32', ['N', ...m.inputShape]);
  const [c, h, w] = m.inputShape;
  const own = b.input(nhwc.outputs[0], 'float32', ['N', h, w, c]);
  const x = b.op('Transpose', [own], { perm: attr.ints([0, 3, 1, 2]) }, 'input_nchw');
  b.note(x, 'float32', ['N', ...m.inputShape]);
  return x;
}

/**
 * The eval graph of a head (inputKind 'features'): as buildEvalModel's, with `images` float32
 * [B, ...featureShape] fed as they are. Outputs `loss_sum`, `correct`, `predicted` int64 [B].
 */
export function buildFeatureEvalModel(head: Model, loss: LossKind, meta: ModelMeta): Uint8Array {
  const b = new GraphBuilder('cnnlab_eval');
  for (const p of head.params) b.input(p.name, 'float32', p.shape);
  const features = b.input('images', 'float32', ['B', ...head.inputShape]);
  const labelsU8 = b.input('labels', 'uint8', ['B']);
  for (const n of ['loss_sum', 'correct', 'predicted']) b.reserve(n);
  const scores = emitForward(b, head, features, { param: (n) => n });
  const out = emitLoss(b, scores, b.cast(labelsU8, 'int64', 'labels_i64'), { kind: loss, reduction: 'sum', classes: head.classes });
  b.expose(out.loss, 'loss_sum', 'float32', []);
  b.expose(out.correct, 'correct', 'float32', []);
  b.expose(out.predicted, 'predicted', 'int64', ['B']);
  return encodeModel(b.graph, { docString: `cnnlab ${meta.architecture} head eval graph`, metadata: { ...metadataProps(head, meta), ...writeModelCard({ artifact: 'eval' }) } });
}

/**
 * The inference graph of a head: `features` float32 [N, ...featureShape] in, `logits` and
 * `probabilities` [N, classes] out; parameters as initialisers, or graph inputs ('inputs').
 */
export function buildHeadInferenceModel(head: Model, params: ParamSet | 'inputs', meta: ModelMeta): Uint8Array {
  const b = new GraphBuilder('cnnlab_head_inference');
  const features = b.input('features', 'float32', ['N', ...head.inputShape]);
  b.reserve('logits');
  b.reserve('probabilities');
  addParams(b, head, params);
  const scores = emitForward(b, head, features, { param: (n) => n });
  b.expose(scores, 'logits', 'float32', ['N', head.classes]);
  b.expose(b.op('Softmax', [scores], { axis: attr.int(1) }, 'softmax'), 'probabilities', 'float32', ['N', head.classes]);
  return encodeModel(b.graph, { docString: `cnnlab ${meta.architecture} head inference graph`, metadata: { ...metadataProps(head, meta), ...writeModelCard({ input: `features: float32 [N,${head.inputShape.join(',')}], the output of the features graph` }) } });
}
