import { attr } from '../../graph/ir.ts';
import { elementCount } from '../../model.ts';
import { opLayer } from './kind.ts';

export interface Flatten {
  kind: 'flatten';
}

export function flatten(): Flatten {
  return { kind: 'flatten' };
}

export const flattenLayer = opLayer<Flatten>({ kind: 'flatten', prefix: 'flatten', summaryType: 'Flatten', op: 'Flatten', make: flatten, attrs: { axis: attr.int(1) }, out: (ctx) => [elementCount(ctx.shape)] });
