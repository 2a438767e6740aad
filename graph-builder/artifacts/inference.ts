import type { ParamSet } from '../dsl/init.ts';
import type { ImageConversion } from '../../datasets/registry.ts';
import type { InputRange, Model } from '../model.ts';
import { emitForward, emitNormalize } from '../forward.ts';
import { attr, GraphBuilder } from '../graph/ir.ts';
import { encodeModel } from '../graph/onnx.ts';
import { type ModelCard, writeModelCard } from './model-card.ts';

export interface ModelMeta {
  /** Preset id or architecture file name. */
  architecture: string;
  dataset: string;
  classes: readonly string[];
  /** (x - mean) / std: one value for every channel, or one per channel. */
  mean: number | number[];
  std: number | number[];
  /** The value a white pixel has at the model's input, before normalisation (default 1). */
  inputRange?: InputRange;
  /** How its training images were converted (channel order, resizing), where not the default. */
  conversion?: ImageConversion;
  /** More of the card, as writeModelCard (or runCardEntries) writes it: test accuracy, run folder, layers, ... */
  extra?: Record<string, string>;
}

/** A model's card, as its inference graph's metadata: what it is, what it was trained on, how its input is read, and `meta.extra`. */
export function metadataProps(a: Model, meta: ModelMeta): Record<string, string> {
  const order = a.inputShape[0] === 1 ? '' : meta.conversion?.channelOrder === 'bgr' ? ' (BGR planes)' : ' (RGB)';
  const card: ModelCard = {
    architecture: meta.architecture,
    dataset: meta.dataset,
    classes: [...meta.classes],
    normalization: { mean: meta.mean, std: meta.std },
    parameters: a.trainableCount,
    input: `image: float32 [N,${a.inputShape.join(',')}], pixels 0..1${order}, normalised inside the graph`,
    // Written where it says more than the defaults.
    ...(meta.conversion?.channelOrder || meta.conversion?.resize ? { image: meta.conversion } : {}),
  };
  return { ...writeModelCard(card), ...meta.extra };
}

/**
 * The inference graph: `image` [N,C,H,W] in 0..1 → `logits` and `probabilities` [N,classes].
 * Parameters are initialisers named after the layers, so the model reads well in Netron.
 */
/**
 * The model's parameters in a graph: initialisers holding `params`, or with 'inputs' graph inputs
 * fed per run (the demo page predicts with the weights it fine-tunes).
 */
export function addParams(b: GraphBuilder, m: Model, params: ParamSet | 'inputs'): void {
  for (const p of m.params) {
    if (params === 'inputs') {
      b.input(p.name, 'float32', p.shape);
      continue;
    }
    const data = params.get(p.name);
    if (!data) throw new Error(`${b.graph.name}: parameter ${p.name} is missing`);
    b.initializer({ name: p.name, dtype: 'float32', dims: p.shape, data });
  }
}

/** The inference graphs' input: `image`, float32 [N, C, H, W] in 0..1, scaled to the model's range and normalised as its metadata says. */
export function emitImageInput(b: GraphBuilder, m: Model, meta: ModelMeta): string {
  const image = b.input('image', 'float32', ['N', ...m.inputShape]);
  const scaled = meta.inputRange === 255 ? b.op('Mul', [image, b.scalar(255)], {}, 'pixels_0_255') : image;
  if (scaled !== image) b.note(scaled, 'float32', ['N', ...m.inputShape]);
  return emitNormalize(b, scaled, meta.mean, meta.std);
}

export function buildInferenceModel(a: Model, params: ParamSet | 'inputs', meta: ModelMeta): Uint8Array {
  const b = new GraphBuilder('cnnlab_inference');
  const x = emitImageInput(b, a, meta);
  b.reserve('logits');
  b.reserve('probabilities');
  addParams(b, a, params);
  const scores = emitForward(b, a, x, { param: (name) => name });
  b.expose(scores, 'logits', 'float32', ['N', a.classes]);
  b.expose(b.op('Softmax', [scores], { axis: attr.int(1) }, 'softmax'), 'probabilities', 'float32', ['N', a.classes]);
  return encodeModel(b.graph, { docString: `cnnlab ${meta.architecture} inference graph`, metadata: metadataProps(a, meta) });
}
