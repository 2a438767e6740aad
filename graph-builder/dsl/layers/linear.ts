import { attr } from '../../graph/ir.ts';
import { fanInParam, type LayerKind, positiveInt, shapeText } from './kind.ts';

export interface Linear {
  kind: 'linear';
  inFeatures: number;
  outFeatures: number;
  bias: boolean;
}

export function linear(inFeatures: number, outFeatures: number, opts: { bias?: boolean } = {}): Linear {
  return { kind: 'linear', inFeatures, outFeatures, bias: opts.bias ?? true };
}

export const linearLayer: LayerKind<Linear> = {
  kind: 'linear',
  prefix: 'fc',
  summaryType: 'Linear',
  fromJson: (f) => linear(f.num('inFeatures'), f.num('outFeatures'), { bias: f.bool('bias', true) }),
  describe: (l) => `linear(${l.inFeatures} -> ${l.outFeatures}${l.bias ? '' : ', no bias'})`,
  check: (l, bad) => {
    if (!positiveInt(l.inFeatures) || !positiveInt(l.outFeatures)) bad('features must be whole numbers >= 1');
  },
  infer: (l, ctx) => {
    if (ctx.shape.length !== 1) ctx.fail(`receives a ${shapeText(ctx.shape)} feature map; put flatten() before it`);
    if (ctx.shape[0] !== l.inFeatures) {
      const origin = ctx.prev?.kind === 'flatten' ? ` (${shapeText(ctx.prev.inShape)} after flatten)` : '';
      ctx.fail(`receives ${ctx.shape[0]} features${origin}`);
    }
    const params = [fanInParam(`${ctx.name}.weight`, [l.outFeatures, l.inFeatures], 'weight', l.inFeatures)];
    if (l.bias) params.push(fanInParam(`${ctx.name}.bias`, [l.outFeatures], 'bias', l.inFeatures));
    return { out: [l.outFeatures], params };
  },
  withOutputs: (l, n) => ({ ...l, outFeatures: n }),
  emit: (l, { b, x, name }) => b.op('Gemm', [x, `${name}.weight`, ...(l.bias ? [`${name}.bias`] : [])], { transB: attr.int(1) }, name),
};
