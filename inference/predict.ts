import type { Runtime, Session } from '../runtime/ort.ts';

export interface Prediction {
  label: number;
  name: string;
  probability: number;
}

/** Probabilities of one prepared 28x28 image, as the top k classes. */
export async function predictPixels(rt: Runtime, session: Session, pixels: Float32Array, classes: readonly string[], k = 3): Promise<Prediction[]> {
  const out = await session.run({ image: new rt.ort.Tensor('float32', pixels, [1, 1, 28, 28]) });
  const p = out.probabilities.data as Float32Array;
  return Array.from(p, (probability, label) => ({ label, name: classes[label], probability }))
    .sort((a, b) => b.probability - a.probability)
    .slice(0, k);
}
