import type { LayerKind } from './kind.ts';

export interface Dropout {
  kind: 'dropout';
  p: number;
}

export function dropout(p = 0.5): Dropout {
  return { kind: 'dropout', p };
}

/** ONNX's eval-form Dropout (the identity); training graphs replace it by a hashed mask (train-mode.ts). */
export const dropoutLayer: LayerKind<Dropout> = {
  kind: 'dropout',
  prefix: 'dropout',
  summaryType: 'Dropout',
  fromJson: (f) => dropout(f.num('p', 0.5)),
  describe: (l) => `dropout(${l.p})`,
  check: (l, bad) => {
    if (typeof l.p !== 'number' || !(l.p >= 0 && l.p <= 1)) bad(`p must be in 0..1, got ${l.p}`);
  },
  infer: (_l, ctx) => ({ out: ctx.shape, params: [] }),
  emit: (l, ctx) => {
    const out = ctx.b.op('Dropout', [ctx.x], {}, ctx.name);
    ctx.dropoutSite(ctx.b.graph.nodes[ctx.b.graph.nodes.length - 1].name, l.p);
    return out;
  },
};
