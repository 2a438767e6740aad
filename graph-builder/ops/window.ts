import type { Dim, Node } from '../graph/ir.ts';
import { attrInt, attrInts, attrStr, staticDim } from './spec.ts';

/** A window op's geometry (Conv, ConvTranspose, MaxPool, AveragePool), defaults filled in. */
export interface Window {
  kernel: number[];
  strides: number[];
  dilations: number[];
  /** [top, left, bottom, right], auto_pad resolved. */
  pads: number[];
  ceil: boolean;
}

/**
 * Explicit pads [top, left, bottom, right] for a window op, resolving auto_pad as ONNX defines
 * it (SAME_UPPER puts the odd pixel at the end, SAME_LOWER at the start).
 */
export function windowPads(node: Pick<Node, 'attrs'>, input: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const auto = attrStr(node, 'auto_pad', 'NOTSET');
  if (auto === 'NOTSET') return attrInts(node, 'pads', [0, 0, 0, 0]);
  if (auto === 'VALID') return [0, 0, 0, 0];
  const pads = [0, 0, 0, 0];
  for (let i = 0; i < 2; i++) {
    const out = Math.ceil(input[i] / strides[i]);
    const total = Math.max(0, (out - 1) * strides[i] + dilations[i] * (kernel[i] - 1) + 1 - input[i]);
    const small = Math.floor(total / 2);
    [pads[i], pads[i + 2]] = auto === 'SAME_LOWER' ? [total - small, small] : [small, total - small];
  }
  return pads;
}

/** The window of a node over a [N, C, H, W] input; `kernel` where the node has no kernel_shape (Conv: W's). */
export function windowOf(node: Pick<Node, 'attrs'>, inputHW: number[], kernel?: number[]): Window {
  const k = attrInts(node, 'kernel_shape', kernel ?? []);
  if (k.length !== 2) throw new Error(`needs a 2-D kernel, found kernel_shape [${k.join(', ')}]`);
  const strides = attrInts(node, 'strides', [1, 1]);
  const dilations = attrInts(node, 'dilations', [1, 1]);
  return { kernel: k, strides, dilations, pads: windowPads(node, inputHW, k, strides, dilations), ceil: attrInt(node, 'ceil_mode', 0) === 1 };
}

/** Output height and width of a window over `hw` (ceil_mode: a last window may start inside the right padding, never beyond it). */
export function windowOutHW(hw: number[], w: Window): number[] {
  return hw.map((n, i) => {
    const span = n + w.pads[i] + w.pads[i + 2] - w.dilations[i] * (w.kernel[i] - 1) - 1;
    if (span < 0) throw new Error(`receives ${hw.join('x')} maps, smaller than its ${w.kernel.join('x')} window`);
    let out = (w.ceil ? Math.ceil(span / w.strides[i]) : Math.floor(span / w.strides[i])) + 1;
    if (w.ceil && (out - 1) * w.strides[i] >= n + w.pads[i]) out--;
    return out;
  });
}

/** [N, C, H, W] spatial sizes as numbers, or an error. */
export function spatialHW(x: Dim[]): number[] {
  if (x.length !== 4) throw new Error(`needs a 4-D [N, C, H, W] input, found [${x.join(', ')}]`);
  return [staticDim(x[2], 'height'), staticDim(x[3], 'width')];
}

/** The output shape of a window op with `channels` output channels. */
export function windowShape(node: Pick<Node, 'attrs'>, x: Dim[], channels: Dim, kernel?: number[]): Dim[] {
  const hw = spatialHW(x);
  return [x[0], channels, ...windowOutHW(hw, windowOf(node, hw, kernel))];
}
