import { attr, type GraphBuilder } from '../../graph-builder/graph/ir.ts';
import type { GradCase } from '../helpers/gradcheck.ts';

/** An int64 end past every axis (INT64_MAX as exporters write it, within what a double holds exactly). */
const MAX = Number.MAX_SAFE_INTEGER;

const one = (name: string, shape: number[], outputShape: number[], build: (b: GraphBuilder, x: string) => string): GradCase => ({ name, inputs: [{ name: 'x', shape }], outputShape, build: (b, [x]) => build(b, x) });

const pad = (name: string, shape: number[], pads: number[], mode: string, out: number[]) =>
  one(name, shape, out, (b, x) => b.op('Pad', [x, b.constI(pads)], { mode: attr.string(mode) }));

const slice = (name: string, shape: number[], starts: number[], ends: number[], axes: number[], steps: number[] | undefined, out: number[]) =>
  one(name, shape, out, (b, x) => b.op('Slice', [x, b.constI(starts), b.constI(ends), b.constI(axes), ...(steps ? [b.constI(steps)] : [])]));

const resize = (name: string, shape: number[], scales: number[], attrs: Record<string, string>, out: number[]) =>
  one(name, shape, out, (b, x) => b.op('Resize', [x, '', b.constF(scales)], Object.fromEntries(Object.entries(attrs).map(([k, v]) => [k, attr.string(v)]))));

/** Finite-difference cases of this family's gradient rules (test/autodiff.test.ts runs them). */
export const CASES: GradCase[] = [
  one('Pad constant 0.5, asymmetric on H and W', [2, 2, 3, 4], [2, 2, 6, 6], (b, x) => b.op('Pad', [x, b.constI([0, 0, 1, 2, 0, 0, 2, 0]), b.scalar(0.5)])),
  pad('Pad constant with negative pads (cropping)', [1, 2, 4, 5], [0, 0, -1, 2, 0, 0, 1, -1], 'constant', [1, 2, 4, 6]),
  one('Pad with axes (opset 18)', [2, 2, 3, 4], [2, 2, 3, 7], (b, x) => b.op('Pad', [x, b.constI([1, 2]), '', b.constI([-1])])),
  pad('Pad reflect', [1, 2, 4, 5], [0, 0, 2, 1, 0, 0, 1, 4], 'reflect', [1, 2, 7, 10]),
  pad('Pad edge', [1, 2, 3, 4], [0, 0, 2, 0, 0, 0, 1, 3], 'edge', [1, 2, 6, 7]),
  slice('Slice step 1 on H and W', [2, 3, 5, 6], [1, 1], [4, 5], [2, 3], undefined, [2, 3, 3, 4]),
  slice('Slice negative start, INT_MAX end', [2, 4, 5], [-3], [MAX], [2], undefined, [2, 4, 3]),
  slice('Slice step 2 and 3 (uneven ends)', [2, 3, 6, 7], [1, 0], [6, MAX], [2, 3], [2, 3], [2, 3, 3, 3]),
  slice('Slice step -1 (and -2 on another axis)', [2, 3, 4, 5], [3, -1], [0, -MAX], [2, 3], [-2, -1], [2, 3, 2, 5]),
  {
    name: 'Split in 2 equal parts on the channel axis, both used',
    inputs: [{ name: 'x', shape: [2, 4, 3, 3] }],
    outputShape: [2, 2, 3, 3],
    build: (b, [x]) => {
      const halves = b.node('Split', [x], { axis: attr.int(1), num_outputs: attr.int(2) }, 2);
      for (const h of halves) b.note(h, 'float32', [2, 2, 3, 3]);
      return b.op('Mul', halves);
    },
  },
  {
    name: 'Split sizes [1, 3, 1], last output unused (zeros)',
    inputs: [{ name: 'x', shape: [2, 5, 3] }],
    outputShape: [2, 3, 3],
    build: (b, [x]) => {
      const [y0, y1] = b.node('Split', [x, b.constI([1, 3, 1])], { axis: attr.int(1) }, 3);
      b.note(y0, 'float32', [2, 1, 3]);
      b.note(y1, 'float32', [2, 3, 3]);
      return b.op('Mul', [y1, y0]);
    },
  },
  one('Squeeze', [2, 1, 3, 1], [2, 3], (b, x) => b.op('Squeeze', [x, b.constI([1, 3])])),
  one('Unsqueeze', [2, 3], [2, 1, 3, 1], (b, x) => b.op('Unsqueeze', [x, b.constI([1, -1])])),
  one('Gather scalar index on axis 1', [2, 4, 3], [2, 3], (b, x) => b.op('Gather', [x, b.constI([2], [])], { axis: attr.int(1) })),
  one('Gather 2x2 indices with a repeat and a negative index', [2, 4, 3], [2, 2, 2, 3], (b, x) => b.op('Gather', [x, b.constI([1, -1, 1, 0], [2, 2])], { axis: attr.int(1) })),
  one('Expand [3, 1] to [2, 3, 4]', [3, 1], [2, 3, 4], (b, x) => b.op('Expand', [x, b.constI([2, 3, 4])])),
  one('Tile [1, 2, 3]', [2, 3, 2], [2, 6, 6], (b, x) => b.op('Tile', [x, b.constI([1, 2, 3])])),
  resize('Resize nearest 2x', [2, 2, 3, 3], [1, 1, 2, 2], {}, [2, 2, 6, 6]),
  resize('Resize nearest 3x asymmetric floor (Upsample)', [1, 2, 2, 3], [1, 1, 3, 3], { coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' }, [1, 2, 6, 9]),
  resize('Resize nearest 1.5x (a tie on every third pixel)', [1, 2, 4, 4], [1, 1, 1.5, 1.5], {}, [1, 2, 6, 6]),
  resize('Resize linear 2x half_pixel', [1, 2, 3, 4], [1, 1, 2, 2], { mode: 'linear' }, [1, 2, 6, 8]),
  resize('Resize linear 2x align_corners', [1, 2, 3, 3], [1, 1, 2, 2], { mode: 'linear', coordinate_transformation_mode: 'align_corners' }, [1, 2, 6, 6]),
  one('Channel shuffle, 2 groups (Reshape, Transpose, Reshape)', [2, 6, 3, 3], [2, 6, 3, 3], (b, x) => {
    const grouped = b.op('Reshape', [x, b.constI([0, 2, 3, 3, 3])]);
    const swapped = b.op('Transpose', [grouped], { perm: attr.ints([0, 2, 1, 3, 4]) });
    return b.op('Reshape', [swapped, b.constI([0, 6, 3, 3])]);
  }),
];
