import type { Composite, GraphBuilder, Node } from '../graph/ir.ts';
import { GRAD_RULES, NON_DIFFERENTIABLE } from './registry.ts';
import type { GradRule } from './rule.ts';

/**
 * Reverse-mode autodiff over the nodes emitted so far in `b`: a walk from `loss` back to
 * `wrt`, one rule per op, fan-out gradients summed. Only nodes on a path from some `wrt`
 * value to the loss get a gradient. Returns the gradient value of each `wrt` name.
 */
export function emitBackward(b: GraphBuilder, loss: string, wrt: string[], rules: Record<string, GradRule> = GRAD_RULES): Map<string, string> {
  const nodes = differentiableUnits(b);
  // Forward: which values depend on a wrt value (and so may need a gradient).
  const dependsOnWrt = new Set(wrt);
  for (const n of nodes) {
    if (NON_DIFFERENTIABLE.has(n.op)) continue;
    if (n.inputs.some((i) => dependsOnWrt.has(i))) for (const o of n.outputs) dependsOnWrt.add(o);
  }
  if (!dependsOnWrt.has(loss)) throw new Error(`autodiff: the loss ${loss} does not depend on any parameter`);
  // Backward: which values the loss depends on; the rest (e.g. running statistics) need no gradient.
  const reachesLoss = new Set([loss]);
  for (let i = nodes.length - 1; i >= 0; i--) {
    if (nodes[i].outputs.some((o) => reachesLoss.has(o))) for (const inp of nodes[i].inputs) reachesLoss.add(inp);
  }
  const needed = (v: string) => v !== '' && dependsOnWrt.has(v) && reachesLoss.has(v);
  for (const c of b.composites) {
    const made = new Set([...c.nodes].flatMap((n) => n.outputs));
    for (const n of c.nodes) {
      for (const i of n.inputs) {
        if (!made.has(i) && !c.inputs.includes(i) && dependsOnWrt.has(i)) throw new Error(`autodiff: composite ${c.name} reads ${i} without declaring it an input`);
      }
      for (const o of n.outputs) {
        if (!c.outputs.includes(o) && reachesLoss.has(o)) throw new Error(`autodiff: ${o}, inside composite ${c.name}, is used on a path to the loss outside it`);
      }
    }
  }

  const contributions = new Map<string, string[]>();
  const addGrad = (value: string, grad: string) => {
    const list = contributions.get(value);
    if (list) list.push(grad);
    else contributions.set(value, [grad]);
  };
  // Sums fan-out contributions once, when the value's producer (or the caller) needs it.
  const gradOf = (value: string): string | undefined => {
    const list = contributions.get(value);
    if (!list || list.length === 0) return undefined;
    if (list.length > 1) {
      const sum = b.op('Sum', list, {}, `grad_${value}_sum`);
      contributions.set(value, [sum]);
      return sum;
    }
    return list[0];
  };

  const lossShape = b.shapes.get(loss) ?? [];
  addGrad(loss, b.constF([1], lossShape.map(() => 1), 'grad_loss'));

  for (let i = nodes.length - 1; i >= 0; i--) {
    const node = nodes[i];
    if (NON_DIFFERENTIABLE.has(node.op)) continue;
    const gradOutputs = node.outputs.map((o) => (needed(o) ? gradOf(o) : undefined));
    if (gradOutputs.every((g) => g === undefined)) continue;
    const needsGrad = node.inputs.map(needed);
    if (!needsGrad.some(Boolean)) continue;
    const rule = rules[node.op];
    if (!rule) throw new Error(`autodiff: no gradient rule for op ${node.op} (node ${node.name})`);
    const gradInputs = rule({ b, node, inputs: node.inputs, outputs: node.outputs, gradOutputs, needsGrad });
    node.inputs.forEach((inp, k) => {
      const g = gradInputs[k];
      if (needsGrad[k] && g !== undefined) addGrad(inp, g);
    });
  }

  const grads = new Map<string, string>();
  for (const w of wrt) {
    const g = gradOf(w);
    if (!g) throw new Error(`autodiff: ${w} does not reach the loss`);
    grads.set(w, g);
  }
  return grads;
}

/**
 * The graph's nodes with each composite's run replaced by one node of the composite's op, placed
 * where its last node was (all its inputs exist by then, and its outputs are made there).
 */
function differentiableUnits(b: GraphBuilder): Node[] {
  const lastOf = new Map<Node, Composite>();
  const inside = new Set<Node>();
  for (const c of b.composites) {
    let last: Node | undefined;
    for (const n of c.nodes) {
      inside.add(n);
      last = n;
    }
    if (last) lastOf.set(last, c);
  }
  const units: Node[] = [];
  for (const n of b.graph.nodes) {
    const c = lastOf.get(n);
    if (c) units.push({ op: c.op, name: c.name, inputs: c.inputs, outputs: c.outputs, attrs: {} });
    else if (!inside.has(n)) units.push(n);
  }
  return units;
}
