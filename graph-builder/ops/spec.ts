/**
 * What cnnlab knows about one ONNX op, in one place: its output shapes, its gradient rule(s),
 * how an imported node of an older or newer opset is rewritten into the form cnnlab's graphs use
 * (opset 18), which inputs carry no gradient, and its FLOPs. The importer, the autodiff, the
 * builder's shape notes and the summary read this table (ops/table.ts); adding an op is one entry
 * plus its finite-difference case in test/autodiff.test.ts.
 */
import type { GradRule } from '../autodiff/rule.ts';
import type { AttrValue, Dim, Node } from '../graph/ir.ts';

/** What a shape rule sees: the node's input shapes and the values of constant inputs (axes, pads, shapes). */
export interface ShapeContext {
  shape: (value: string) => Dim[];
  /** A constant input's values (int64 or float), undefined where the input is computed at run time. */
  constant: (value: string) => number[] | undefined;
}

/** What an import rewrite sees and may add: constant inputs made of values, and fresh names. */
export interface NormalizeContext {
  /** The model's default-domain opset. */
  opset: number;
  /** An int64 constant value usable as an input (axes, pads, sizes). */
  constI: (values: number[], hint: string) => string;
  /** A float32 constant (never a parameter): scales, bounds, epsilons. */
  constF: (values: number[], dims: number[], hint: string) => string;
  /** A constant input's values, undefined where computed at run time. */
  constant: (value: string) => number[] | undefined;
  /** A name not used elsewhere in the model. */
  fresh: (hint: string) => string;
  /** The static shape of an input, where known. */
  shape: (value: string) => Dim[] | undefined;
}

export interface OpSpec {
  /** The output shape (the first output's, for ops whose other outputs the training graphs add). */
  shape?: (node: Node, ctx: ShapeContext) => Dim[];
  /** Every output's shape, for ops with several outputs (Split). */
  shapes?: (node: Node, ctx: ShapeContext) => Dim[][];
  /** The gradient rule over portable standard ops (every execution provider runs them). */
  grad?: GradRule;
  /** A gradient rule for onnxruntime's CPU kernels (the CPU EP and wasm) where it differs. */
  cpuGrad?: GradRule;
  /** No gradient flows through any input (shapes, indices, comparisons). */
  nonDifferentiable?: boolean;
  /** Input slots that carry no gradient (Clip's bounds, Pad's pads, BatchNorm's running statistics). */
  constantInputs?: (index: number) => boolean;
  /** Input slots that hold weights (trained even where a Constant node holds them). */
  weightInputs?: (index: number) => boolean;
  /** Rewrites an imported node into cnnlab's form (opset 18): old attributes as inputs, composites as primitives. */
  normalize?: (node: Node, ctx: NormalizeContext) => Node[];
  /** Multiply-adds x 2 per example (ctx.shape knows inputs and outputs; the batch axis counts 1). */
  flops?: (node: Node, ctx: ShapeContext) => number;
}

export type OpTable = Record<string, OpSpec>;

export const attrInt = (node: Pick<Node, 'attrs'>, key: string, fallback: number): number => {
  const a = node.attrs[key];
  return a?.kind === 'int' ? a.value : fallback;
};
export const attrInts = (node: Pick<Node, 'attrs'>, key: string, fallback: number[]): number[] => {
  const a = node.attrs[key];
  return a?.kind === 'ints' ? a.value : fallback;
};
export const attrFloat = (node: Pick<Node, 'attrs'>, key: string, fallback: number): number => {
  const a = node.attrs[key];
  return a?.kind === 'float' ? a.value : a?.kind === 'int' ? a.value : fallback;
};
export const attrFloats = (node: Pick<Node, 'attrs'>, key: string, fallback: number[]): number[] => {
  const a = node.attrs[key];
  return a?.kind === 'floats' ? a.value : fallback;
};
export const attrStr = (node: Pick<Node, 'attrs'>, key: string, fallback: string): string => {
  const a = node.attrs[key];
  return a?.kind === 'string' ? a.value : fallback;
};

/** The same node without some attributes (an old opset's attribute moved to an input). */
export function withoutAttrs(node: Node, keys: string[]): Record<string, AttrValue> {
  return Object.fromEntries(Object.entries(node.attrs).filter(([k]) => !keys.includes(k)));
}

/** A static size, or an error naming what needed it. */
export function staticDim(d: Dim | undefined, what: string): number {
  if (typeof d !== 'number') throw new Error(`needs a static ${what}, found '${d}'`);
  return d;
}

/** An axis attribute or input brought into 0..rank-1. */
export const normAxis = (axis: number, rank: number) => (axis < 0 ? axis + rank : axis);

/** Elements of a shape with symbolic sizes counted as 1 (per example, for FLOPs). */
export const elements = (s: readonly Dim[]): number => s.reduce<number>((a, d) => a * (typeof d === 'number' ? d : 1), 1);

/** Shape rule of ops whose output has the first input's shape. */
export const sameShape = (node: Node, ctx: ShapeContext): Dim[] => ctx.shape(node.inputs[0]);
