import type { GradRule } from './rule.ts';
import { clip, hardSwish, leakyRelu, sigmoid, tanh } from './rules/activation.ts';
import { batchNormTraining } from './rules/batchnorm.ts';
import { conv, convTranspose } from './rules/conv.ts';
import { dropout } from './rules/dropout.ts';
import { add, div, exp, identity, log, mul, neg, relu, sqrt, sub } from './rules/elementwise.ts';
import { gemm, matmul } from './rules/matmul.ts';
import { averagePool, globalAveragePool, maxPool, maxPoolUnpool } from './rules/pool.ts';
import { reduceMean, reduceSum } from './rules/reduce.ts';
import { concat, reshape, transpose } from './rules/shape.ts';
import { logSoftmax, softmax } from './rules/softmax.ts';

/**
 * One gradient rule per ONNX op, and per composite op (a run of standard ops the builder marks
 * as one, see GraphBuilder.composite); each emits standard ONNX ops only.
 */
export const GRAD_RULES: Record<string, GradRule> = {
  Add: add,
  Sub: sub,
  Mul: mul,
  Div: div,
  Neg: neg,
  Identity: identity,
  Sqrt: sqrt,
  Exp: exp,
  Log: log,
  Relu: relu,
  LeakyRelu: leakyRelu,
  Sigmoid: sigmoid,
  Tanh: tanh,
  Clip: clip,
  HardSwish: hardSwish,
  Concat: concat,
  Conv: conv,
  ConvTranspose: convTranspose,
  MaxPool: maxPool,
  AveragePool: averagePool,
  GlobalAveragePool: globalAveragePool,
  Gemm: gemm,
  MatMul: matmul,
  Reshape: reshape,
  Flatten: reshape,
  Transpose: transpose,
  ReduceSum: reduceSum,
  ReduceMean: reduceMean,
  LogSoftmax: logSoftmax,
  Softmax: softmax,
  Dropout: dropout,
  BatchNormTraining: batchNormTraining,
};

/**
 * Which kernels a training graph is made for. 'portable': standard ops every execution provider
 * runs (CUDA's included): the reference. 'cpu': onnxruntime's CPU kernels, which the CPU EP and
 * onnxruntime-web's wasm backend share; rules may use ops CUDA lacks, and a test holds each to
 * the portable rule's losses.
 */
export type GraphTarget = 'portable' | 'cpu';

/** The rules that differ for onnxruntime's CPU kernels (see each rule's comment for its measurement). */
const CPU_RULES: Record<string, GradRule> = { ...GRAD_RULES, MaxPool: maxPoolUnpool };

export function gradRulesFor(target: GraphTarget): Record<string, GradRule> {
  return target === 'cpu' ? CPU_RULES : GRAD_RULES;
}

/** The graph target for an execution provider. */
export function graphTargetFor(ep: 'cpu' | 'cuda' | 'wasm'): GraphTarget {
  return ep === 'cuda' ? 'portable' : 'cpu';
}

/** Ops whose outputs carry no gradient (indices, shapes, comparisons, constants). */
export const NON_DIFFERENTIABLE = new Set([
  'Constant', 'ConstantOfShape', 'Shape', 'Size', 'ArgMax', 'Equal', 'Greater', 'Less', 'Not',
  'OneHot', 'Range', 'Mod', 'Floor',
]);
