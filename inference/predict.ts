import type { Runtime, Session } from '../runtime/ort.ts';
import { classify, type LoadedModel } from './model.ts';

export interface Prediction {
  label: number;
  name: string;
  probability: number;
}

/** Probabilities of one prepared image (planar `shape`, default 1x28x28, pixels 0..1), as the top k classes. */
export async function predictPixels(rt: Runtime, session: Session, model: LoadedModel, pixels: Float32Array, k = 3, shape?: readonly [number, number, number]): Promise<Prediction[]> {
  const p = await classify(rt, session, model, pixels, 1, shape);
  return Array.from(p, (probability, label) => ({ label, name: model.classes[label], probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}
