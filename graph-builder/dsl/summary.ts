import type { Layer } from './layers.ts';
import type { Analysis } from './shapes.ts';

const TORCH_NAMES: Record<Layer['kind'], string> = {
  conv2d: 'Conv2d',
  maxPool2d: 'MaxPool2d',
  avgPool2d: 'AvgPool2d',
  globalAvgPool: 'AdaptiveAvgPool2d',
  relu: 'ReLU',
  dropout: 'Dropout',
  batchNorm2d: 'BatchNorm2d',
  flatten: 'Flatten',
  linear: 'Linear',
  logSoftmax: 'LogSoftmax',
};

const fmt = (n: number) => n.toLocaleString('en-US');

/** The layer table torchsummary users know: layer (type), output shape, parameter count. */
export function summaryTable(a: Analysis, title?: string): string {
  const rule = '-'.repeat(64);
  const lines = [rule];
  if (title) lines.push(title, rule);
  lines.push(`${'Layer (type)'.padStart(25)}${'Output Shape'.padStart(25)}${'Param #'.padStart(14)}`, '='.repeat(64));
  for (const l of a.layers) {
    const count = l.params.filter((p) => p.trainable).reduce((s, p) => s + p.shape.reduce((x, y) => x * y, 1), 0);
    const shape = `[-1, ${l.outShape.join(', ')}]`;
    lines.push(`${`${TORCH_NAMES[l.layer.kind]}-${l.index}`.padStart(25)}${shape.padStart(25)}${fmt(count).padStart(14)}`);
  }
  lines.push('='.repeat(64), `Total params: ${fmt(a.trainableCount)}`, `Trainable params: ${fmt(a.trainableCount)}`, 'Non-trainable params: 0');
  const buffers = a.params.filter((p) => !p.trainable).reduce((s, p) => s + p.shape.reduce((x, y) => x * y, 1), 0);
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
export function receptiveField(a: Analysis): RfRow[] {
  const rows: RfRow[] = [];
  let j = 1;
  let r = 1;
  for (const l of a.layers) {
    const L = l.layer;
    let k: number;
    let s: number;
    let p = 0;
    let op: string;
    if (L.kind === 'conv2d') [k, s, p, op] = [L.kernel, L.stride, L.padding, 'CONVOLUTION'];
    else if (L.kind === 'maxPool2d') [k, s, op] = [L.kernel, L.stride, 'MAXPOOL'];
    else if (L.kind === 'avgPool2d') [k, s, op] = [L.kernel, L.stride, 'AVGPOOL'];
    else if (L.kind === 'globalAvgPool') [k, s, op] = [l.inShape[1], 1, 'GAP'];
    else continue;
    const jOut = j * s;
    const rOut = r + (k - 1) * j;
    rows.push({ index: l.index, operation: op, nIn: l.inShape[1], nOut: l.outShape[1], chIn: l.inShape[0], chOut: l.outShape[0], padding: p, kernel: k, stride: s, jIn: j, jOut, rIn: r, rOut });
    j = jOut;
    r = rOut;
  }
  return rows;
}

export function receptiveFieldTable(a: Analysis): string {
  const head = ['layer', 'operation', 'n_in', 'n_out', 'ch_in', 'ch_out', 'pad', 'kernel', 'stride', 'j_in', 'j_out', 'r_in', 'r_out'];
  const rows = receptiveField(a).map((x) => [x.index, x.operation, x.nIn, x.nOut, x.chIn, x.chOut, x.padding, x.kernel, x.stride, x.jIn, x.jOut, x.rIn, x.rOut].map(String));
  const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i])).join('  ');
  return [line(head), line(widths.map((w) => '-'.repeat(w))), ...rows.map(line)].join('\n');
}
