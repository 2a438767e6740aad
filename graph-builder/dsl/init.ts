import { Rng } from '../../common/rng.ts';
import type { Analysis, ParamSpec } from './shapes.ts';

/** Parameters and buffers by name (`conv1.weight`, `bn1.running_mean`, ...), float32. */
export type ParamSet = Map<string, Float32Array>;

function initOne(p: ParamSpec, rng: Rng): Float32Array {
  const n = p.shape.reduce((a, b) => a * b, 1);
  const out = new Float32Array(n);
  switch (p.role) {
    case 'running_mean':
      return out;
    case 'running_var':
      return out.fill(1);
    case 'weight':
    case 'bias':
      if (p.fanIn === 0) return out.fill(p.role === 'weight' ? 1 : 0); // BatchNorm: gamma 1, beta 0
      {
        // PyTorch's default: kaiming_uniform(a=sqrt(5)) for weights, which is U(-1/sqrt(fan_in), 1/sqrt(fan_in)),
        // and the same bound for biases.
        const bound = 1 / Math.sqrt(p.fanIn);
        for (let i = 0; i < n; i++) out[i] = rng.uniform(-bound, bound);
      }
      return out;
  }
}

/** PyTorch's default initialisation from a seeded generator: the same seed gives identical bytes. */
export function initParams(analysis: Analysis, seed: number): ParamSet {
  const rng = Rng.seeded(seed);
  const params: ParamSet = new Map();
  for (const p of analysis.params) params.set(p.name, initOne(p, rng));
  return params;
}
