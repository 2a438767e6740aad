import type { Rng } from '../common/rng.ts';

export interface AugmentSettings {
  /** Random rotation in [-rotate, rotate] degrees. */
  rotate: number;
  /** Random translation in [-translate, translate] pixels (each axis). */
  translate: number;
  /** Brightness and contrast factors drawn from [1 - jitter, 1 + jitter]. */
  jitter: number;
}

const SIZE = 28;
const CENTRE = (SIZE - 1) / 2;

/**
 * Augments one 28x28 image into `out` (uint8): rotation and translation by inverse mapping
 * with bilinear sampling (zero outside), then torchvision's ColorJitter order for grayscale:
 * brightness (scale), then contrast (blend with the image's mean), clipped to 0..255.
 */
export function augmentImage(src: Uint8Array, out: Uint8Array, s: AugmentSettings, rng: Rng): void {
  const angle = (rng.uniform(-s.rotate, s.rotate) * Math.PI) / 180;
  const dx = s.translate ? rng.uniform(-s.translate, s.translate) : 0;
  const dy = s.translate ? rng.uniform(-s.translate, s.translate) : 0;
  const brightness = s.jitter ? rng.uniform(Math.max(0, 1 - s.jitter), 1 + s.jitter) : 1;
  const contrast = s.jitter ? rng.uniform(Math.max(0, 1 - s.jitter), 1 + s.jitter) : 1;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const warped = new Float32Array(SIZE * SIZE);
  let sum = 0;
  for (let y = 0; y < SIZE; y++) {
    for (let x = 0; x < SIZE; x++) {
      // Where this output pixel comes from in the source (the inverse transform).
      const ux = x - CENTRE - dx;
      const uy = y - CENTRE - dy;
      const sx = cos * ux + sin * uy + CENTRE;
      const sy = -sin * ux + cos * uy + CENTRE;
      const x0 = Math.floor(sx);
      const y0 = Math.floor(sy);
      const fx = sx - x0;
      const fy = sy - y0;
      const at = (xx: number, yy: number) => (xx < 0 || yy < 0 || xx >= SIZE || yy >= SIZE ? 0 : src[yy * SIZE + xx]);
      const v = (at(x0, y0) * (1 - fx) + at(x0 + 1, y0) * fx) * (1 - fy) + (at(x0, y0 + 1) * (1 - fx) + at(x0 + 1, y0 + 1) * fx) * fy;
      const b = Math.min(255, v * brightness);
      warped[y * SIZE + x] = b;
      sum += b;
    }
  }
  const mean = sum / (SIZE * SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) out[i] = Math.max(0, Math.min(255, Math.round((warped[i] - mean) * contrast + mean)));
}
