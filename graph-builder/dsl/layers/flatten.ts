import { attr } from '../../graph/ir.ts';
import { elementCount } from '../../model.ts';
import type { LayerKind } from './kind.ts';

export interface Flatten {
  kind: 'flatten';
}

export function flatten(): Flatten {
  return { kind: 'flatten' };
}

export const flattenLayer: LayerKind<Flatten> = {
  kind: 'flatten',
  prefix: 'flatten',
  summaryType: 'Flatten',
  fromJson: () => flatten(),
  describe: () => 'flatten()',
  check: () => {},
  infer: (_l, ctx) => ({ out: [elementCount(ctx.shape)], params: [] }),
  emit: (_l, { b, x, name }) => b.op('Flatten', [x], { axis: attr.int(1) }, name),
};
