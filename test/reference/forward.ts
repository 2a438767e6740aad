/**
 * A plain TypeScript forward pass, loops over pixels, written independently of the graph
 * builder so that the ONNX graphs are checked by something other than onnxruntime.
 */
import type { Layer, Sequential as Model } from '../../graph-builder/dsl/layers.ts';

export interface Act {
  /** [C, H, W] or [F] per example. */
  shape: number[];
  /** N examples, each of prod(shape) values. */
  data: Float64Array[];
}

type Params = Map<string, Float32Array>;

function conv(x: Float64Array, [c, h, w]: number[], W: Float32Array, B: Float32Array | undefined, o: number, k: number, s: number, p: number): [Float64Array, number[]] {
  const oh = Math.floor((h + 2 * p - k) / s) + 1;
  const ow = Math.floor((w + 2 * p - k) / s) + 1;
  const y = new Float64Array(o * oh * ow);
  for (let oc = 0; oc < o; oc++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let acc = B ? B[oc] : 0;
        for (let ic = 0; ic < c; ic++)
          for (let di = 0; di < k; di++)
            for (let dj = 0; dj < k; dj++) {
              const yi = i * s + di - p;
              const xj = j * s + dj - p;
              if (yi < 0 || yi >= h || xj < 0 || xj >= w) continue;
              acc += x[(ic * h + yi) * w + xj] * W[((oc * c + ic) * k + di) * k + dj];
            }
        y[(oc * oh + i) * ow + j] = acc;
      }
  return [y, [o, oh, ow]];
}

function pool(x: Float64Array, [c, h, w]: number[], k: number, s: number, max: boolean): [Float64Array, number[]] {
  const oh = Math.floor((h - k) / s) + 1;
  const ow = Math.floor((w - k) / s) + 1;
  const y = new Float64Array(c * oh * ow);
  for (let ch = 0; ch < c; ch++)
    for (let i = 0; i < oh; i++)
      for (let j = 0; j < ow; j++) {
        let acc = max ? -Infinity : 0;
        for (let di = 0; di < k; di++)
          for (let dj = 0; dj < k; dj++) {
            const v = x[(ch * h + i * s + di) * w + j * s + dj];
            acc = max ? Math.max(acc, v) : acc + v;
          }
        y[(ch * oh + i) * ow + j] = max ? acc : acc / (k * k);
      }
  return [y, [c, oh, ow]];
}

function layerForward(L: Layer, name: string, x: Float64Array, shape: number[], P: Params): [Float64Array, number[]] {
  switch (L.kind) {
    case 'conv2d':
      return conv(x, shape, P.get(`${name}.weight`)!, L.bias ? P.get(`${name}.bias`) : undefined, L.outChannels, L.kernel, L.stride, L.padding);
    case 'maxPool2d':
      return pool(x, shape, L.kernel, L.stride, true);
    case 'avgPool2d':
      return pool(x, shape, L.kernel, L.stride, false);
    case 'globalAvgPool':
      return pool(x, shape, shape[1], 1, false);
    case 'relu':
      return [x.map((v) => Math.max(0, v)), shape];
    case 'dropout':
      return [x, shape];
    case 'batchNorm2d': {
      const [c, h, w] = shape;
      const g = P.get(`${name}.weight`)!;
      const b = P.get(`${name}.bias`)!;
      const m = P.get(`${name}.running_mean`)!;
      const v = P.get(`${name}.running_var`)!;
      const y = new Float64Array(x.length);
      for (let ch = 0; ch < c; ch++)
        for (let i = 0; i < h * w; i++) y[ch * h * w + i] = ((x[ch * h * w + i] - m[ch]) / Math.sqrt(v[ch] + L.eps)) * g[ch] + b[ch];
      return [y, shape];
    }
    case 'flatten':
      return [x, [x.length]];
    case 'linear': {
      const W = P.get(`${name}.weight`)!;
      const B = L.bias ? P.get(`${name}.bias`) : undefined;
      const y = new Float64Array(L.outFeatures);
      for (let o = 0; o < L.outFeatures; o++) {
        let acc = B ? B[o] : 0;
        for (let i = 0; i < L.inFeatures; i++) acc += W[o * L.inFeatures + i] * x[i];
        y[o] = acc;
      }
      return [y, [L.outFeatures]];
    }
    case 'logSoftmax': {
      const max = Math.max(...x);
      const lse = max + Math.log(x.reduce((a, v) => a + Math.exp(v - max), 0));
      return [x.map((v) => v - lse), shape];
    }
  }
}

/** Layer names as the graph builder gives them (conv1, fc2, bn3, ...). */
export function layerNames(model: Model): string[] {
  const prefix: Record<Layer['kind'], string> = {
    conv2d: 'conv', maxPool2d: 'pool', avgPool2d: 'avgpool', globalAvgPool: 'gap', relu: 'relu',
    dropout: 'dropout', batchNorm2d: 'bn', flatten: 'flatten', linear: 'fc', logSoftmax: 'logsoftmax',
  };
  const counts = new Map<string, number>();
  return model.layers.map((l) => {
    const k = (counts.get(prefix[l.kind]) ?? 0) + 1;
    counts.set(prefix[l.kind], k);
    return `${prefix[l.kind]}${k}`;
  });
}

/** Eval-mode forward of `images` (N x 784, pixels 0..1) with normalisation; returns N x 10 scores. */
export function referenceForward(model: Model, P: Params, images: Float32Array, n: number, mean: number, std: number): Float64Array[] {
  const names = layerNames(model);
  const out: Float64Array[] = [];
  for (let e = 0; e < n; e++) {
    let x: Float64Array = Float64Array.from(images.subarray(e * 784, (e + 1) * 784), (v) => (v - mean) / std);
    let shape = [1, 28, 28];
    model.layers.forEach((L, i) => {
      [x, shape] = layerForward(L, names[i], x, shape, P);
    });
    out.push(x);
  }
  return out;
}

export function softmax(x: Float64Array): Float64Array {
  const max = Math.max(...x);
  const e = x.map((v) => Math.exp(v - max));
  const s = e.reduce((a, b) => a + b, 0);
  return e.map((v) => v / s);
}
