import { averagePool, globalAveragePool, globalMaxPool, maxPool, maxPoolUnpool } from '../autodiff/rules/pool.ts';
import type { Dim, Node } from '../graph/ir.ts';
import { attrInt, attrInts, type NormalizeContext, type OpTable, type ShapeContext, withoutAttrs } from './spec.ts';
import { spatialHW, windowOf, windowOutHW, windowShape } from './window.ts';

/** A pool's output: [N, C] and the window's output size (ceil_mode, dilations, pads and auto_pad as windowOutHW reads them). */
const pooledShape = (n: Node, c: ShapeContext): Dim[] => windowShape(n, c.shape(n.inputs[0]), c.shape(n.inputs[0])[1]);

/** [N, C, 1, ...]: a global pool over every axis after the channels. */
const globalShape = (n: Node, c: ShapeContext): Dim[] => c.shape(n.inputs[0]).map((d, i) => (i < 2 ? d : 1));

/**
 * A ceil_mode pool whose ceil and floor output sizes agree, written without ceil_mode. ONNX
 * defines ceil_mode's size without PyTorch's rule that a last window starts inside the input
 * or left padding, which onnxruntime's kernels apply; where that rule removes a window, the
 * size is the floor one (windows, values and divisors alike: measured over 750 pools), and
 * the shape inference onnxruntime runs at load time (one window more) then agrees with its
 * kernel, where otherwise it fails on the first value whose size cnnlab states.
 */
function ceilAsFloor(node: Node, ctx: NormalizeContext): Node {
  const x = ctx.shape(node.inputs[0]);
  if (attrInt(node, 'ceil_mode', 0) === 0 || !x || x.length !== 4 || x.slice(2).some((d) => typeof d !== 'number')) return node;
  const floor = { ...node, attrs: withoutAttrs(node, ['ceil_mode']) };
  const hw = spatialHW(x);
  const same = (a: number[], b: number[]) => a.every((v, i) => v === b[i]);
  return same(windowOutHW(hw, windowOf(node, hw)), windowOutHW(hw, windowOf(floor, hw))) ? floor : node;
}

/**
 * MaxPool as cnnlab emits it (ceilAsFloor) with storage_order 0, the only order the gradient's
 * Indices follow. Opsets 8 to 18 allow storage_order 1 (column-major Indices); where the node's
 * Indices output is unused the attribute changes nothing and is dropped.
 */
function maxPoolForm(node: Node, ctx: NormalizeContext): Node[] {
  const n = ceilAsFloor(node, ctx);
  if (attrInt(n, 'storage_order', 0) === 0) return [n];
  if (n.outputs[1]) throw new Error('supports storage_order 0 only where its Indices output is used, found storage_order 1');
  return [{ ...n, attrs: withoutAttrs(n, ['storage_order']) }];
}

/**
 * AveragePool as opset 18 writes it (ceilAsFloor): opset 19 added dilations, which an opset-18
 * graph cannot hold; all-ones dilations are dropped, others refused (PyTorch's avg_pool2d has none).
 */
function averagePoolForm(node: Node, ctx: NormalizeContext): Node[] {
  const d = attrInts(node, 'dilations', []);
  if (d.some((v) => v !== 1)) throw new Error(`supports dilations 1 only (opset ${ctx.opset} dilated AveragePool has no opset-18 form), found [${d.join(', ')}]`);
  return [ceilAsFloor(node.attrs.dilations ? { ...node, attrs: withoutAttrs(node, ['dilations']) } : node, ctx)];
}

export const POOL_OPS: OpTable = {
  MaxPool: { shape: pooledShape, grad: maxPool, cpuGrad: maxPoolUnpool, normalize: maxPoolForm },
  AveragePool: { shape: pooledShape, grad: averagePool, normalize: averagePoolForm },
  GlobalAveragePool: { shape: globalShape, grad: globalAveragePool },
  GlobalMaxPool: { shape: globalShape, grad: globalMaxPool },
};
