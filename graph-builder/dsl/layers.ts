/**
 * The model DSL: layers as plain data, written the way PyTorch users write nn.Sequential.
 * Everything downstream (shapes, parameters, graphs) is derived from this list.
 */

export interface Conv2d {
  kind: 'conv2d';
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  padding: number;
  bias: boolean;
}
export interface MaxPool2d {
  kind: 'maxPool2d';
  kernel: number;
  stride: number;
}
export interface AvgPool2d {
  kind: 'avgPool2d';
  kernel: number;
  stride: number;
}
export interface GlobalAvgPool {
  kind: 'globalAvgPool';
}
export interface Relu {
  kind: 'relu';
}
export interface Dropout {
  kind: 'dropout';
  p: number;
}
export interface BatchNorm2d {
  kind: 'batchNorm2d';
  channels: number;
  eps: number;
  momentum: number;
}
export interface Flatten {
  kind: 'flatten';
}
export interface Linear {
  kind: 'linear';
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}
export interface LogSoftmax {
  kind: 'logSoftmax';
}

export type Layer = Conv2d | MaxPool2d | AvgPool2d | GlobalAvgPool | Relu | Dropout | BatchNorm2d | Flatten | Linear | LogSoftmax;
export type LayerKind = Layer['kind'];

export interface Model {
  layers: Layer[];
}

export const LAYER_KINDS: readonly LayerKind[] = [
  'conv2d',
  'maxPool2d',
  'avgPool2d',
  'globalAvgPool',
  'relu',
  'dropout',
  'batchNorm2d',
  'flatten',
  'linear',
  'logSoftmax',
];

export function sequential(...layers: (Layer | Layer[])[]): Model {
  return { layers: layers.flat() };
}

export function conv2d(
  inChannels: number,
  outChannels: number,
  kernel: number,
  opts: { stride?: number; padding?: number; bias?: boolean } = {},
): Conv2d {
  return { kind: 'conv2d', inChannels, outChannels, kernel, stride: opts.stride ?? 1, padding: opts.padding ?? 0, bias: opts.bias ?? true };
}

/** PyTorch's MaxPool2d: the stride defaults to the kernel size. */
export function maxPool2d(kernel: number, stride = kernel): MaxPool2d {
  return { kind: 'maxPool2d', kernel, stride };
}

export function avgPool2d(kernel: number, stride = kernel): AvgPool2d {
  return { kind: 'avgPool2d', kernel, stride };
}

export function globalAvgPool(): GlobalAvgPool {
  return { kind: 'globalAvgPool' };
}

export function relu(): Relu {
  return { kind: 'relu' };
}

export function dropout(p = 0.5): Dropout {
  return { kind: 'dropout', p };
}

/** PyTorch defaults: eps 1e-5, momentum 0.1 (the weight of the new batch in the running stats). */
export function batchNorm2d(channels: number, opts: { eps?: number; momentum?: number } = {}): BatchNorm2d {
  return { kind: 'batchNorm2d', channels, eps: opts.eps ?? 1e-5, momentum: opts.momentum ?? 0.1 };
}

export function flatten(): Flatten {
  return { kind: 'flatten' };
}

export function linear(inFeatures: number, outFeatures: number, opts: { bias?: boolean } = {}): Linear {
  return { kind: 'linear', inFeatures, outFeatures, bias: opts.bias ?? true };
}

export function logSoftmax(): LogSoftmax {
  return { kind: 'logSoftmax' };
}

/** How a layer reads in messages and summaries, e.g. `conv2d(1 -> 32, 5x5, pad 2)`. */
export function describeLayer(l: Layer): string {
  switch (l.kind) {
    case 'conv2d': {
      const extra = [`${l.kernel}x${l.kernel}`];
      if (l.stride !== 1) extra.push(`stride ${l.stride}`);
      if (l.padding) extra.push(`pad ${l.padding}`);
      if (!l.bias) extra.push('no bias');
      return `conv2d(${l.inChannels} -> ${l.outChannels}, ${extra.join(', ')})`;
    }
    case 'maxPool2d':
    case 'avgPool2d':
      return `${l.kind}(${l.kernel}${l.stride !== l.kernel ? `, stride ${l.stride}` : ''})`;
    case 'dropout':
      return `dropout(${l.p})`;
    case 'batchNorm2d':
      return `batchNorm2d(${l.channels})`;
    case 'linear':
      return `linear(${l.inFeatures} -> ${l.outFeatures}${l.bias ? '' : ', no bias'})`;
    default:
      return `${l.kind}()`;
  }
}
