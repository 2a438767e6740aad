import { attr, type GraphBuilder } from './graph/ir.ts';
import type { TrainHooks } from './forward.ts';

/** The modulus of the scalar key mixing: a prime below 2^31, so every product stays inside int64. */
export const HASH_MODULUS = 2147483647;

/** The first round's multiplier (odd, so index -> index * A is a bijection modulo 2^32). */
const HASH_A = 0x2c1b3c6dn;

/**
 * A uint32 hash of (seed, salt, element index), one per element of `like` (static shape after
 * the batch axis). The per-step key is mixed from (seed, salt) on scalars in exact int64
 * arithmetic; the per-element part is uint32 arithmetic, whose wrap-around modulo 2^32 is
 * defined behaviour on every runtime (CPU, CUDA, wasm), so all compute the same bits and a
 * step's masks depend only on the seed the host feeds it, which the checkpoint records. Two
 * squaring rounds make the map from index to value non-linear (neighbouring elements are not a
 * lattice). The first round's index * A is split, exactly (uint32 arithmetic is a ring), into a
 * constant per-sample row j * A and a column n * (elements per sample) * A + key, so a step
 * spends one broadcast Add on it instead of a Range, a Cast and a Mul over every element.
 * (The first version reduced int64 products with Mod, a division per element: 17% of eva-best's step.)
 */
export function emitHashBits(b: GraphBuilder, like: string, seed: string, salt: number): string {
  const shape = b.shapes.get(like);
  const sample = shape?.slice(1) ?? [];
  if (!shape || sample.some((d) => typeof d !== 'number')) throw new Error(`dropout hash: ${like} needs a static shape after the batch axis`);
  const dims = sample as number[];
  const perSample = dims.reduce((a, d) => a * d, 1);
  const M = b.constI([HASH_MODULUS], [], 'hash_m');
  const mod = (v: string) => b.op('Mod', [v, M], {}, 'hash_key');
  const u32 = (v: string, hint: string) => b.cast(v, 'uint32', hint);
  const times = (a: bigint, k: bigint) => Number((a * k) % 2n ** 32n);
  // Scalar mixing of (seed, salt) first (free): nearby seeds or layers then start far apart.
  const t1 = mod(b.op('Add', [b.op('Mul', [seed, b.constI([48271], [])]), b.constI([salt % HASH_MODULUS], [])], {}, 'hash_key'));
  const key = u32(mod(b.op('Add', [b.op('Mul', [t1, t1]), seed], {}, 'hash_key')), 'hash_key');
  const row = u32(b.constI(Array.from({ length: perSample }, (_, j) => times(BigInt(j), HASH_A)), [1, ...dims], 'hash_row'), 'hash_row');
  const n = b.op('Gather', [b.op('Shape', [like]), b.constI([0], [])], { axis: attr.int(0) }, 'hash_n');
  const samples = u32(b.op('Range', [b.constI([0], []), n, b.constI([1], [])], {}, 'hash_samples'), 'hash_samples');
  const offsets = b.op('Add', [b.op('Mul', [samples, u32(b.constI([times(BigInt(perSample), HASH_A)], []), 'hash_stride')], {}, 'hash_col'), key], {}, 'hash_col');
  const col = b.op('Reshape', [offsets, b.constI([-1, ...dims.map(() => 1)])], {}, 'hash_col');
  const h1 = b.op('Add', [row, col], {}, 'hash');
  const h2 = b.op('Add', [b.op('Mul', [h1, h1], {}, 'hash'), key], {}, 'hash');
  const h3 = b.op('Add', [b.op('Mul', [h2, b.op('Add', [h2, u32(b.constI([0x6a09e667], []), 'hash_c')], {}, 'hash')], {}, 'hash'), h1], {}, 'hash');
  b.shapes.set(h3, shape);
  return h3;
}

/** Uniform numbers in [0, 1] from emitHashBits (its high bits, through a float Cast). */
export function emitHashUniform(b: GraphBuilder, like: string, seed: string, salt: number): string {
  const bits = emitHashBits(b, like, seed, salt);
  return b.op('Mul', [b.cast(bits, 'float32', 'hash_f'), b.scalar(2 ** -32)], {}, 'hash_u');
}

/**
 * Train-mode BatchNorm over (N, H, W) from standard ops, as one composite for the autodiff
 * (rules/batchnorm.ts holds its closed-form gradient). Returns Y and the batch mean and (biased)
 * variance, [1, C, 1, 1], for the running statistics.
 */
export function emitBatchNormTraining(
  b: GraphBuilder,
  x: string,
  gamma: string,
  beta: string,
  o: { channels: number; eps: number; name: string },
): { y: string; mean: string; variance: string } {
  const { channels: c, name: n } = o;
  const axes = b.constI([0, 2, 3]);
  const perChannel = (v: string) => {
    const r = b.op('Reshape', [v, b.constI([1, c, 1, 1])], {}, `${v}_bc`);
    b.note(r, 'float32', [1, c, 1, 1]);
    return r;
  };
  let mean = '';
  let variance = '';
  const [y] = b.composite('BatchNormTraining', [x, gamma, beta], () => {
    mean = b.op('ReduceMean', [x, axes], { keepdims: attr.int(1) }, `${n}_mean`);
    b.note(mean, 'float32', [1, c, 1, 1]);
    const centred = b.op('Sub', [x, mean], {}, `${n}_centred`);
    const count = b.op('Div', [b.cast(b.op('Size', [x]), 'float32'), b.scalar(c)], {}, `${n}_count`);
    variance = b.op('Div', [b.op('ReduceSumSquare', [centred, axes], { keepdims: attr.int(1) }, `${n}_ss`), count], {}, `${n}_var`);
    b.note(variance, 'float32', [1, c, 1, 1]);
    const invStd = b.op('Div', [b.scalar(1), b.op('Sqrt', [b.op('Add', [variance, b.scalar(o.eps)], {}, `${n}_var_eps`)], {}, `${n}_std`)], {}, `${n}_inv_std`);
    const xhat = b.op('Mul', [centred, invStd], {}, `${n}_xhat`);
    const k = b.op('Mul', [perChannel(gamma), invStd], {}, `${n}_k`);
    // Y in one pass: the inference-mode op with the batch's statistics (Mul by gamma then Add
    // beta were two full-size passes; ReduceSumSquare saves the squares' pass).
    const flat = (v: string) => b.op('Reshape', [v, b.constI([c])], {}, `${v}_flat`);
    const out = b.op('BatchNormalization', [x, gamma, beta, flat(mean), flat(variance)], { epsilon: attr.float(o.eps) }, n);
    b.note(out, 'float32', b.shapes.get(x));
    return [out, xhat, k];
  });
  return { y, mean, variance };
}

export interface TrainModeState {
  hooks: TrainHooks;
  /** New running statistics of each BatchNorm buffer, by buffer name. */
  bufferUpdates: Map<string, string>;
}

/**
 * Train-mode lowering: Dropout as x * mask / (1 - p) with the mask from `seed`, and
 * BatchNorm from primitives (the CUDA EP refuses BatchNormalization training mode at
 * opset >= 14), updating running statistics the PyTorch way (unbiased variance, momentum).
 */
export function trainMode(seed: string): TrainModeState {
  const bufferUpdates = new Map<string, string>();
  const hooks: TrainHooks = {
    dropout: (b, x, name, { p, salt }) => {
      const scale = p >= 1 ? 0 : 1 / (1 - p);
      // Keep where emitHashUniform's u >= p, compared before the 2^-32 scaling (exact: a power of 2).
      const bits = b.cast(emitHashBits(b, x, seed, salt), 'float32', 'hash_f');
      const keep = b.op('GreaterOrEqual', [bits, b.scalar(Math.fround(p) * 2 ** 32)], {}, `${name}_keep`);
      // Cast and Mul, not Where(keep, scale, 0): onnxruntime's Where with scalar branches is its
      // generic broadcasting loop, about 2x the time of the two (bench: a 128x32x28x28 mask).
      const mask = b.op('Mul', [b.cast(keep, 'float32', `${name}_keep_f`), b.scalar(scale)], {}, `${name}_mask`);
      b.note(mask, 'float32', b.shapes.get(x));
      return b.op('Mul', [x, mask], {}, name);
    },
    batchNorm: (b, x, bn) => {
      const { channels: c, name: n } = bn;
      const { y, mean, variance } = emitBatchNormTraining(b, x, bn.gamma, bn.beta, { channels: c, eps: bn.eps, name: n });

      // Running statistics (no gradient flows here): r <- (1 - m) r + m * batch statistic.
      const toFloat = (v: string) => b.cast(v, 'float32');
      const perChannelCount = b.op('Div', [toFloat(b.op('Size', [x])), b.scalar(c)], {}, `${n}_count`);
      const unbiasedScale = b.op('Div', [perChannelCount, b.op('Max', [b.op('Sub', [perChannelCount, b.scalar(1)]), b.scalar(1)])], {}, `${n}_bessel`);
      const flat = (v: string) => b.op('Reshape', [v, b.constI([c])], {}, `${v}_flat`);
      const m = bn.momentum;
      const blend = (running: string, batch: string) =>
        b.op('Add', [b.op('Mul', [running, b.scalar(1 - m)]), b.op('Mul', [batch, b.scalar(m)])], {}, `${running.replace(/\W/g, '_')}_next`);
      bufferUpdates.set(bn.meanParam, blend(bn.runningMean, flat(mean)));
      bufferUpdates.set(bn.varParam, blend(bn.runningVar, b.op('Mul', [flat(variance), unbiasedScale])));
      return y;
    },
  };
  return { hooks, bufferUpdates };
}
