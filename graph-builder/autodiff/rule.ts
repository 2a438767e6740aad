import type { Dim, GraphBuilder, Node } from '../graph/ir.ts';

/**
 * What a gradient rule sees, named by role as in ORT's gradient builder: the forward node's
 * inputs and outputs, the gradient of each output, and which inputs need a gradient.
 */
export interface GradContext {
  b: GraphBuilder;
  node: Node;
  /** Forward inputs (I(i)) and outputs (O(i)). */
  inputs: string[];
  outputs: string[];
  /** Gradient of each forward output (GO(i)); undefined where none flows back. */
  gradOutputs: (string | undefined)[];
  /** Whether input i needs a gradient (GI(i)). */
  needsGrad: boolean[];
}

/** Returns the gradient of each forward input (GI(i)), undefined where not needed. */
export type GradRule = (ctx: GradContext) => (string | undefined)[];

/** The op table's attribute readers, under the names the rules use. */
export { attrFloat as floatAttr, attrInt as intAttr, attrInts as intsAttr } from '../ops/spec.ts';

/** The statically known shape of a value, or an error naming the node that needs it. */
export function staticShape(ctx: GradContext, value: string): Dim[] {
  const s = ctx.b.shapes.get(value);
  if (!s) throw new Error(`autodiff: ${ctx.node.op} node ${ctx.node.name} needs the static shape of ${value}`);
  return s;
}

/** The value of an int64 Constant node's output (axes, shapes), looked up in the graph. */
export function constInts(ctx: GradContext, value: string): number[] {
  const producer = ctx.b.graph.nodes.find((n) => n.outputs.includes(value));
  const t = producer?.op === 'Constant' ? producer.attrs.value : undefined;
  if (!t || t.kind !== 'tensor' || t.value.dtype !== 'int64') {
    throw new Error(`autodiff: ${ctx.node.op} node ${ctx.node.name} needs ${value} to be an int64 constant`);
  }
  return Array.from(t.value.data as BigInt64Array, Number);
}

/** Sums `grad` (shaped like the broadcast output) back to the shape of `input`. */
export function unbroadcast(ctx: GradContext, grad: string, input: string, output: string): string {
  const { b } = ctx;
  const inShape = staticShape(ctx, input);
  const outShape = staticShape(ctx, output);
  const lead = outShape.length - inShape.length;
  const axes: number[] = [];
  for (let i = 0; i < outShape.length; i++) {
    if (i < lead) axes.push(i);
    else if (inShape[i - lead] === 1 && outShape[i] !== 1) axes.push(i);
  }
  if (axes.length === 0) return grad;
  let g = b.op('ReduceSum', [grad, b.constI(axes)], { keepdims: { kind: 'int', value: 1 } }, `${grad}_sum`);
  if (lead > 0) g = b.op('Reshape', [g, b.op('Shape', [input])], {}, `${grad}_unb`);
  b.note(g, 'float32', inShape);
  return g;
}
