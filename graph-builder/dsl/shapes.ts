import { CnnlabError } from '../../common/errors.ts';
import { describeLayer, type Layer, type Model } from './layers.ts';

/** A per-example shape: [C, H, W] for feature maps, [F] for features. The batch is implicit. */
export type Shape = number[];

export const INPUT_SHAPE: Shape = [1, 28, 28];

export type ParamRole = 'weight' | 'bias' | 'running_mean' | 'running_var';

export interface ParamSpec {
  /** PyTorch-style name, e.g. `conv1.weight`, `bn2.running_var`. */
  name: string;
  shape: number[];
  role: ParamRole;
  /** Running statistics are state, not parameters: they are not trained and not counted. */
  trainable: boolean;
  /** Fan-in for PyTorch's default initialisation. */
  fanIn: number;
}

export interface LayerInfo {
  /** 1-based position in the model, as error messages give it. */
  index: number;
  layer: Layer;
  /** conv1, pool1, fc2, ...: the prefix of its parameters' names. */
  name: string;
  inShape: Shape;
  outShape: Shape;
  params: ParamSpec[];
}

export interface Analysis {
  layers: LayerInfo[];
  params: ParamSpec[];
  trainableCount: number;
  outShape: Shape;
}

function shapeText(s: Shape): string {
  return s.join('x');
}

const NAME_PREFIX: Record<Layer['kind'], string> = {
  conv2d: 'conv',
  maxPool2d: 'pool',
  avgPool2d: 'avgpool',
  globalAvgPool: 'gap',
  relu: 'relu',
  dropout: 'dropout',
  batchNorm2d: 'bn',
  flatten: 'flatten',
  linear: 'fc',
  logSoftmax: 'logsoftmax',
};

function positiveInt(v: unknown): boolean {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1;
}

/** Checks a layer's own settings before its shapes. */
function checkSettings(l: Layer, where: string): void {
  const bad = (what: string) => {
    throw new CnnlabError(`${where}: ${what}`);
  };
  switch (l.kind) {
    case 'conv2d':
      for (const k of ['inChannels', 'outChannels', 'kernel', 'stride'] as const) if (!positiveInt(l[k])) bad(`${k} must be a whole number >= 1, got ${l[k]}`);
      if (!Number.isInteger(l.padding) || l.padding < 0) bad(`padding must be a whole number >= 0, got ${l.padding}`);
      break;
    case 'maxPool2d':
    case 'avgPool2d':
      if (!positiveInt(l.kernel) || !positiveInt(l.stride)) bad(`kernel and stride must be whole numbers >= 1`);
      break;
    case 'dropout':
      if (typeof l.p !== 'number' || !(l.p >= 0 && l.p <= 1)) bad(`p must be in 0..1, got ${l.p}`);
      break;
    case 'batchNorm2d':
      if (!positiveInt(l.channels)) bad(`channels must be a whole number >= 1, got ${l.channels}`);
      if (!(l.eps > 0) || !(l.momentum >= 0 && l.momentum <= 1)) bad(`eps must be > 0 and momentum in 0..1`);
      break;
    case 'linear':
      if (!positiveInt(l.inFeatures) || !positiveInt(l.outFeatures)) bad(`features must be whole numbers >= 1`);
      break;
  }
}

/**
 * Infers every layer's output shape from the 1x28x28 input and lists the parameters.
 * A mismatch names the layer by position and kind, what it expects and what it receives.
 */
export function analyse(model: Model, input: Shape = INPUT_SHAPE): Analysis {
  if (model.layers.length === 0) throw new CnnlabError('the model has no layers');
  const counters = new Map<string, number>();
  const layers: LayerInfo[] = [];
  let shape = input;
  model.layers.forEach((layer, i) => {
    const index = i + 1;
    const where = `layer ${index} ${describeLayer(layer)}`;
    checkSettings(layer, where);
    const prefix = NAME_PREFIX[layer.kind];
    const k = (counters.get(prefix) ?? 0) + 1;
    counters.set(prefix, k);
    const name = `${prefix}${k}`;
    const fail = (what: string): never => {
      throw new CnnlabError(`${where} ${what}`);
    };
    const needMaps = () => {
      if (shape.length !== 3) fail(`expects a CxHxW feature map, receives ${shape[0]} features; it cannot follow flatten or linear`);
    };
    const params: ParamSpec[] = [];
    let out: Shape;
    switch (layer.kind) {
      case 'conv2d': {
        needMaps();
        const [c, h, w] = shape;
        if (c !== layer.inChannels) fail(`expects ${layer.inChannels} input channels, receives ${c} (${shapeText(shape)})`);
        const size = (n: number) => Math.floor((n + 2 * layer.padding - layer.kernel) / layer.stride) + 1;
        if (h + 2 * layer.padding < layer.kernel || w + 2 * layer.padding < layer.kernel) {
          fail(`receives ${h}x${w} maps, smaller than its ${layer.kernel}x${layer.kernel} kernel with padding ${layer.padding}`);
        }
        out = [layer.outChannels, size(h), size(w)];
        const fanIn = layer.inChannels * layer.kernel * layer.kernel;
        params.push({ name: `${name}.weight`, shape: [layer.outChannels, layer.inChannels, layer.kernel, layer.kernel], role: 'weight', trainable: true, fanIn });
        if (layer.bias) params.push({ name: `${name}.bias`, shape: [layer.outChannels], role: 'bias', trainable: true, fanIn });
        break;
      }
      case 'maxPool2d':
      case 'avgPool2d': {
        needMaps();
        const [c, h, w] = shape;
        if (h < layer.kernel || w < layer.kernel) fail(`receives ${h}x${w} maps, smaller than its ${layer.kernel}x${layer.kernel} window`);
        const size = (n: number) => Math.floor((n - layer.kernel) / layer.stride) + 1;
        out = [c, size(h), size(w)];
        break;
      }
      case 'globalAvgPool':
        needMaps();
        out = [shape[0], 1, 1];
        break;
      case 'batchNorm2d':
        needMaps();
        if (shape[0] !== layer.channels) fail(`expects ${layer.channels} channels, receives ${shape[0]} (${shapeText(shape)})`);
        out = shape;
        params.push({ name: `${name}.weight`, shape: [layer.channels], role: 'weight', trainable: true, fanIn: 0 });
        params.push({ name: `${name}.bias`, shape: [layer.channels], role: 'bias', trainable: true, fanIn: 0 });
        params.push({ name: `${name}.running_mean`, shape: [layer.channels], role: 'running_mean', trainable: false, fanIn: 0 });
        params.push({ name: `${name}.running_var`, shape: [layer.channels], role: 'running_var', trainable: false, fanIn: 0 });
        break;
      case 'flatten':
        out = [shape.reduce((a, b) => a * b, 1)];
        break;
      case 'linear': {
        if (shape.length !== 1) {
          fail(`receives a ${shapeText(shape)} feature map; put flatten() before it`);
        }
        if (shape[0] !== layer.inFeatures) {
          const prev = layers[layers.length - 1];
          const origin = prev && prev.layer.kind === 'flatten' ? ` (${shapeText(prev.inShape)} after flatten)` : '';
          fail(`receives ${shape[0]} features${origin}`);
        }
        out = [layer.outFeatures];
        params.push({ name: `${name}.weight`, shape: [layer.outFeatures, layer.inFeatures], role: 'weight', trainable: true, fanIn: layer.inFeatures });
        if (layer.bias) params.push({ name: `${name}.bias`, shape: [layer.outFeatures], role: 'bias', trainable: true, fanIn: layer.inFeatures });
        break;
      }
      case 'relu':
      case 'dropout':
      case 'logSoftmax':
        out = shape;
        break;
    }
    layers.push({ index, layer, name, inShape: shape, outShape: out, params });
    shape = out;
  });
  const classes = shape.length === 1 ? shape[0] : -1;
  if (classes !== 10) {
    const last = layers[layers.length - 1];
    throw new CnnlabError(
      `the model ends in ${shapeText(shape)} (${describeLayer(last.layer)}, layer ${last.index}); it must end in 10 class scores (add flatten() or a linear layer)`,
    );
  }
  const params = layers.flatMap((l) => l.params);
  const trainableCount = params.filter((p) => p.trainable).reduce((a, p) => a + p.shape.reduce((x, y) => x * y, 1), 0);
  return { layers, params, trainableCount, outShape: shape };
}
