import sharp from 'sharp';
import { CnnlabError } from '../common/errors.ts';

/** sharp refuses larger images instead of decoding gigabytes a header asks for. */
const MAX_INPUT_PIXELS = 40_000_000;
const SIZE = 28;
const BOX = 20;

export interface Prepared {
  /** 28x28 pixels in 0..1, white digit on black, as MNIST. */
  pixels: Float32Array;
  /** Whether the image was inverted (a dark digit on a light background). */
  inverted: boolean;
}

/**
 * MNIST's own preparation of a digit: grayscale; invert a light background; crop to the
 * content; fit it into 20x20 keeping the aspect ratio; centre it by mass in 28x28.
 * Works for PNG, JPEG, WebP and GIF (first frame) of any size.
 */
export async function prepareImage(input: string | Uint8Array, name = typeof input === 'string' ? input : 'image'): Promise<Prepared> {
  let raw: { data: Buffer; info: { width: number; height: number } };
  try {
    raw = await sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, pages: 1 })
      .flatten({ background: '#ffffff' })
      .grayscale()
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0];
    throw new CnnlabError(`${name}: not a readable image (${reason})`);
  }
  const { width, height } = raw.info;
  const g = raw.data;
  // The background is what the border mostly is.
  let border = 0;
  let count = 0;
  for (let x = 0; x < width; x++) {
    border += g[x] + g[(height - 1) * width + x];
    count += 2;
  }
  for (let y = 0; y < height; y++) {
    border += g[y * width] + g[y * width + width - 1];
    count += 2;
  }
  const inverted = border / count > 127;
  const v = new Uint8Array(width * height);
  for (let i = 0; i < v.length; i++) v[i] = inverted ? 255 - g[i] : g[i];
  // Content: pixels clearly above the background level.
  let bg = 0;
  for (let x = 0; x < width; x++) bg = Math.max(bg, Math.min(v[x], v[(height - 1) * width + x]));
  const level = Math.max(40, bg + 30);
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (v[y * width + x] > level) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) throw new CnnlabError(`${name}: the image is blank (no stroke stands out from the background)`);
  const cw = x1 - x0 + 1;
  const ch = y1 - y0 + 1;
  const scale = BOX / Math.max(cw, ch);
  const tw = Math.max(1, Math.round(cw * scale));
  const th = Math.max(1, Math.round(ch * scale));
  const cropped = new Uint8Array(cw * ch);
  for (let y = 0; y < ch; y++) for (let x = 0; x < cw; x++) cropped[y * cw + x] = v[(y0 + y) * width + x0 + x];
  const small = await sharp(cropped, { raw: { width: cw, height: ch, channels: 1 } })
    .resize(tw, th, { fit: 'fill', kernel: 'lanczos3' })
    .extractChannel(0) // raw single-channel input comes back as sRGB otherwise
    .raw()
    .toBuffer();
  // Centre of mass to the centre of the 28x28 field.
  let mass = 0;
  let mx = 0;
  let my = 0;
  for (let y = 0; y < th; y++) {
    for (let x = 0; x < tw; x++) {
      const m = small[y * tw + x];
      mass += m;
      mx += m * x;
      my += m * y;
    }
  }
  const cx = mass ? mx / mass : (tw - 1) / 2;
  const cy = mass ? my / mass : (th - 1) / 2;
  const ox = Math.max(0, Math.min(SIZE - tw, Math.round((SIZE - 1) / 2 - cx)));
  const oy = Math.max(0, Math.min(SIZE - th, Math.round((SIZE - 1) / 2 - cy)));
  const pixels = new Float32Array(SIZE * SIZE);
  for (let y = 0; y < th; y++) for (let x = 0; x < tw; x++) pixels[(oy + y) * SIZE + ox + x] = small[y * tw + x] / 255;
  return { pixels, inverted };
}
