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

/** Reused between calls: augmentation runs on the training hot path. */
let scratch = new Float32Array(28 * 28);

/**
 * Augments one image [C, H, W] (planar uint8, default MNIST's 1x28x28) into `out`: rotation and
 * translation by inverse mapping with bilinear sampling (zero outside), the same for every
 * channel, then torchvision's ColorJitter order: brightness (scale), then contrast (blend with
 * the image's mean), clipped to 0..255; then the optional mirror.
 */
export function augmentImage(src: Uint8Array, out: Uint8Array, s: AugmentSettings, rng: Rng, shape: readonly [number, number, number] = [1, 28, 28]): void {
  const [C, H, W] = shape;
  const angle = (rng.uniform(-s.rotate, s.rotate) * Math.PI) / 180;
  const dx = s.translate ? rng.uniform(-s.translate, s.translate) : 0;
  const dy = s.translate ? rng.uniform(-s.translate, s.translate) : 0;
  const brightness = s.jitter ? rng.uniform(Math.max(0, 1 - s.jitter), 1 + s.jitter) : 1;
  const contrast = s.jitter ? rng.uniform(Math.max(0, 1 - s.jitter), 1 + s.jitter) : 1;
  // Drawn only when on, so the presets without it keep their random streams.
  const mirror = s.flip === true && rng.uniform(0, 1) < 0.5;
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const plane = H * W;
  if (scratch.length < C * plane) scratch = new Float32Array(C * plane);
  const warped = scratch;
  let sum = 0;
  const cx = (W - 1) / 2;
  const cy = (H - 1) / 2;
  // Where output pixel (x, y) comes from in the source (the inverse transform), stepped along rows.
  const ox = -cx - dx;
  const oy = -cy - dy;
  for (let ch = 0; ch < C; ch++) {
    const from = src.subarray(ch * plane, (ch + 1) * plane);
    const base = ch * plane;
    for (let y = 0; y < H; y++) {
      const uy = y + oy;
      let sx = cos * ox + sin * uy + cx;
      let sy = -sin * ox + cos * uy + cy;
      for (let x = 0; x < W; x++, sx += cos, sy -= sin) {
        let v = 0;
        if (sx > -1 && sy > -1 && sx < W && sy < H) {
          const x0 = Math.floor(sx);
          const y0 = Math.floor(sy);
          const fx = sx - x0;
          const fy = sy - y0;
          const inX0 = x0 >= 0;
          const inX1 = x0 + 1 < W;
          const row0 = y0 >= 0 ? y0 * W : -1;
          const row1 = y0 + 1 < H ? (y0 + 1) * W : -1;
          const a = row0 >= 0 && inX0 ? from[row0 + x0] : 0;
          const b = row0 >= 0 && inX1 ? from[row0 + x0 + 1] : 0;
          const c = row1 >= 0 && inX0 ? from[row1 + x0] : 0;
          const d = row1 >= 0 && inX1 ? from[row1 + x0 + 1] : 0;
          v = (a + (b - a) * fx) * (1 - fy) + (c + (d - c) * fx) * fy;
        }
        const bright = v * brightness;
        const clipped = bright > 255 ? 255 : bright;
        warped[base + y * W + x] = clipped;
        sum += clipped;
      }
    }
  }
  const mean = sum / (C * plane);
  for (let ch = 0; ch < C; ch++) {
    for (let y = 0; y < H; y++) {
      const row = ch * plane + y * W;
      for (let x = 0; x < W; x++) {
        const v = warped[row + (mirror ? W - 1 - x : x)];
        out[row + x] = Math.max(0, Math.min(255, Math.round((v - mean) * contrast + mean)));
      }
    }
  }
}
