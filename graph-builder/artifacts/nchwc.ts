/**
 * A train step's convolutions on MLAS's blocked NCHWc kernels (onnxruntime's CPU EP, domain
 * com.microsoft.nchwc). onnxruntime's graph optimiser makes this rewrite itself only for convs
 * whose filter is a constant initializer, as in inference; a train step's filters are loop-carried
 * (forward) or computed (the input gradient's rotated kernel), so its Convs ran as im2col + SGEMM.
 * Here the filter is reordered in the graph each step (Reshape, Transpose: a few hundred
 * kilobytes), the input reordered to channel blocks (ReorderInput) and the output back to NCHW
 * (ReorderOutput). One Conv with its filter as an input, im2col against this form, reorders
 * included (`npx tsx bench/conv-layouts.ts --nchwc`, 2 threads, block 16, two sittings): partB's
 * conv2 1.23-1.33x and its input gradient 1.03-1.53x, fashion-best's convs 1.08-1.59x,
 * MobileNetV2's depthwise 1.27-1.37x, eva-best's 1x1 16->8 0.72-0.85x (0.2 ms). Whole train steps,
 * 30 interleaved rounds (`npx tsx bench/ab.ts --nchwc`): partB 1.13-1.16x, eva-best 1.10x,
 * fashion-best 1.17x, ResNet-18 at 224x224 1.08x, MobileNetV2 1.05x (docs/performance.md).
 *
 * The layouts are the ones onnxruntime's optimiser writes for a constant filter (checked against
 * its optimised model): OIHWBiBo ([O/B, I/B, kh, kw, B_i, B_o]) where the input is reordered to
 * blocks, OIHWBo ([O/B, I, kh, kw, B_o]) for an NCHW input of fewer than B channels and for
 * depthwise convs. Output channels are padded to a multiple of B with zero filters (ReorderOutput
 * drops them). Convs it cannot take (input channels above B but not a multiple of it, grouped
 * convs that are not depthwise, filters of unknown shape) stay as they are.
 */
import { attr, type GraphBuilder, type Node } from '../graph/ir.ts';

export const NCHWC_DOMAIN = 'com.microsoft.nchwc';

/** How one Conv maps onto the blocked kernel. */
interface Plan {
  cout: number;
  /** Input channels per group (the filter's second dimension). */
  cin: number;
  kernel: [number, number];
  /** The filter's blocked layout. */
  layout: 'OIHWBiBo' | 'OIHWBo';
  /** Whether the input is reordered to channel blocks (otherwise read as NCHW). */
  reorderInput: boolean;
}

function planFor(n: Node, b: GraphBuilder, block: number): Plan | undefined {
  if (n.op !== 'Conv' || n.domain || n.inputs.length < 2) return undefined;
  const w = b.shapes.get(n.inputs[1]);
  const x = b.shapes.get(n.inputs[0]);
  if (!w || w.length !== 4 || !w.every((d) => typeof d === 'number') || (x && x.length !== 4)) return undefined;
  const [cout, cin, kh, kw] = w as number[];
  const group = n.attrs.group?.kind === 'int' ? n.attrs.group.value : 1;
  if (n.attrs.auto_pad?.kind === 'string' && n.attrs.auto_pad.value !== 'NOTSET') return undefined;
  if (group > 1) {
    const depthwise = cin === 1 && cout === group && cout % block === 0 && (!x || x[1] === group);
    return depthwise ? { cout, cin, kernel: [kh, kw], layout: 'OIHWBo', reorderInput: true } : undefined;
  }
  if (cin < block) return { cout, cin, kernel: [kh, kw], layout: 'OIHWBo', reorderInput: false };
  if (cin % block === 0) return { cout, cin, kernel: [kh, kw], layout: 'OIHWBiBo', reorderInput: true };
  return undefined;
}

/**
 * Emits the filter padded to `outs` output channels and reordered to the plan's layout; its nodes
 * are named after the Conv's (`base`), so profiles still tell forward and gradient convs apart.
 */
function blockedFilter(b: GraphBuilder, w: string, p: Plan, outs: number, block: number, base: string): string {
  const [kh, kw] = p.kernel;
  const hint = `${base}/nchwc_filter`;
  const padded = outs === p.cout ? w : b.op('Pad', [w, b.constI([0, 0, 0, 0, outs - p.cout, 0, 0, 0])], {}, hint);
  const blocked =
    p.layout === 'OIHWBo'
      ? b.op('Transpose', [b.op('Reshape', [padded, b.constI([outs / block, block, p.cin, kh, kw])], {}, hint)], { perm: attr.ints([0, 2, 3, 4, 1]) }, hint)
      : b.op('Transpose', [b.op('Reshape', [padded, b.constI([outs / block, block, p.cin / block, block, kh, kw])], {}, hint)], { perm: attr.ints([0, 2, 4, 5, 3, 1]) }, hint);
  return b.op('Reshape', [blocked, b.constI([outs, p.cin, kh, kw])], {}, hint);
}

function push(b: GraphBuilder, base: string, op: string, inputs: string[], outputs: string[], attrs: Node['attrs']): void {
  b.graph.nodes.push({ op, name: b.fresh(`${base}/nchwc_${op}`), inputs, outputs, attrs, domain: NCHWC_DOMAIN });
}

/**
 * Rewrites the Convs of `b`'s graph (a train step's body, after its backward and updates) to the
 * NCHWc kernels of block size `block` (read from the CPU EP: runtime/ort.ts nchwcBlockSize). A
 * Conv whose only reader is a Relu takes the Relu as its fused activation. Returns how many
 * Convs were rewritten.
 */
export function lowerConvsToNchwc(b: GraphBuilder, block: number): number {
  const old = b.graph.nodes;
  const readers = new Map<string, Node[]>();
  for (const n of old) for (const i of n.inputs) readers.set(i, [...(readers.get(i) ?? []), n]);
  const exposed = new Set(b.graph.outputs.map((o) => o.name));
  const fused = new Set<Node>();
  b.graph.nodes = [];
  let lowered = 0;
  for (const n of old) {
    if (fused.has(n)) continue;
    const p = planFor(n, b, block);
    if (!p) {
      b.graph.nodes.push(n);
      continue;
    }
    const outs = Math.ceil(p.cout / block) * block;
    const [x, w, bias] = n.inputs;
    const y = n.outputs[0];
    const onlyReader = readers.get(y);
    const relu = !exposed.has(y) && onlyReader?.length === 1 && onlyReader[0].op === 'Relu' && !onlyReader[0].domain ? onlyReader[0] : undefined;
    if (relu) fused.add(relu);
    const filter = blockedFilter(b, w, p, outs, block, n.name);
    const paddedBias = bias && outs !== p.cout ? b.op('Pad', [bias, b.constI([0, outs - p.cout])], {}, `${n.name}/nchwc_bias`) : bias;
    const input = p.reorderInput ? b.fresh(`${n.name}/nchwc_input`) : x;
    if (p.reorderInput) push(b, n.name, 'ReorderInput', [x], [input], { channels_last: attr.int(0) });
    const blockedOut = b.fresh(`${n.name}/nchwc_output`);
    push(b, n.name, 'Conv', paddedBias ? [input, filter, paddedBias] : [input, filter], [blockedOut], { ...n.attrs, ...(relu ? { activation: attr.string('Relu') } : {}) });
    push(b, n.name, 'ReorderOutput', [blockedOut], [relu ? relu.outputs[0] : y], { channels_last: attr.int(0), channels: attr.int(p.cout) });
    lowered++;
  }
  return lowered;
}
