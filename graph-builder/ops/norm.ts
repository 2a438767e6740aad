import { groupNormalization, instanceNormalization, layerNormalization } from '../autodiff/rules/norm.ts';
import type { Dim, Node } from '../graph/ir.ts';
import { attrInt, normAxis, type NormalizeContext, type OpTable, type ShapeContext, sameShape, staticDim, withoutAttrs } from './spec.ts';

const scaleAndBias = (i: number) => i === 1 || i === 2;
const count = (s: Dim[]) => s.reduce<number>((a, d) => a * staticDim(d, 'size'), 1);

/** LayerNormalization's outputs: Y like X, Mean and InvStdDev like X with the normalised axes (from `axis` on) as 1s. */
function layerNormShapes(node: Node, ctx: ShapeContext): Dim[][] {
  const x = ctx.shape(node.inputs[0]);
  const axis = normAxis(attrInt(node, 'axis', -1), x.length);
  const stats = x.map((d, i) => (i < axis ? d : 1));
  return [x, stats, stats];
}

/** GroupNormalization's output (X's shape), scale and bias of [num_groups] as opset 18 has them. */
function groupNormShape(node: Node, ctx: ShapeContext): Dim[] {
  const x = ctx.shape(node.inputs[0]);
  const groups = attrInt(node, 'num_groups', 0);
  const c = staticDim(x[1], 'channel count');
  if (x.length < 3 || groups < 1 || c % groups !== 0) throw new Error(`needs a [N, C, ...] input with C divisible by num_groups, found [${x.join(', ')}] and num_groups ${groups}`);
  for (const v of node.inputs.slice(1, 3)) if (count(ctx.shape(v)) !== groups) throw new Error(`needs scale and bias of [num_groups] (opset 18), found [${ctx.shape(v).join(', ')}]`);
  return x;
}

/**
 * GroupNormalization as opset 18 writes it: scale and bias of [num_groups] and no stash_type.
 * Opset 21 made them per channel ([C]); such a node becomes the opset-18 op with unit scale and
 * zero bias (constants), then Mul and Add by the [C] scale and bias reshaped to [C, 1, ...].
 */
function groupNormForm(node: Node, ctx: NormalizeContext): Node[] {
  const base = { ...node, attrs: withoutAttrs(node, ['stash_type']) };
  const [x, scale, bias] = node.inputs;
  const xs = ctx.shape(x);
  const groups = attrInt(node, 'num_groups', 0);
  const c = xs?.[1];
  const sizeIs = (v: string, n: number) => {
    const s = ctx.shape(v);
    return s !== undefined && count(s) === n;
  };
  if (typeof c !== 'number' || c === groups || !sizeIs(scale, c) || !sizeIs(bias, c)) return [base];
  const rank = xs!.length;
  const y = node.outputs[0];
  const normed = ctx.fresh(`${y}_normalized`);
  const channelWise = (v: string, hint: string): [string, Node] => {
    const out = ctx.fresh(`${v}_per_channel`);
    return [out, { op: 'Reshape', name: ctx.fresh(hint), inputs: [v, ctx.constI([c, ...Array(rank - 2).fill(1)], `${v}_shape`)], outputs: [out], attrs: {} }];
  };
  const [s, reshapeScale] = channelWise(scale, `${y}_scale_reshape`);
  const [sb, reshapeBias] = channelWise(bias, `${y}_bias_reshape`);
  const scaled = ctx.fresh(`${y}_scaled`);
  return [
    { ...base, inputs: [x, ctx.constF(Array(groups).fill(1), [groups], `${y}_unit_scale`), ctx.constF(Array(groups).fill(0), [groups], `${y}_zero_bias`)], outputs: [normed] },
    reshapeScale,
    reshapeBias,
    { op: 'Mul', name: ctx.fresh(`${y}_scale_mul`), inputs: [normed, s], outputs: [scaled], attrs: {} },
    { op: 'Add', name: ctx.fresh(`${y}_bias_add`), inputs: [scaled, sb], outputs: [y], attrs: {} },
  ];
}

/**
 * InstanceNormalization as PyTorch's GroupNorm export writes it: over X reshaped to [N, G, -1],
 * with all-ones scale and all-zeros bias of [G] that are no parameters (GroupNorm's own [C] weight
 * and bias follow as Mul and Add). Those two become constants here so that they stay untrained.
 */
function instanceNormForm(node: Node, ctx: NormalizeContext): Node[] {
  const [x, scale, bias] = node.inputs;
  const s = ctx.constant(scale);
  const b = ctx.constant(bias);
  if (ctx.shape(x)?.length !== 3 || !s || !b || s.some((v) => v !== 1) || b.some((v) => v !== 0)) return [node];
  const y = node.outputs[0];
  return [{ ...node, inputs: [x, ctx.constF(s, [s.length], `${y}_unit_scale`), ctx.constF(b, [b.length], `${y}_zero_bias`)] }];
}

/** Normalisation layers other than BatchNormalization (nn.ts): LayerNormalization, GroupNormalization, InstanceNormalization. */
export const NORM_OPS: OpTable = {
  LayerNormalization: { shape: sameShape, shapes: layerNormShapes, grad: layerNormalization, weightInputs: scaleAndBias },
  GroupNormalization: { shape: groupNormShape, grad: groupNormalization, weightInputs: scaleAndBias, normalize: groupNormForm },
  InstanceNormalization: { shape: sameShape, grad: instanceNormalization, weightInputs: scaleAndBias, normalize: instanceNormForm },
};
