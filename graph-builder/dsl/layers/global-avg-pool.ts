import { opLayer } from './kind.ts';

export interface GlobalAvgPool {
  kind: 'globalAvgPool';
}

export function globalAvgPool(): GlobalAvgPool {
  return { kind: 'globalAvgPool' };
}

export const globalAvgPoolLayer = opLayer<GlobalAvgPool>({ kind: 'globalAvgPool', prefix: 'gap', summaryType: 'AdaptiveAvgPool2d', op: 'GlobalAveragePool', make: globalAvgPool, out: (ctx) => [ctx.maps()[0], 1, 1] });
