import type { LayerKind } from './kind.ts';

export interface GlobalAvgPool {
  kind: 'globalAvgPool';
}

export function globalAvgPool(): GlobalAvgPool {
  return { kind: 'globalAvgPool' };
}

export const globalAvgPoolLayer: LayerKind<GlobalAvgPool> = {
  kind: 'globalAvgPool',
  prefix: 'gap',
  summaryType: 'AdaptiveAvgPool2d',
  fromJson: () => globalAvgPool(),
  describe: () => 'globalAvgPool()',
  check: () => {},
  infer: (_l, ctx) => ({ out: [ctx.maps()[0], 1, 1], params: [] }),
  emit: (_l, { b, x, name }) => b.op('GlobalAveragePool', [x], {}, name),
};
