import { reduceExtreme, reduceL2, reduceLogSumExp, reduceMean, reduceSum, reduceSumSquare } from '../autodiff/rules/reduce.ts';
import type { Dim, Node } from '../graph/ir.ts';
import { attrInt, attrInts, normAxis, type NormalizeContext, type OpSpec, type OpTable, type ShapeContext, withoutAttrs } from './spec.ts';

/**
 * A reduction's output: `axes` from the input (opset 13 ReduceSum, 18 the others) or the
 * attribute; none reduces all axes, or none at all with noop_with_empty_axes 1. keepdims 1 (the
 * default) leaves the reduced axes as 1s, 0 drops them.
 */
export function reducedShape(node: Node, ctx: ShapeContext): Dim[] {
  const x = ctx.shape(node.inputs[0]);
  const given = node.inputs[1] ? ctx.constant(node.inputs[1]) : attrInts(node, 'axes', []);
  if (!given) throw new Error('needs constant axes');
  if (given.length === 0 && attrInt(node, 'noop_with_empty_axes', 0) === 1) return x;
  if (given.some((a) => a < -x.length || a >= x.length)) throw new Error(`reduces axes [${given.join(', ')}] of a rank-${x.length} input`);
  const axes = new Set((given.length ? given : x.map((_, i) => i)).map((a) => normAxis(a, x.length)));
  const keep = attrInt(node, 'keepdims', 1) === 1;
  return x.flatMap((d, i) => (axes.has(i) ? (keep ? [1] : []) : [d]));
}

/**
 * The reduction as opset 18 writes it: `axes` an input (ReduceSum's from opset 13, the others'
 * from 18), where older opsets wrote an attribute; no axes either way reduces all.
 */
const axesAsInput = (since: number) => (node: Node, ctx: NormalizeContext): Node[] => {
  if (ctx.opset >= since || !node.attrs.axes) return [node];
  const axes = ctx.constI(attrInts(node, 'axes', []), `${node.outputs[0]}_axes`);
  return [{ ...node, inputs: [node.inputs[0], axes], attrs: withoutAttrs(node, ['axes']) }];
};

const reduction = (grad: OpSpec['grad'], axesInputSince = 18): OpSpec => ({ shape: reducedShape, grad, constantInputs: (i) => i === 1, normalize: axesAsInput(axesInputSince) });

export const REDUCE_OPS: OpTable = {
  ReduceSum: reduction(reduceSum, 13),
  ReduceMean: reduction(reduceMean),
  ReduceMax: reduction(reduceExtreme),
  ReduceMin: reduction(reduceExtreme),
  ReduceSumSquare: reduction(reduceSumSquare),
  ReduceL2: reduction(reduceL2),
  ReduceLogSumExp: reduction(reduceLogSumExp),
};
