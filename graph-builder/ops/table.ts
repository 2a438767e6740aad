/**
 * The op table: every ONNX op cnnlab imports, infers shapes of, differentiates or counts, one
 * entry each (spec.ts says what an entry holds). Families live in their own files; this merges
 * them. Ops the gradient rules and losses emit but no model holds (Shape, Size, Equal, ...) are
 * listed as INTERNAL: they carry no gradient and are never imported as forward ops.
 */
import { registerShapeRules } from '../graph/ir.ts';
import { CONV_OPS } from './conv.ts';
import { ELEMENTWISE_OPS } from './elementwise.ts';
import { NN_OPS } from './nn.ts';
import { NORM_OPS } from './norm.ts';
import { POOL_OPS } from './pool.ts';
import { REDUCE_OPS } from './reduce.ts';
import type { OpSpec, OpTable } from './spec.ts';
import { TENSOR_OPS } from './tensor.ts';

const families: OpTable[] = [CONV_OPS, POOL_OPS, ELEMENTWISE_OPS, TENSOR_OPS, NN_OPS, REDUCE_OPS, NORM_OPS];

export const OPS: OpTable = Object.assign({}, ...families);
for (const f of families) for (const op of Object.keys(f)) if (families.filter((g) => op in g).length > 1) throw new Error(`op table: ${op} is defined twice`);

registerShapeRules(Object.entries(OPS).flatMap(([op, s]) => (s.shape ? [[op, s.shape] as [string, NonNullable<OpSpec['shape']>]] : [])));

/** Ops whose outputs carry no gradient (indices, shapes, comparisons, constants). */
export const NON_DIFFERENTIABLE = new Set([
  'Constant', 'ConstantOfShape', 'Shape', 'Size', 'ArgMax', 'Equal', 'Greater', 'GreaterOrEqual', 'Less', 'LessOrEqual', 'Not', 'And', 'Or',
  'OneHot', 'Range', 'Mod', 'Floor', 'Ceil', 'Round', 'Sign',
  ...Object.entries(OPS).filter(([, s]) => s.nonDifferentiable).map(([op]) => op),
]);

/** The entry of an op, or undefined. */
export const opSpec = (op: string): OpSpec | undefined => (Object.hasOwn(OPS, op) ? OPS[op] : undefined);
