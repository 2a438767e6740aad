import { attr } from '../../graph/ir.ts';
import { floatAttr, type GradRule, intAttr } from '../rule.ts';

/**
 * Y = alpha * op(A) op(B) + beta * C, with op() a transpose where transA/transB say so.
 * Each gradient is one more Gemm with the transposes arranged so that no Transpose node is needed.
 */
export const gemm: GradRule = (ctx) => {
  const { b, node } = ctx;
  const [a, bm] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  const transA = intAttr(node, 'transA', 0);
  const transB = intAttr(node, 'transB', 0);
  const alpha = floatAttr(node, 'alpha', 1);
  const beta = floatAttr(node, 'beta', 1);
  const g = (x: string, y: string, tA: number, tB: number, hint: string) =>
    b.op('Gemm', [x, y], { transA: attr.int(tA), transB: attr.int(tB), alpha: attr.float(alpha) }, hint);
  const out: (string | undefined)[] = [undefined, undefined, undefined];
  // dA = dY op(B)^T (as A is stored): A^T case gives op(B) dY^T.
  if (ctx.needsGrad[0]) out[0] = transA ? g(bm, dY, transB, 1, `grad_${a}`) : g(dY, bm, 0, transB ? 0 : 1, `grad_${a}`);
  // dB = op(A)^T dY (as B is stored): B^T case gives dY^T op(A).
  if (ctx.needsGrad[1]) out[1] = transB ? g(dY, a, 1, transA, `grad_${bm}`) : g(a, dY, transA ? 0 : 1, 0, `grad_${bm}`);
  if (ctx.inputs.length > 2 && ctx.needsGrad[2]) {
    const c = ctx.inputs[2];
    const shape = b.shapes.get(c);
    let dC = b.op('ReduceSum', [dY, b.constI([0])], { keepdims: attr.int(0) }, `grad_${c}`);
    if (!shape || shape.length !== 1) throw new Error(`autodiff: Gemm ${node.name}: C must be a vector of known shape`);
    if (beta !== 1) dC = b.op('Mul', [dC, b.scalar(beta)], {}, `grad_${c}`);
    out[2] = dC;
  }
  return out;
};

/** Y = A B for 2-D A and B: dA = dY B^T, dB = A^T dY. */
export const matmul: GradRule = (ctx) => {
  const { b } = ctx;
  const [a, bm] = ctx.inputs;
  const dY = ctx.gradOutputs[0]!;
  for (const v of [a, bm]) {
    const s = b.shapes.get(v);
    if (!s || s.length !== 2) throw new Error(`autodiff: MatMul ${ctx.node.name}: only 2-D inputs of known rank are supported`);
  }
  return [
    ctx.needsGrad[0] ? b.op('Gemm', [dY, bm], { transB: attr.int(1) }, `grad_${a}`) : undefined,
    ctx.needsGrad[1] ? b.op('Gemm', [a, dY], { transA: attr.int(1) }, `grad_${bm}`) : undefined,
  ];
};
