import { NON_DIFFERENTIABLE as NO_GRAD, OPS } from '../ops/table.ts';
import type { GradRule } from './rule.ts';
import { batchNormTraining } from './rules/batchnorm.ts';
import { maxPoolMasks } from './rules/pool.ts';

/**
 * One gradient rule per ONNX op (read from the op table, graph-builder/ops/) and per composite
 * op (a run of standard ops the builder marks as one, see GraphBuilder.composite); each emits
 * standard ONNX ops only.
 */
export const GRAD_RULES: Record<string, GradRule> = {
  ...Object.fromEntries(Object.entries(OPS).flatMap(([op, s]) => (s.grad ? [[op, s.grad]] : []))),
  BatchNormTraining: batchNormTraining,
};

/**
 * Which kernels a training graph is made for. 'portable': standard ops every execution provider
 * runs (CUDA's included): the reference. 'cpu': onnxruntime's CPU kernels, which the CPU EP and
 * onnxruntime-web's wasm backend share; rules may use ops CUDA lacks, and a test holds each to
 * the portable rule's losses. 'webgpu': onnxruntime's WebGPU kernels, which lack MaxPool's
 * Indices output (artifacts/webgpu.ts lowers the other ops it lacks when a session opens).
 */
export type GraphTarget = 'portable' | 'cpu' | 'webgpu';

/** The rules that differ for onnxruntime's CPU kernels (see each rule's comment for its measurement). */
const CPU_RULES: Record<string, GradRule> = { ...GRAD_RULES, ...Object.fromEntries(Object.entries(OPS).flatMap(([op, s]) => (s.cpuGrad ? [[op, s.cpuGrad]] : []))) };

/** The rules for onnxruntime's WebGPU kernels: max pools differentiated without Indices. */
const WEBGPU_RULES: Record<string, GradRule> = { ...GRAD_RULES, MaxPool: maxPoolMasks };

export function gradRulesFor(target: GraphTarget): Record<string, GradRule> {
  return target === 'cpu' ? CPU_RULES : target === 'webgpu' ? WEBGPU_RULES : GRAD_RULES;
}

/** The graph target for an execution provider. */
export function graphTargetFor(ep: 'cpu' | 'cuda' | 'wasm' | 'webgpu'): GraphTarget {
  return ep === 'cuda' ? 'portable' : ep === 'webgpu' ? 'webgpu' : 'cpu';
}

/** Ops whose outputs carry no gradient (indices, shapes, comparisons, constants). */
export const NON_DIFFERENTIABLE = NO_GRAD;
