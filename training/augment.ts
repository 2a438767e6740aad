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
  /**
   * torchvision on PIL images, as the EVA seed's `ColorJitter` then `RandomRotation` ran:
   * brightness and contrast in a random order, each rounded down to uint8 as PIL does, contrast
   * blended with the rounded grey mean; then rotation with nearest-neighbour sampling (torchvision's
   * default) instead of bilinear.
   */
  pil?: boolean;
  /**
   * Probability of erasing one random rectangle after the other transforms, as torchvision's
   * RandomErasing (area 2-33% of the image, aspect ratio 0.3-3.3 drawn in log space, up to 10
   * tries for one that fits), filled with 0 (the background of MNIST-style images).
   */
  erase?: number;
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
  if (s.pil) augmentPil(src, out, s, rng, shape);
  else augmentWarp(src, out, s, rng, shape);
  // Drawn only when on, so the presets without it keep their random streams.
  if (s.erase && rng.uniform(0, 1) < s.erase) eraseRectangle(out, rng, shape);
}

/** torchvision's RandomErasing with its default scale and ratio, the rectangle set to 0 in every channel. */
export function eraseRectangle(out: Uint8Array, rng: Rng, [C, H, W]: readonly [number, number, number]): void {
  const area = H * W;
  for (let attempt = 0; attempt < 10; attempt++) {
    const target = area * rng.uniform(0.02, 0.33);
    const aspect = Math.exp(rng.uniform(Math.log(0.3), Math.log(3.3)));
    const h = Math.round(Math.sqrt(target * aspect));
    const w = Math.round(Math.sqrt(target / aspect));
    if (h < 1 || w < 1 || h >= H || w >= W) continue;
    const top = Math.min(H - h, Math.floor(rng.uniform(0, H - h + 1)));
    const left = Math.min(W - w, Math.floor(rng.uniform(0, W - w + 1)));
    for (let ch = 0; ch < C; ch++) for (let y = top; y < top + h; y++) out.fill(0, ch * area + y * W + left, ch * area + y * W + left + w);
    return;
  }
}

/** The bilinear form of augmentImage (see there). */
function augmentWarp(src: Uint8Array, out: Uint8Array, s: AugmentSettings, rng: Rng, shape: readonly [number, number, number]): void {
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

/** PIL's ImageEnhance blend of an image with a constant: `c + f (v - c)`, clipped and truncated to uint8. */
function blendInto(px: Uint8Array, c: number, f: number): void {
  for (let i = 0; i < px.length; i++) {
    const v = c + f * (px[i] - c);
    px[i] = v <= 0 ? 0 : v >= 255 ? 255 : Math.trunc(v);
  }
}

let pilScratch = new Uint8Array(28 * 28);

/**
 * The `pil` form of augmentImage: ColorJitter's brightness and contrast in a random order on
 * uint8 pixels (contrast around the grey mean rounded to an integer, PIL's ImageEnhance), then
 * rotation and translation with nearest-neighbour sampling, zero outside, then the mirror.
 */
function augmentPil(src: Uint8Array, out: Uint8Array, s: AugmentSettings, rng: Rng, [C, H, W]: readonly [number, number, number]): void {
  const contrastFirst = s.jitter ? rng.uniform(0, 1) < 0.5 : false;
  const brightness = s.jitter ? rng.uniform(Math.max(0, 1 - s.jitter), 1 + s.jitter) : 1;
  const contrast = s.jitter ? rng.uniform(Math.max(0, 1 - s.jitter), 1 + s.jitter) : 1;
  const angle = (rng.uniform(-s.rotate, s.rotate) * Math.PI) / 180;
  const dx = s.translate ? rng.uniform(-s.translate, s.translate) : 0;
  const dy = s.translate ? rng.uniform(-s.translate, s.translate) : 0;
  const mirror = s.flip === true && rng.uniform(0, 1) < 0.5;
  const n = C * H * W;
  if (pilScratch.length < n) pilScratch = new Uint8Array(n);
  const px = pilScratch.subarray(0, n);
  px.set(src.subarray(0, n));
  const jitterBrightness = () => blendInto(px, 0, brightness);
  const jitterContrast = () => {
    let sum = 0;
    for (let i = 0; i < n; i++) sum += px[i];
    blendInto(px, Math.trunc(sum / n + 0.5), contrast);
  };
  if (s.jitter) {
    if (contrastFirst) {
      jitterContrast();
      jitterBrightness();
    } else {
      jitterBrightness();
      jitterContrast();
    }
  }
  const cos = Math.cos(angle);
  const sin = Math.sin(angle);
  const cx = (W - 1) / 2;
  const cy = (H - 1) / 2;
  const plane = H * W;
  for (let y = 0; y < H; y++) {
    const uy = y - cy - dy;
    for (let x = 0; x < W; x++) {
      const ux = (mirror ? W - 1 - x : x) - cx - dx;
      const sx = Math.round(cos * ux + sin * uy + cx);
      const sy = Math.round(-sin * ux + cos * uy + cy);
      const inside = sx >= 0 && sy >= 0 && sx < W && sy < H;
      for (let ch = 0; ch < C; ch++) out[ch * plane + y * W + x] = inside ? px[ch * plane + sy * W + sx] : 0;
    }
  }
}
