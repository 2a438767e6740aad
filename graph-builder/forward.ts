import { type AttrValue, attr, type GraphBuilder, type Node } from './graph/ir.ts';
import type { DropoutSite, InputRange, Model, Shape } from './model.ts';

/** A BatchNormalization node of the forward graph, its values mapped into the graph being built. */
export interface BatchNormSite {
  /** The node's output name in the model (a hint for the values it emits). */
  name: string;
  channels: number;
  eps: number;
  /** PyTorch's convention: the weight of the new batch in the running statistics (1 - ONNX's). */
  momentum: number;
  gamma: string;
  beta: string;
  runningMean: string;
  runningVar: string;
  /** The running statistics' parameter names (the keys of their updates). */
  meanParam: string;
  varParam: string;
}

/**
 * How train-mode layers are lowered. Eval mode needs none of this: Dropout is the identity
 * and BatchNorm uses its running statistics through the BatchNormalization op.
 */
export interface TrainHooks {
  /** Emits a dropout of `x`; returns the output value. */
  dropout: (b: GraphBuilder, x: string, name: string, site: DropoutSite) => string;
  /** Emits batch norm from batch statistics; returns the output value. */
  batchNorm: (b: GraphBuilder, x: string, site: BatchNormSite) => string;
}

export interface ForwardOptions {
  /** The value holding a parameter or buffer (an initialiser, a graph input, a loop-carried value). */
  param: (name: string) => string;
  /** Present in training graphs; absent in eval and inference graphs. */
  train?: TrainHooks;
  /** BatchNorm nodes of a frozen part: in training graphs too they use their running statistics (PyTorch's eval-mode backbone). */
  frozenBatchNorm?: (node: Node) => boolean;
}

const floatAttr = (a: AttrValue | undefined, fallback: number) => (a?.kind === 'float' ? a.value : fallback);

function batchNormSite(model: Model, node: Node, value: (v: string) => string): BatchNormSite {
  const [, gamma, beta, mean, variance] = node.inputs;
  const channels = model.params.find((p) => p.name === gamma)?.shape[0] ?? model.shapes.get(node.inputs[0])?.[1];
  if (typeof channels !== 'number') throw new Error(`${node.name}: BatchNormalization's input ${node.inputs[0]} needs a static channel count`);
  return {
    name: node.outputs[0],
    channels,
    eps: floatAttr(node.attrs.epsilon, 1e-5),
    // ONNX stores momentum as float32 (0.9 -> 0.89999998): 7 significant digits give back the
    // decimal the exporter was given, so an imported BatchNorm updates as PyTorch's does.
    momentum: Number((1 - floatAttr(node.attrs.momentum, 0.9)).toPrecision(7)),
    gamma: value(gamma),
    beta: value(beta),
    runningMean: value(mean),
    runningVar: value(variance),
    meanParam: mean,
    varParam: variance,
  };
}

/**
 * Emits the model's forward graph into `b`, from `x` (the model's input: [N,C,H,W],
 * normalised), and returns the class scores. Parameters become `opts.param(name)`; in training
 * graphs Dropout and BatchNormalization are lowered by the hooks and MaxPool keeps its Indices
 * output, which the MaxPool gradient routes through.
 */
export function emitForward(b: GraphBuilder, model: Model, x: string, opts: ForwardOptions): string {
  const values = new Map<string, string>([[model.input, x]]);
  for (const p of model.params) values.set(p.name, opts.param(p.name));
  const value = (v: string) => {
    const out = values.get(v);
    if (out === undefined) throw new Error(`forward graph of ${model.id}: ${v} is read before it is defined`);
    return out;
  };
  for (const node of model.graph.nodes) {
    const inputs = node.inputs.map(value);
    const hint = node.outputs[0];
    let out: string;
    if (node.op === 'Dropout') {
      const site = model.dropouts.get(node.name);
      out = opts.train && site && site.p > 0 ? opts.train.dropout(b, inputs[0], hint, site) : inputs[0];
    } else if (node.op === 'BatchNormalization' && opts.train && !opts.frozenBatchNorm?.(node)) {
      out = opts.train.batchNorm(b, inputs[0], batchNormSite(model, node, value));
    } else if (node.op === 'MaxPool' && opts.train) {
      out = b.node('MaxPool', inputs, node.attrs, 2, hint)[0];
    } else {
      out = b.op(node.op, inputs, node.attrs, hint);
    }
    values.set(node.outputs[0], out);
    const constant = node.op === 'Constant' && node.attrs.value?.kind === 'tensor' ? node.attrs.value.value : undefined;
    if (constant) b.note(out, constant.dtype, constant.dims);
    else b.note(out, 'float32', model.shapes.get(node.outputs[0]));
  }
  return value(model.output);
}

/**
 * uint8 images (0..255; [N,H,W] grey or [N,C,H,W], see byteImageDims) as float32 [N,C,H,W] in
 * 0..1, the inference graph's input form.
 */
export function emitImageFromBytes(b: GraphBuilder, bytes: string, inputShape: Shape, range: InputRange = 1): string {
  // range 255: a model that takes raw 0..255 pixels.
  const pixels = range === 255 ? b.cast(bytes, 'float32', 'pixels') : b.op('Div', [b.cast(bytes, 'float32', 'pixels_f'), b.scalar(255)], {}, 'pixels');
  const image = inputShape[0] === 1 ? b.op('Unsqueeze', [pixels, b.constI([1])], {}, 'image_nchw') : pixels;
  b.note(image, 'float32', ['N', ...inputShape]);
  return image;
}

/** Emits (x - mean) / std on [N, C, H, W]: a scalar each, or one value per channel (a [1, C, 1, 1] constant). */
export function emitNormalize(b: GraphBuilder, x: string, mean: number | readonly number[], std: number | readonly number[]): string {
  const constant = (v: number | readonly number[], hint: string) => (typeof v === 'number' ? b.scalar(v, hint) : b.constF([...v], [1, v.length, 1, 1], hint));
  const centred = b.op('Sub', [x, constant(mean, 'norm_mean')], {}, 'centred');
  const out = b.op('Div', [centred, constant(std, 'norm_std')], {}, 'normalised');
  b.note(out, 'float32', b.shapes.get(x));
  return out;
}
