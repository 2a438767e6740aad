import { attr } from '../../graph/ir.ts';
import { type LayerKind, positiveInt, shapeText } from './kind.ts';

export interface BatchNorm2d {
  kind: 'batchNorm2d';
  channels: number;
  eps: number;
  /** PyTorch's convention: the weight of the new batch in the running statistics. */
  momentum: number;
}

/** PyTorch defaults: eps 1e-5, momentum 0.1 (the weight of the new batch in the running stats). */
export function batchNorm2d(channels: number, opts: { eps?: number; momentum?: number } = {}): BatchNorm2d {
  return { kind: 'batchNorm2d', channels, eps: opts.eps ?? 1e-5, momentum: opts.momentum ?? 0.1 };
}

export const batchNorm2dLayer: LayerKind<BatchNorm2d> = {
  kind: 'batchNorm2d',
  prefix: 'bn',
  summaryType: 'BatchNorm2d',
  fromJson: (f) => batchNorm2d(f.num('channels'), { eps: f.num('eps', 1e-5), momentum: f.num('momentum', 0.1) }),
  describe: (l) => `batchNorm2d(${l.channels})`,
  check: (l, bad) => {
    if (!positiveInt(l.channels)) bad(`channels must be a whole number >= 1, got ${l.channels}`);
    if (!(l.eps > 0) || !(l.momentum >= 0 && l.momentum <= 1)) bad('eps must be > 0 and momentum in 0..1');
  },
  infer: (l, ctx) => {
    const [c] = ctx.maps();
    if (c !== l.channels) ctx.fail(`expects ${l.channels} channels, receives ${c} (${shapeText(ctx.shape)})`);
    const n = ctx.name;
    const one = (suffix: string, role: 'weight' | 'bias' | 'running_mean' | 'running_var', value: number) => ({
      name: `${n}.${suffix}`,
      shape: [l.channels],
      role,
      trainable: role === 'weight' || role === 'bias',
      init: { kind: 'constant' as const, value },
    });
    return { out: ctx.shape, params: [one('weight', 'weight', 1), one('bias', 'bias', 0), one('running_mean', 'running_mean', 0), one('running_var', 'running_var', 1)] };
  },
  // ONNX's momentum is the weight of the old running value: 1 - PyTorch's (as torch.onnx.export writes it).
  emit: (l, { b, x, name: n }) =>
    b.op('BatchNormalization', [x, `${n}.weight`, `${n}.bias`, `${n}.running_mean`, `${n}.running_var`], { epsilon: attr.float(l.eps), momentum: attr.float(1 - l.momentum) }, n),
};
