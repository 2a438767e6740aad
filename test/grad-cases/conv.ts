import { conv as convRule } from '../../graph-builder/autodiff/rules/conv.ts';
import type { GradRule } from '../../graph-builder/autodiff/rule.ts';
import { type AttrValue, attr } from '../../graph-builder/graph/ir.ts';
import type { GradCase } from '../helpers/gradcheck.ts';

interface Window {
  group?: number;
  kernel?: number[];
  strides?: number[];
  pads?: number[];
  dilations?: number[];
  autoPad?: string;
  outputPadding?: number[];
}

/** The attributes of a window op, only those given. */
function attrs(s: Window): Record<string, AttrValue> {
  const out: Record<string, AttrValue> = {};
  if (s.group !== undefined) out.group = attr.int(s.group);
  if (s.kernel) out.kernel_shape = attr.ints(s.kernel);
  if (s.strides) out.strides = attr.ints(s.strides);
  if (s.pads) out.pads = attr.ints(s.pads);
  if (s.dilations) out.dilations = attr.ints(s.dilations);
  if (s.autoPad) out.auto_pad = attr.string(s.autoPad);
  if (s.outputPadding) out.output_padding = attr.ints(s.outputPadding);
  return out;
}

/** A Conv (or ConvTranspose) of x by w (and a bias where `bias`), its output shaped `out`. */
function conv(name: string, x: number[], w: number[], s: Window, out: number[], bias = false, op = 'Conv'): GradCase {
  const inputs = [{ name: 'x', shape: x }, { name: 'w', shape: w }];
  if (bias) inputs.push({ name: 'b', shape: [op === 'Conv' ? w[0] : w[1] * (s.group ?? 1)] });
  return { name, inputs, outputShape: out, build: (b, ins) => b.op(op, ins, attrs(s)) };
}

const k3 = [3, 3];

/** Finite-difference cases of this family's gradient rules (test/autodiff.test.ts runs them). */
export const CASES: GradCase[] = [
  conv('Conv depthwise 3x3 stride 1 pad 1', [2, 4, 5, 5], [4, 1, 3, 3], { group: 4, kernel: k3, pads: [1, 1, 1, 1] }, [2, 4, 5, 5]),
  conv('Conv depthwise 3x3 stride 2 pad 1, uneven 7x7', [2, 3, 7, 7], [3, 1, 3, 3], { group: 3, kernel: k3, strides: [2, 2], pads: [1, 1, 1, 1] }, [2, 3, 4, 4]),
  conv('Conv depthwise 5x5 stride 2 pad 2 with bias', [2, 3, 8, 8], [3, 1, 5, 5], { group: 3, kernel: [5, 5], strides: [2, 2], pads: [2, 2, 2, 2] }, [2, 3, 4, 4], true),
  conv('Conv depthwise 3x3 pad 1, channel multiplier 2', [2, 3, 5, 5], [6, 1, 3, 3], { group: 3, kernel: k3, pads: [1, 1, 1, 1] }, [2, 6, 5, 5]),
  conv('Conv 4 groups of 2 in and 3 out channels, 3x3 pad 1', [2, 8, 5, 5], [12, 2, 3, 3], { group: 4, kernel: k3, pads: [1, 1, 1, 1] }, [2, 12, 5, 5]),
  conv('Conv 2 groups 3x3 stride 2, asymmetric pads [0, 1, 1, 0]', [2, 4, 7, 6], [6, 2, 3, 3], { group: 2, kernel: k3, strides: [2, 2], pads: [0, 1, 1, 0] }, [2, 6, 3, 3]),
  conv('Conv 2 groups 3x3 stride 1, asymmetric pads [2, 0, 0, 1]', [2, 4, 5, 5], [4, 2, 3, 3], { group: 2, kernel: k3, pads: [2, 0, 0, 1] }, [2, 4, 5, 4]),
  conv('Conv 2 groups 1x3 pad [0, 1, 0, 1]', [2, 4, 4, 5], [4, 2, 1, 3], { group: 2, kernel: [1, 3], pads: [0, 1, 0, 1] }, [2, 4, 4, 5]),
  conv('Conv depthwise 3x1 dilation 2, no pad', [2, 3, 7, 4], [3, 1, 3, 1], { group: 3, kernel: [3, 1], dilations: [2, 2] }, [2, 3, 3, 4]),
  conv('Conv 3x3 dilation 2 pad 2', [2, 2, 6, 6], [3, 2, 3, 3], { kernel: k3, pads: [2, 2, 2, 2], dilations: [2, 2] }, [2, 3, 6, 6], true),
  conv('Conv depthwise 3x3 dilation 2 pad 1', [2, 3, 6, 6], [3, 1, 3, 3], { group: 3, kernel: k3, pads: [1, 1, 1, 1], dilations: [2, 2] }, [2, 3, 4, 4]),
  conv('Conv 3x3 stride 2 dilation 2 pad 1', [2, 2, 8, 8], [3, 2, 3, 3], { kernel: k3, strides: [2, 2], pads: [1, 1, 1, 1], dilations: [2, 2] }, [2, 3, 3, 3]),
  conv('Conv 3x3 stride 3 dilation 2, uneven (weight gradient rows sliced)', [1, 2, 10, 9], [2, 2, 3, 3], { kernel: k3, strides: [3, 3], dilations: [2, 2] }, [1, 2, 2, 2]),
  conv('Conv 3x3 stride 2 pad 1, uneven 7x7 (weight gradient by phases)', [2, 3, 7, 7], [4, 3, 3, 3], { kernel: k3, strides: [2, 2], pads: [1, 1, 1, 1] }, [2, 4, 4, 4], true),
  conv('Conv 1x1 stride 2 (a ResNet downsample), uneven 5x5', [2, 3, 5, 5], [4, 3, 1, 1], { kernel: [1, 1], strides: [2, 2] }, [2, 4, 3, 3]),
  conv('Conv 7x7 stride 2 pad 3 (a ResNet stem) on 9x8', [1, 2, 9, 8], [3, 2, 7, 7], { kernel: [7, 7], strides: [2, 2], pads: [3, 3, 3, 3] }, [1, 3, 5, 4]),
  conv('Conv 2x3 strides [3, 2], asymmetric pads [1, 0, 0, 2]', [2, 2, 8, 7], [3, 2, 2, 3], { kernel: [2, 3], strides: [3, 2], pads: [1, 0, 0, 2] }, [2, 3, 3, 4]),
  conv('Conv 3x3 pad 1 without kernel_shape', [2, 2, 5, 5], [3, 2, 3, 3], { pads: [1, 1, 1, 1] }, [2, 3, 5, 5]),
  conv('Conv depthwise 3x3 stride 2 auto_pad SAME_UPPER without kernel_shape', [2, 3, 6, 6], [3, 1, 3, 3], { group: 3, strides: [2, 2], autoPad: 'SAME_UPPER' }, [2, 3, 3, 3]),
  conv('ConvTranspose 3x3 stride 2 pad 1, 2 groups of 2 channels, with bias', [1, 4, 3, 3], [4, 2, 3, 3], { group: 2, kernel: k3, strides: [2, 2], pads: [1, 1, 1, 1] }, [1, 4, 5, 5], true, 'ConvTranspose'),
  conv('ConvTranspose 3x3 dilation 2 pad 1', [2, 3, 4, 4], [3, 2, 3, 3], { kernel: k3, pads: [1, 1, 1, 1], dilations: [2, 2] }, [2, 2, 6, 6], false, 'ConvTranspose'),
  conv('ConvTranspose 3x3 stride 2 output_padding 1, depthwise', [1, 3, 3, 3], [3, 1, 3, 3], { group: 3, kernel: k3, strides: [2, 2], outputPadding: [1, 1] }, [1, 3, 8, 8], false, 'ConvTranspose'),
];

/** The case BROKEN's grouped rules run against (test/autodiff.test.ts's "catches broken rules"). */
const GROUPED_CASE = 'Conv 4 groups of 2 in and 3 out channels, 3x3 pad 1';

/**
 * Deliberately wrong rules the finite-difference check must reject: [name, op, rule], each name
 * starting with the name of the case in CASES it is to run against.
 */
export const BROKEN: [string, string, GradRule][] = [
  [`${GROUPED_CASE}: weight gradient with the groups in reverse order`, 'Conv', (ctx) => {
    const { b } = ctx;
    const out = convRule(ctx);
    const groups = b.op('Reshape', [out[1]!, b.constI([4, 3, 2, 3, 3])]);
    const reversed = b.op('Slice', [groups, b.constI([-1]), b.constI([-(2 ** 31)]), b.constI([0]), b.constI([-1])]);
    out[1] = b.op('Reshape', [reversed, b.constI([12, 2, 3, 3])]);
    return out;
  }],
  [`${GROUPED_CASE}: input gradient through each group's kernel unswapped`, 'Conv', (ctx) => {
    const { b } = ctx;
    const out = convRule(ctx);
    const rotated = b.op('Slice', [ctx.inputs[1], b.constI([-1, -1]), b.constI([-(2 ** 31), -(2 ** 31)]), b.constI([2, 3]), b.constI([-1, -1])]);
    const unswapped = b.op('Reshape', [rotated, b.constI([8, 3, 3, 3])]);
    out[0] = b.op('Conv', [ctx.gradOutputs[0]!, unswapped], { group: attr.int(4), kernel_shape: attr.ints([3, 3]), pads: attr.ints([1, 1, 1, 1]) });
    return out;
  }],
];
