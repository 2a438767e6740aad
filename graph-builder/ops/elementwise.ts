import {
  celu,
  clip,
  elu,
  erf,
  gelu,
  hardSigmoid,
  hardSwish,
  leakyRelu,
  mish,
  prelu,
  selu,
  sigmoid,
  softplus,
  softsign,
  tanh,
  thresholdedRelu,
} from '../autodiff/rules/activation.ts';
import { abs, add, div, exp, extremum, identity, log, mean, mul, neg, pow, reciprocal, relu, sqrt, sub, sum } from '../autodiff/rules/elementwise.ts';
import { broadcastShapes, type Dim, type Node } from '../graph/ir.ts';
import { attrFloat, attrInt, attrStr, type NormalizeContext, normAxis, type OpSpec, type OpTable, type ShapeContext, sameShape, withoutAttrs } from './spec.ts';

/** NumPy broadcasting of every input's shape. */
export function broadcastShape(node: Node, ctx: ShapeContext): Dim[] {
  const shapes = node.inputs.filter(Boolean).map(ctx.shape);
  const out = broadcastShapes(shapes);
  if (!out) throw new Error(`cannot broadcast [${shapes.map((s) => s.join(', ')).join('] and [')}]`);
  return out;
}

/** PRelu's shape: the input's, with the slope broadcast to it (one direction only). */
function preluShape(node: Node, ctx: ShapeContext): Dim[] {
  const x = ctx.shape(node.inputs[0]);
  const out = broadcastShape(node, ctx);
  if (out.length !== x.length || out.some((d, i) => d !== x[i])) throw new Error(`has a slope of shape [${ctx.shape(node.inputs[1]).join(', ')}] that does not broadcast to the input's [${x.join(', ')}]`);
  return x;
}

/** Opsets 1-5 name the inputs a node may overwrite (consumed_inputs); the attribute means nothing today. */
function dropConsumed(node: Node): Node[] {
  return [{ ...node, attrs: withoutAttrs(node, ['consumed_inputs']) }];
}

/**
 * Opset < 7 binary ops (Add, Sub, Mul, Div, Pow) with broadcast=1 and an axis line B's dimensions
 * up with A's from that axis; NumPy broadcasting lines them up from the end. B gets the missing
 * trailing 1s by a Reshape whose target copies B's own dimensions (0) and appends 1s, so B of
 * shape [C] at axis 1 of a 4-D A becomes [C, 1, 1]. Without an axis the old rule is NumPy's.
 */
function legacyBroadcast(node: Node, ctx: NormalizeContext): Node[] {
  const attrs = withoutAttrs(node, ['consumed_inputs', 'broadcast', 'axis']);
  const [a, b] = node.inputs;
  if (attrInt(node, 'broadcast', 0) !== 1 || !('axis' in node.attrs)) return [{ ...node, attrs }];
  const rankA = ctx.shape(a)?.length;
  const rankB = ctx.shape(b)?.length;
  if (rankA === undefined || rankB === undefined) throw new Error('needs the ranks of both inputs to turn its broadcast axis into NumPy broadcasting');
  const axis = normAxis(attrInt(node, 'axis', 0), rankA);
  const trailing = rankA - axis - rankB;
  if (trailing < 0) throw new Error(`broadcasts a rank-${rankB} B from axis ${axis} of a rank-${rankA} A, past its last axis`);
  if (trailing === 0 || rankB === 0) return [{ ...node, attrs }];
  const hint = node.outputs[0];
  const target = ctx.constI([...Array<number>(rankB).fill(0), ...Array<number>(trailing).fill(1)], `${hint}_b_shape`);
  const aligned = ctx.fresh(`${hint}_b_aligned`);
  return [
    { op: 'Reshape', name: ctx.fresh(`${hint}_align_b`), inputs: [b, target], outputs: [aligned], attrs: {} },
    { ...node, inputs: [a, aligned], attrs },
  ];
}

/** Clip's attribute bounds (opset < 11) at or beyond this magnitude mean no bound (their defaults are -/+3.4028e38). */
const NO_BOUND = 3.4e38;

/**
 * Opset < 11 Clip holds min and max as attributes: they become constant scalar inputs, a bound at
 * its default (no bound) the empty input ''. Opsets 1-5's consumed_inputs goes too.
 */
function clipBoundsAsInputs(node: Node, ctx: NormalizeContext): Node[] {
  const attrs = withoutAttrs(node, ['consumed_inputs', 'min', 'max']);
  if (!('min' in node.attrs) && !('max' in node.attrs)) return [{ ...node, attrs }];
  const bound = (key: 'min' | 'max') => {
    const v = attrFloat(node, key, Number.NaN);
    return Math.abs(v) < NO_BOUND ? ctx.constF([v], [], `${node.outputs[0]}_${key}`) : '';
  };
  const inputs = [node.inputs[0], bound('min'), bound('max')];
  while (inputs.at(-1) === '') inputs.pop();
  return [{ ...node, inputs, attrs }];
}

/**
 * Gelu (opset 20) as opset-18 primitives: approximate 'none' gives X * 0.5 * (1 + erf(X / sqrt 2));
 * 'tanh' gives X * 0.5 * (1 + tanh(sqrt(2/pi) * X * (1 + 0.044715 X^2))). The last node writes
 * the Gelu node's output.
 */
function geluAsPrimitives(node: Node, ctx: NormalizeContext): Node[] {
  const approximate = attrStr(node, 'approximate', 'none');
  if (approximate !== 'none' && approximate !== 'tanh') throw new Error(`supports approximate 'none' and 'tanh', found '${approximate}'`);
  const hint = node.outputs[0];
  const nodes: Node[] = [];
  const emit = (op: string, inputs: string[], output = ctx.fresh(`${hint}_${op.toLowerCase()}`)) => {
    nodes.push({ op, name: ctx.fresh(`${hint}_${op.toLowerCase()}_node`), inputs, outputs: [output], attrs: {} });
    return output;
  };
  const scalar = (v: number, name: string) => ctx.constF([v], [], `${hint}_${name}`);
  const [x] = node.inputs;
  let squashed: string;
  if (approximate === 'tanh') {
    const cubic = emit('Mul', [x, emit('Add', [emit('Mul', [emit('Mul', [x, x]), scalar(0.044715, 'cubic')]), scalar(1, 'one')])]);
    squashed = emit('Tanh', [emit('Mul', [cubic, scalar(Math.sqrt(2 / Math.PI), 'sqrt_2_over_pi')])]);
  } else {
    squashed = emit('Erf', [emit('Mul', [x, scalar(Math.SQRT1_2, 'inv_sqrt_2')])]);
  }
  const halfX = emit('Mul', [x, scalar(0.5, 'half')]);
  emit('Mul', [halfX, emit('Add', [squashed, scalar(1, 'one')])], node.outputs[0]);
  return nodes;
}

const unary = (grad: OpSpec['grad'], extra: Partial<OpSpec> = {}): OpSpec => ({ shape: sameShape, grad, normalize: dropConsumed, ...extra });
const binary = (grad: OpSpec['grad']): OpSpec => ({ shape: broadcastShape, grad, normalize: legacyBroadcast });
const variadic = (grad: OpSpec['grad']): OpSpec => ({ shape: broadcastShape, grad, normalize: dropConsumed });

export const ELEMENTWISE_OPS: OpTable = {
  Add: binary(add),
  Sub: binary(sub),
  Mul: binary(mul),
  Div: binary(div),
  // Exponent input: a gradient for the base, and for the exponent where it needs one.
  Pow: binary(pow),
  Neg: unary(neg),
  Identity: unary(identity),
  Sqrt: unary(sqrt),
  Exp: unary(exp),
  Log: unary(log),
  Abs: unary(abs),
  Reciprocal: unary(reciprocal),
  Erf: unary(erf),
  Relu: unary(relu),
  LeakyRelu: unary(leakyRelu),
  PRelu: { shape: preluShape, grad: prelu, weightInputs: (i) => i === 1, normalize: dropConsumed },
  ThresholdedRelu: unary(thresholdedRelu),
  Elu: unary(elu),
  Selu: unary(selu),
  Celu: unary(celu),
  Sigmoid: unary(sigmoid),
  HardSigmoid: unary(hardSigmoid),
  Tanh: unary(tanh),
  Softplus: unary(softplus),
  Softsign: unary(softsign),
  Mish: unary(mish),
  // An opset-20 op: imports rewrite it into primitives (cnnlab's graphs are opset 18); the rule
  // serves graphs that mark the primitives as one Gelu composite.
  Gelu: unary(gelu, { normalize: geluAsPrimitives }),
  // min and max: inputs from opset 11 on, attributes before (normalize moves them).
  Clip: unary(clip, { constantInputs: (i) => i > 0, normalize: clipBoundsAsInputs }),
  HardSwish: unary(hardSwish),
  // Ties split the gradient evenly among the inputs that reach the output, as PyTorch does.
  Max: variadic(extremum),
  Min: variadic(extremum),
  Sum: variadic(sum),
  Mean: variadic(mean),
};
