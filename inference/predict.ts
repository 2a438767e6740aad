import type { Runtime, Session } from '../runtime/ort.ts';
import { classify, type LoadedModel } from './model.ts';

export interface Prediction {
  label: number;
  name: string;
  probability: number;
}

/** Probabilities of one prepared 28x28 image, as the top k classes. */
export async function predictPixels(rt: Runtime, session: Session, model: LoadedModel, pixels: Float32Array, k = 3): Promise<Prediction[]> {
  const p = await classify(rt, session, model, pixels, 1);
  return Array.from(p, (probability, label) => ({ label, name: model.classes[label], probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}
