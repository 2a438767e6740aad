/**
 * Central finite differences against the autodiff, both run in onnxruntime-node (float32).
 *
 * F(x) = sum(w * y(x)) with fixed random w, accumulated in float64 on the host. For a
 * direction v: analytic = <dF/dx, v> from the backward graph, numeric = (F(x+hv) - F(x-hv)) / 2h.
 * Bound (why 1e-2 relative + 2e-3 absolute): with h = 1e-2 and inputs of order 1, the
 * truncation error is h^2/6 * F''' ~ 2e-5 relative; float32 rounding of y (relative 6e-8,
 * ~1e-6 after a conv's accumulation) over n <= 1000 outputs gives |dF| <~ 3e-5 * |w y|, and
 * dividing by 2h = 2e-2 yields ~1.5e-3 absolute. A wrong rule (a lost factor, a sign, a
 * transposed kernel, a misplaced pixel) errs by 10% or more of the derivative, far above.
 * The test file also runs deliberately broken rules through this check and expects failure.
 */
import * as ort from 'onnxruntime-node';
import { Rng } from '../../common/rng.ts';
import { emitBackward } from '../../graph-builder/autodiff/backward.ts';
import type { GradRule } from '../../graph-builder/autodiff/rule.ts';
import { GRAD_RULES } from '../../graph-builder/autodiff/registry.ts';
import { attr, GraphBuilder } from '../../graph-builder/graph/ir.ts';
import { encodeModel } from '../../graph-builder/graph/onnx.ts';

export interface GradInput {
  name: string;
  shape: number[];
  /** Whether to differentiate with respect to it (default true). */
  diff?: boolean;
  /** Values; default U(-1, 1). */
  values?: (rng: Rng, n: number) => Float32Array;
  dtype?: 'float32' | 'int64';
}

export interface GradCase {
  name: string;
  inputs: GradInput[];
  outputShape: number[];
  /** Emits the op(s) under test from the input names; returns the output value. */
  build: (b: GraphBuilder, inputs: string[]) => string;
}

export const H = 1e-2;
export const RTOL = 1e-2;
export const ATOL = 2e-3;

const size = (s: number[]) => s.reduce((a, b) => a * b, 1);

/** Distinct values spaced 0.05 apart, shuffled: no max-pool tie or ReLU kink within h. */
export function spaced(rng: Rng, n: number): Float32Array {
  const perm = rng.permutation(n);
  return Float32Array.from(perm, (p) => (p - n / 2) * 0.05 + 0.025);
}

type Feeds = Record<string, ort.Tensor>;

function tensor(input: GradInput, data: Float32Array | BigInt64Array): ort.Tensor {
  return input.dtype === 'int64' ? new ort.Tensor('int64', data as BigInt64Array, input.shape) : new ort.Tensor('float32', data as Float32Array, input.shape);
}

export interface GradReport {
  worst: number;
  details: string[];
}

/** Runs the check; returns the worst normalised error (> 1 means out of bound). */
export async function gradCheck(c: GradCase, rules: Record<string, GradRule> = GRAD_RULES, seed = 1): Promise<GradReport> {
  const rng = Rng.seeded(seed);
  const values = c.inputs.map((i) =>
    i.dtype === 'int64' ? BigInt64Array.from({ length: size(i.shape) }, () => BigInt(rng.int(0, 9))) : (i.values ?? ((r: Rng, n: number) => Float32Array.from({ length: n }, () => r.uniform(-1, 1))))(rng, size(i.shape)),
  );
  const w = Float32Array.from({ length: size(c.outputShape) }, () => rng.uniform(-1, 1));

  // Forward model: inputs -> y.
  const fb = new GraphBuilder('forward');
  const fIn = c.inputs.map((i) => fb.input(i.name, i.dtype ?? 'float32', i.shape));
  const fy = c.build(fb, fIn);
  fb.note(fy, 'float32', c.outputShape);
  fb.expose(fy, 'y', 'float32', c.outputShape);
  const forward = await ort.InferenceSession.create(encodeModel(fb.graph));

  // Gradient model: inputs, w -> dF/dx for each differentiated input.
  const gb = new GraphBuilder('gradient');
  const gIn = c.inputs.map((i) => gb.input(i.name, i.dtype ?? 'float32', i.shape));
  const wIn = gb.input('__w', 'float32', c.outputShape);
  const gy = c.build(gb, gIn);
  gb.note(gy, 'float32', c.outputShape);
  const prod = gb.op('Mul', [gy, wIn]);
  gb.note(prod, 'float32', c.outputShape);
  const loss = gb.op('ReduceSum', [prod], { keepdims: attr.int(0) });
  gb.note(loss, 'float32', []);
  const wrt = c.inputs.filter((i) => i.diff !== false).map((i) => i.name);
  const grads = emitBackward(gb, loss, wrt, rules);
  for (const name of wrt) {
    gb.expose(grads.get(name)!, `d_${name}`, 'float32');
  }
  const gradient = await ort.InferenceSession.create(encodeModel(gb.graph));

  const feeds = (vals: (Float32Array | BigInt64Array)[]): Feeds => Object.fromEntries(c.inputs.map((i, k) => [i.name, tensor(i, vals[k])]));
  const F = async (vals: (Float32Array | BigInt64Array)[]) => {
    const y = (await forward.run(feeds(vals))).y.data as Float32Array;
    let s = 0;
    for (let k = 0; k < y.length; k++) s += w[k] * y[k];
    return s;
  };
  const gOut = await gradient.run({ ...feeds(values), __w: new ort.Tensor('float32', w, c.outputShape) });

  let worst = 0;
  const details: string[] = [];
  for (const [k, input] of c.inputs.entries()) {
    if (input.diff === false) continue;
    const g = gOut[`d_${input.name}`].data as Float32Array;
    const n = size(input.shape);
    if (g.length !== n) throw new Error(`${c.name}: gradient of ${input.name} has ${g.length} elements, expected ${n}`);
    // Three dense random directions and up to 12 single coordinates.
    const directions: Float32Array[] = [];
    for (let d = 0; d < 3; d++) directions.push(Float32Array.from({ length: n }, () => (rng.float() < 0.5 ? -1 : 1)));
    const coords = n <= 12 ? Array.from({ length: n }, (_, i) => i) : Array.from({ length: 12 }, () => rng.int(0, n - 1));
    for (const i of coords) {
      const v = new Float32Array(n);
      v[i] = 1;
      directions.push(v);
    }
    for (const v of directions) {
      const shifted = (sign: number) => values.map((val, j) => (j === k ? Float32Array.from(val as Float32Array, (x, e) => x + sign * H * v[e]) : val));
      const numeric = ((await F(shifted(1))) - (await F(shifted(-1)))) / (2 * H);
      let analytic = 0;
      for (let e = 0; e < n; e++) analytic += g[e] * v[e];
      const err = Math.abs(analytic - numeric) / (ATOL + RTOL * Math.max(Math.abs(analytic), Math.abs(numeric)));
      if (err > worst) worst = err;
      if (err > 1) details.push(`${input.name}: analytic ${analytic.toPrecision(6)} vs numeric ${numeric.toPrecision(6)}`);
    }
  }
  await forward.release();
  await gradient.release();
  return { worst, details };
}
