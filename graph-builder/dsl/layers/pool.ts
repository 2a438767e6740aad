import { attr } from '../../graph/ir.ts';
import { type LayerKind, positiveInt, windowOut } from './kind.ts';

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

/** PyTorch's MaxPool2d: the stride defaults to the kernel size. */
export function maxPool2d(kernel: number, stride = kernel): MaxPool2d {
  return { kind: 'maxPool2d', kernel, stride };
}

export function avgPool2d(kernel: number, stride = kernel): AvgPool2d {
  return { kind: 'avgPool2d', kernel, stride };
}

/** Max and average pooling share everything but their op and names. */
function windowPool<L extends MaxPool2d | AvgPool2d>(kind: L['kind'], op: string, prefix: string, summaryType: string, make: (k: number, s: number) => L): LayerKind<L> {
  return {
    kind,
    prefix,
    summaryType,
    fromJson: (f) => make(f.num('kernel'), f.num('stride', f.num('kernel'))),
    describe: (l) => `${l.kind}(${l.kernel}${l.stride !== l.kernel ? `, stride ${l.stride}` : ''})`,
    check: (l, bad) => {
      if (!positiveInt(l.kernel) || !positiveInt(l.stride)) bad('kernel and stride must be whole numbers >= 1');
    },
    infer: (l, ctx) => {
      const [c, h, w] = ctx.maps();
      if (h < l.kernel || w < l.kernel) ctx.fail(`receives ${h}x${w} maps, smaller than its ${l.kernel}x${l.kernel} window`);
      return { out: [c, windowOut(h, l.kernel, l.stride), windowOut(w, l.kernel, l.stride)], params: [] };
    },
    emit: (l, { b, x, name }) => b.op(op, [x], { kernel_shape: attr.ints([l.kernel, l.kernel]), strides: attr.ints([l.stride, l.stride]) }, name),
  };
}

export const maxPool2dLayer = windowPool<MaxPool2d>('maxPool2d', 'MaxPool', 'pool', 'MaxPool2d', maxPool2d);
export const avgPool2dLayer = windowPool<AvgPool2d>('avgPool2d', 'AveragePool', 'avgpool', 'AvgPool2d', avgPool2d);
