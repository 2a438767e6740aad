import type { Node } from './graph/ir.ts';
import { elementCount, type Model, paramsRead } from './model.ts';
import { opSpec } from './ops/table.ts';

const fmt = (n: number) => n.toLocaleString('en-US');

/** The layer table torchsummary users know: layer (type), output shape, parameter count. */
export function summaryTable(model: Model, title?: string): string {
  const rule = '-'.repeat(64);
  const lines = [rule];
  if (title) lines.push(title, rule);
  lines.push(`${'Layer (type)'.padStart(25)}${'Output Shape'.padStart(25)}${'Param #'.padStart(14)}`, '='.repeat(64));
  for (const l of model.layers) {
    const count = paramsRead(model, l.nodes).filter((p) => p.trainable).reduce((s, p) => s + elementCount(p.shape), 0);
    const shape = `[-1, ${(model.shapes.get(l.output) ?? []).slice(1).join(', ')}]`;
    lines.push(`${`${l.type}-${l.index}`.padStart(25)}${shape.padStart(25)}${fmt(count).padStart(14)}`);
  }
  lines.push('='.repeat(64), `Total params: ${fmt(model.trainableCount)}`, `Trainable params: ${fmt(model.trainableCount)}`, 'Non-trainable params: 0');
  const buffers = model.params.filter((p) => !p.trainable).reduce((s, p) => s + elementCount(p.shape), 0);
  if (buffers) lines.push(`Buffers (BatchNorm running stats): ${fmt(buffers)}`);
  lines.push(rule);
  return lines.join('\n');
}

export interface RfRow {
  index: number;
  operation: string;
  nIn: number;
  nOut: number;
  chIn: number;
  chOut: number;
  padding: number;
  kernel: number;
  stride: number;
  jIn: number;
  jOut: number;
  rIn: number;
  rOut: number;
}

/**
 * Receptive field per spatial layer, as in seed 003: n_out = floor((n_in + 2p - k) / s) + 1,
 * j_out = j_in * s, r_out = r_in + (k - 1) * j_in.
 */
export function receptiveField(model: Model): RfRow[] {
  const rows: RfRow[] = [];
  let j = 1;
  let r = 1;
  const ints = (n: Node, key: string) => {
    const a = n.attrs[key];
    return a?.kind === 'ints' ? a.value : undefined;
  };
  for (const l of model.layers) {
    for (const n of l.nodes) {
      const inShape = model.shapes.get(n.inputs[0]) as number[];
      const outShape = model.shapes.get(n.outputs[0]) as number[];
      let k: number;
      let s: number;
      let p = 0;
      let op: string;
      if (n.op === 'Conv') [k, s, p, op] = [ints(n, 'kernel_shape')![0], ints(n, 'strides')?.[0] ?? 1, ints(n, 'pads')?.[0] ?? 0, 'CONVOLUTION'];
      else if (n.op === 'MaxPool') [k, s, op] = [ints(n, 'kernel_shape')![0], ints(n, 'strides')?.[0] ?? 1, 'MAXPOOL'];
      else if (n.op === 'AveragePool') [k, s, op] = [ints(n, 'kernel_shape')![0], ints(n, 'strides')?.[0] ?? 1, 'AVGPOOL'];
      else if (n.op === 'GlobalAveragePool') [k, s, op] = [inShape[2], 1, 'GAP'];
      else continue;
      const jOut = j * s;
      const rOut = r + (k - 1) * j;
      rows.push({ index: l.index, operation: op, nIn: inShape[2], nOut: outShape[2], chIn: inShape[1], chOut: outShape[1], padding: p, kernel: k, stride: s, jIn: j, jOut, rIn: r, rOut });
      j = jOut;
      r = rOut;
    }
  }
  return rows;
}

/** Multiply-adds x 2 of one example through one node, from the op table (0 for ops without a count). */
function nodeFlops(model: Model, n: Node): number {
  const flops = opSpec(n.op)?.flops;
  if (!flops) return 0;
  const shape = (v: string) => {
    const s = model.shapes.get(v) ?? model.params.find((p) => p.name === v)?.shape;
    if (!s) throw new Error(`summary: no shape for ${v}`);
    return s;
  };
  return flops(n, { shape, constant: () => undefined });
}

/** Multiply-adds x 2 of one example's forward pass. */
export function forwardFlops(model: Model): number {
  return model.graph.nodes.reduce((f, n) => f + nodeFlops(model, n), 0);
}

/** A training step costs the forward, the input gradients (not of the first layer) and the weight gradients. */
export function trainFlops(model: Model): number {
  const first = model.graph.nodes.find((n) => nodeFlops(model, n) > 0);
  return 3 * forwardFlops(model) - (first?.op === 'Conv' ? nodeFlops(model, first) : 0);
}

export function receptiveFieldTable(model: Model): string {
  const head = ['layer', 'operation', 'n_in', 'n_out', 'ch_in', 'ch_out', 'pad', 'kernel', 'stride', 'j_in', 'j_out', 'r_in', 'r_out'];
  const rows = receptiveField(model).map((x) => [x.index, x.operation, x.nIn, x.nOut, x.chIn, x.chOut, x.padding, x.kernel, x.stride, x.jIn, x.jOut, x.rIn, x.rOut].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
