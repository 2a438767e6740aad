import { attr, type GraphBuilder } from './graph/ir.ts';
import type { Analysis, LayerInfo } from './dsl/shapes.ts';

/**
 * How train-mode layers are lowered. Eval mode needs none of this: Dropout is the identity
 * and BatchNorm uses its running statistics through the BatchNormalization op.
 */
export interface TrainHooks {
  /** Emits a dropout of `x` for layer `info`; returns the output value. */
  dropout: (b: GraphBuilder, x: string, info: LayerInfo, p: number) => string;
  /** Emits batch norm from batch statistics; returns the output value. */
  batchNorm: (b: GraphBuilder, x: string, info: LayerInfo, param: (name: string) => string) => string;
}

export interface ForwardOptions {
  /** The value holding a parameter or buffer (an initialiser, a graph input, a loop-carried value). */
  param: (name: string) => string;
  /** Present in training graphs; absent in eval and inference graphs. */
  train?: TrainHooks;
}

/** Emits the network's forward pass from `x` ([N,1,28,28], normalised) and returns the class scores [N,10]. */
export function emitForward(b: GraphBuilder, a: Analysis, x: string, opts: ForwardOptions): string {
  const { param } = opts;
  let h = x;
  for (const info of a.layers) {
    const L = info.layer;
    const hint = info.name;
    const shape = ['N', ...info.outShape];
    switch (L.kind) {
      case 'conv2d': {
        const inputs = [h, param(`${info.name}.weight`)];
        if (L.bias) inputs.push(param(`${info.name}.bias`));
        const p = L.padding;
        h = b.op('Conv', inputs, { kernel_shape: attr.ints([L.kernel, L.kernel]), pads: attr.ints([p, p, p, p]), strides: attr.ints([L.stride, L.stride]) }, hint);
        break;
      }
      case 'maxPool2d': {
        // Training graphs keep the Indices output: the MaxPool gradient routes through it.
        const pool = { kernel_shape: attr.ints([L.kernel, L.kernel]), strides: attr.ints([L.stride, L.stride]) };
        h = opts.train ? b.node('MaxPool', [h], pool, 2, hint)[0] : b.op('MaxPool', [h], pool, hint);
        break;
      }
      case 'avgPool2d':
        h = b.op('AveragePool', [h], { kernel_shape: attr.ints([L.kernel, L.kernel]), strides: attr.ints([L.stride, L.stride]) }, hint);
        break;
      case 'globalAvgPool':
        h = b.op('GlobalAveragePool', [h], {}, hint);
        break;
      case 'relu':
        h = b.op('Relu', [h], {}, hint);
        break;
      case 'dropout':
        if (opts.train && L.p > 0) h = opts.train.dropout(b, h, info, L.p);
        break;
      case 'batchNorm2d':
        if (opts.train) {
          h = opts.train.batchNorm(b, h, info, param);
        } else {
          const n = info.name;
          h = b.op('BatchNormalization', [h, param(`${n}.weight`), param(`${n}.bias`), param(`${n}.running_mean`), param(`${n}.running_var`)], { epsilon: attr.float(L.eps) }, hint);
        }
        break;
      case 'flatten':
        h = b.op('Flatten', [h], { axis: attr.int(1) }, hint);
        break;
      case 'linear': {
        const inputs = [h, param(`${info.name}.weight`)];
        if (L.bias) inputs.push(param(`${info.name}.bias`));
        h = b.op('Gemm', inputs, { transB: attr.int(1) }, hint);
        break;
      }
      case 'logSoftmax':
        h = b.op('LogSoftmax', [h], { axis: attr.int(1) }, hint);
        break;
    }
    b.note(h, 'float32', shape);
  }
  return h;
}

/** uint8 images [N,28,28] (0..255) as float32 [N,1,28,28] in 0..1, the inference graph's input form. */
export function emitImageFromBytes(b: GraphBuilder, bytes: string): string {
  const pixels = b.op('Div', [b.cast(bytes, 'float32', 'pixels_f'), b.scalar(255)], {}, 'pixels');
  const image = b.op('Unsqueeze', [pixels, b.constI([1])], {}, 'image_nchw');
  b.note(image, 'float32', ['N', 1, 28, 28]);
  return image;
}

/** Emits (x - mean) / std. */
export function emitNormalize(b: GraphBuilder, x: string, mean: number, std: number): string {
  const centred = b.op('Sub', [x, b.scalar(mean, 'norm_mean')], {}, 'centred');
  const out = b.op('Div', [centred, b.scalar(std, 'norm_std')], {}, 'normalised');
  b.note(out, 'float32', b.shapes.get(x));
  return out;
}
