import { Rng } from '../../common/rng.ts';
import { elementCount, type Model } from '../model.ts';

/** Parameters and buffers by name (`conv1.weight`, `bn1.running_mean`, ...), float32. */
export type ParamSet = Map<string, Float32Array>;

/** Each parameter's init (PyTorch's defaults) from one seeded generator: the same seed gives identical bytes. */
export function initParams(model: Model, seed: number): ParamSet {
  const rng = Rng.seeded(seed);
  const params: ParamSet = new Map();
  for (const p of model.params) {
    const out = new Float32Array(elementCount(p.shape));
    if (p.init.kind === 'constant') out.fill(p.init.value);
    else if (p.init.kind === 'given') out.set(p.init.data);
    else for (let i = 0; i < out.length; i++) out[i] = rng.uniform(-p.init.bound, p.init.bound);
    params.set(p.name, out);
  }
  return params;
}
