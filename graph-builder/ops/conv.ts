import { conv, convTranspose } from '../autodiff/rules/conv.ts';
import { attr, type Dim, type Node } from '../graph/ir.ts';
import { attrInt, attrInts, attrStr, elements, type NormalizeContext, type OpTable, type ShapeContext, staticDim, withoutAttrs } from './spec.ts';
import { spatialHW, windowPads, windowShape } from './window.ts';


/** A Conv's or ConvTranspose's kernel: kernel_shape, else W's spatial dims. */
function kernelOf(node: Node, w: Dim[] | undefined): number[] {
  const kernel = attrInts(node, 'kernel_shape', w ? w.slice(2).map((d) => staticDim(d, 'kernel size')) : []);
  if (kernel.length !== 2) throw new Error(`needs a 2-D kernel, found kernel_shape [${kernel.join(', ')}]`);
  return kernel;
}

/** An error where X's channels do not match W's input channels times the group count. */
function checkGroups(node: Node, channels: Dim, w: number[], perGroupAxis: 0 | 1): void {
  const groups = attrInt(node, 'group', 1);
  const expected = w[perGroupAxis] * (perGroupAxis === 1 ? groups : 1);
  if (typeof channels === 'number' && channels !== expected) throw new Error(`receives ${channels} input channels, but its weight [${w.join(', ')}] with group ${groups} takes ${expected}`);
  if (w[0] % groups !== 0) throw new Error(`has ${w[0]} weight filters, not a multiple of its group ${groups}`);
}

/**
 * Explicit pads [top, left, bottom, right] of a ConvTranspose, resolving auto_pad SAME_UPPER and
 * SAME_LOWER (output = input * stride) and output_shape as ONNX defines them (and onnxruntime
 * 1.30 runs them): total = stride*(in-1) + output_padding + dilation*(k-1) + 1 - out, its odd
 * pixel at the end for SAME_UPPER, at the start otherwise.
 */
export function convTransposePads(node: Pick<Node, 'attrs'>, hw: number[], kernel: number[], strides: number[], dilations: number[]): number[] {
  const auto = attrStr(node, 'auto_pad', 'NOTSET');
  const outShape = attrInts(node, 'output_shape', []);
  if (auto === 'VALID') return [0, 0, 0, 0];
  if (auto === 'NOTSET' && outShape.length === 0) return attrInts(node, 'pads', [0, 0, 0, 0]);
  const extra = attrInts(node, 'output_padding', [0, 0]);
  const pads = [0, 0, 0, 0];
  for (let i = 0; i < 2; i++) {
    const out = outShape.length > 0 ? outShape[outShape.length - 2 + i] : hw[i] * strides[i];
    const total = strides[i] * (hw[i] - 1) + extra[i] + dilations[i] * (kernel[i] - 1) + 1 - out;
    if (total < 0) throw new Error(`would need negative pads for its ${out}-pixel output; export it with explicit pads`);
    const small = Math.floor(total / 2);
    [pads[i], pads[i + 2]] = auto === 'SAME_UPPER' ? [small, total - small] : [total - small, small];
  }
  return pads;
}

/**
 * A Conv or ConvTranspose with auto_pad (and ConvTranspose's output_shape) resolved into
 * explicit pads and kernel_shape filled in from W, the form the gradient rules read.
 */
function explicitWindow(node: Node, ctx: NormalizeContext): Node[] {
  const transpose = node.op === 'ConvTranspose';
  const auto = attrStr(node, 'auto_pad', 'NOTSET');
  if (node.attrs.kernel_shape && auto === 'NOTSET' && !node.attrs.output_shape) return [node];
  const kernel = kernelOf(node, ctx.shape(node.inputs[1]));
  const strides = attrInts(node, 'strides', [1, 1]);
  const dilations = attrInts(node, 'dilations', [1, 1]);
  const sized = auto.startsWith('SAME') || (transpose && node.attrs.output_shape);
  const x = ctx.shape(node.inputs[0]);
  if (sized && !x) throw new Error(`${node.op} ${node.name}: auto_pad ${auto} needs the static shape of its input ${node.inputs[0]}`);
  const hw = sized ? spatialHW(x!) : [0, 0];
  const pads = transpose ? convTransposePads(node, hw, kernel, strides, dilations) : windowPads(node, hw, kernel, strides, dilations);
  return [{ ...node, attrs: { ...withoutAttrs(node, ['auto_pad', 'output_shape']), kernel_shape: attr.ints(kernel), pads: attr.ints(pads) } }];
}

/** [N, M, H', W'] of a ConvTranspose: (in-1)*stride - pads + dilation*(k-1) + output_padding + 1. */
function convTransposeShape(n: Node, c: ShapeContext): Dim[] {
  const xs = c.shape(n.inputs[0]);
  const w = c.shape(n.inputs[1]) as number[];
  checkGroups(n, xs[1], w, 0);
  const kernel = kernelOf(n, w);
  const strides = attrInts(n, 'strides', [1, 1]);
  const dilations = attrInts(n, 'dilations', [1, 1]);
  const hw = spatialHW(xs);
  const pads = convTransposePads(n, hw, kernel, strides, dilations);
  const extra = attrInts(n, 'output_padding', [0, 0]);
  return [xs[0], w[1] * attrInt(n, 'group', 1), ...hw.map((v, i) => (v - 1) * strides[i] - pads[i] - pads[i + 2] + dilations[i] * (kernel[i] - 1) + extra[i] + 1)];
}

export const CONV_OPS: OpTable = {
  Conv: {
    // kernel_shape is optional: W's spatial dims.
    shape: (n, c) => {
      const w = c.shape(n.inputs[1]) as number[];
      checkGroups(n, c.shape(n.inputs[0])[1], w, 1);
      return windowShape(n, c.shape(n.inputs[0]), w[0], w.slice(2));
    },
    grad: conv,
    weightInputs: (i) => i === 1 || i === 2,
    normalize: explicitWindow,
    // Each output element is a dot product over the kernel (C_in/groups x k x k).
    flops: (n, c) => 2 * elements(c.shape(n.outputs[0]).slice(1)) * elements(c.shape(n.inputs[1]).slice(1)),
  },
  ConvTranspose: {
    shape: convTransposeShape,
    grad: convTranspose,
    weightInputs: (i) => i === 1 || i === 2,
    normalize: explicitWindow,
    // Each input element is spread over the kernel of its group's output channels.
    flops: (n, c) => 2 * elements(c.shape(n.inputs[0]).slice(1)) * elements(c.shape(n.inputs[1]).slice(1)),
  },
};
