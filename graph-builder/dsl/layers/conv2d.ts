import { attr } from '../../graph/ir.ts';
import { fanInParam, type LayerKind, positiveInt, shapeText, windowOut } from './kind.ts';

export interface Conv2d {
  kind: 'conv2d';
  inChannels: number;
  outChannels: number;
  kernel: number;
  stride: number;
  padding: number;
  bias: boolean;
}

export function conv2d(inChannels: number, outChannels: number, kernel: number, opts: { stride?: number; padding?: number; bias?: boolean } = {}): Conv2d {
  return { kind: 'conv2d', inChannels, outChannels, kernel, stride: opts.stride ?? 1, padding: opts.padding ?? 0, bias: opts.bias ?? true };
}

export const conv2dLayer: LayerKind<Conv2d> = {
  kind: 'conv2d',
  prefix: 'conv',
  summaryType: 'Conv2d',
  fromJson: (f) => conv2d(f.num('inChannels'), f.num('outChannels'), f.num('kernel'), { stride: f.num('stride', 1), padding: f.num('padding', 0), bias: f.bool('bias', true) }),
  describe: (l) => {
    const extra = [`${l.kernel}x${l.kernel}`];
    if (l.stride !== 1) extra.push(`stride ${l.stride}`);
    if (l.padding) extra.push(`pad ${l.padding}`);
    if (!l.bias) extra.push('no bias');
    return `conv2d(${l.inChannels} -> ${l.outChannels}, ${extra.join(', ')})`;
  },
  check: (l, bad) => {
    for (const k of ['inChannels', 'outChannels', 'kernel', 'stride'] as const) if (!positiveInt(l[k])) bad(`${k} must be a whole number >= 1, got ${l[k]}`);
    if (!Number.isInteger(l.padding) || l.padding < 0) bad(`padding must be a whole number >= 0, got ${l.padding}`);
  },
  infer: (l, ctx) => {
    const [c, h, w] = ctx.maps();
    if (c !== l.inChannels) ctx.fail(`expects ${l.inChannels} input channels, receives ${c} (${shapeText(ctx.shape)})`);
    if (h + 2 * l.padding < l.kernel || w + 2 * l.padding < l.kernel) ctx.fail(`receives ${h}x${w} maps, smaller than its ${l.kernel}x${l.kernel} kernel with padding ${l.padding}`);
    const fanIn = l.inChannels * l.kernel * l.kernel;
    const params = [fanInParam(`${ctx.name}.weight`, [l.outChannels, l.inChannels, l.kernel, l.kernel], 'weight', fanIn)];
    if (l.bias) params.push(fanInParam(`${ctx.name}.bias`, [l.outChannels], 'bias', fanIn));
    return { out: [l.outChannels, windowOut(h, l.kernel, l.stride, l.padding), windowOut(w, l.kernel, l.stride, l.padding)], params };
  },
  withOutputs: (l, n) => ({ ...l, outChannels: n }),
  emit: (l, { b, x, name }) => {
    const inputs = [x, `${name}.weight`, ...(l.bias ? [`${name}.bias`] : [])];
    const p = l.padding;
    return b.op('Conv', inputs, { kernel_shape: attr.ints([l.kernel, l.kernel]), pads: attr.ints([p, p, p, p]), strides: attr.ints([l.stride, l.stride]) }, name);
  },
};
