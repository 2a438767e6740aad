/**
 * Which float tensors of an imported graph are trained: wherever the exporter put them
 * (initialisers, or Constant nodes as older exporters and paddle2onnx write), a float tensor
 * that reaches the loss through an input slot that carries a gradient is a parameter; BatchNorm's
 * running statistics are buffers; scalars outside a weight slot (exponents, epsilons, scale
 * factors) and the constants cnnlab's own rewrites add stay constants.
 */
import type { Dim, Graph, Node, Tensor } from '../graph/ir.ts';
import type { ParamSpec } from '../model.ts';
import { NON_DIFFERENTIABLE, opSpec } from '../ops/table.ts';
import type { Folded } from './fold.ts';

/** The importer's state while it walks a graph. */
export interface Importer {
  file: string;
  graph: Graph;
  shapes: Map<string, Dim[]>;
  folded: Map<string, Folded>;
  floats: Map<string, Tensor>;
  kept: Node[];
  fixedBatch?: number;
  /** Floats the importer's rewrites made (never parameters). */
  fixed: Set<string>;
  /** Op types cnnlab cannot import, with counts ('' for nodes skipped because an input is unknown). */
  unsupported: Map<string, number>;
  /** Values computed from an unsupported node. */
  unknown: Set<string>;
  /** Every value name in the graph (fresh names avoid them). */
  names: Set<string>;
}

/** Whether input `i` of `node` carries a gradient. */
function differentiableSlot(node: Node, i: number): boolean {
  if (NON_DIFFERENTIABLE.has(node.op)) return false;
  const spec = opSpec(node.op);
  return !spec?.constantInputs?.(i);
}

/** The values on a path to `loss` through slots that carry a gradient. */
function reachingLoss(nodes: readonly Node[], loss: string): Set<string> {
  const reach = new Set([loss]);
  for (let k = nodes.length - 1; k >= 0; k--) {
    const n = nodes[k];
    if (!n.outputs.some((o) => reach.has(o))) continue;
    n.inputs.forEach((v, i) => v && differentiableSlot(n, i) && reach.add(v));
  }
  return reach;
}

/** Where a tensor is read first: its role follows from the op and slot (a bias of Conv/Gemm, BatchNorm's statistics). */
function roleOf(node: Node, i: number, dims: number[]): ParamSpec['role'] {
  if (node.op === 'BatchNormalization') return (['weight', 'weight', 'bias', 'running_mean', 'running_var'] as const)[i];
  if ((node.op === 'Conv' || node.op === 'ConvTranspose' || node.op === 'Gemm') && i === 2) return 'bias';
  return dims.length <= 1 && node.op === 'Add' ? 'bias' : 'weight';
}

/** The parameters and buffers of the kept graph, in the order their readers come. */
export function paramsOf(im: Importer, loss: string): ParamSpec[] {
  const reach = reachingLoss(im.kept, loss);
  const out = new Map<string, ParamSpec>();
  for (const n of im.kept) {
    n.inputs.forEach((v, i) => {
      const t = im.floats.get(v);
      if (!t || out.has(v) || im.fixed.has(v)) return;
      const role = roleOf(n, i, t.dims);
      const buffer = role === 'running_mean' || role === 'running_var';
      const weightSlot = opSpec(n.op)?.weightInputs?.(i) ?? false;
      if (!buffer && !(reach.has(v) && differentiableSlot(n, i) && (weightSlot || t.data.length > 1))) return;
      out.set(v, { name: v, shape: t.dims, role, trainable: !buffer, init: { kind: 'given', data: t.data as Float32Array } });
    });
  }
  return [...out.values()];
}
