import type { Rng } from '../common/rng.ts';

export interface AugmentSettings {
  /** Random rotation in [-rotate, rotate] degrees. */
  rotate: number;
  /** Random translation in [-translate, translate] pixels (each axis). */
  translate: number;
  /** Brightness and contrast factors drawn from [1 - jitter, 1 + jitter]. */
  jitter: number;
  /** Mirror left-right with probability 1/2 (clothes, not digits). */
  flip?: boolean;
}

const SIZE = 28;
const CENTRE = (SIZE - 1) / 2;
/** Reused between calls: augmentation runs on the training hot path. */
const scratch = new Float32Array(SIZE * SIZE);

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
  // Drawn only when on, so the presets without it keep their random streams.
  const mirror = s.flip === true && rng.uniform(0, 1) < 0.5;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const warped = scratch;
  let sum = 0;
  // Where output pixel (x, y) comes from in the source (the inverse transform), stepped along rows.
  const ox = -CENTRE - dx;
  const oy = -CENTRE - dy;
  for (let y = 0; y < SIZE; y++) {
    const uy = y + oy;
    let sx = cos * ox + sin * uy + CENTRE;
    let sy = -sin * ox + cos * uy + CENTRE;
    for (let x = 0; x < SIZE; x++, sx += cos, sy -= sin) {
      let v = 0;
      if (sx > -1 && sy > -1 && sx < SIZE && sy < SIZE) {
        const x0 = Math.floor(sx);
        const y0 = Math.floor(sy);
        const fx = sx - x0;
        const fy = sy - y0;
        const inX0 = x0 >= 0;
        const inX1 = x0 + 1 < SIZE;
        const row0 = y0 >= 0 ? y0 * SIZE : -1;
        const row1 = y0 + 1 < SIZE ? (y0 + 1) * SIZE : -1;
        const a = row0 >= 0 && inX0 ? src[row0 + x0] : 0;
        const b = row0 >= 0 && inX1 ? src[row0 + x0 + 1] : 0;
        const c = row1 >= 0 && inX0 ? src[row1 + x0] : 0;
        const d = row1 >= 0 && inX1 ? src[row1 + x0 + 1] : 0;
        v = (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
      }
      const bright = v * brightness;
      const clipped = bright > 255 ? 255 : bright;
      warped[y * SIZE + x] = clipped;
      sum += clipped;
    }
  }
  const mean = sum / (SIZE * SIZE);
  for (let y = 0; y < SIZE; y++) {
    const row = y * SIZE;
    for (let x = 0; x < SIZE; x++) {
      const v = warped[row + (mirror ? SIZE - 1 - x : x)];
      out[row + x] = Math.max(0, Math.min(255, Math.round((v - mean) * contrast + mean)));
    }
  }
}
