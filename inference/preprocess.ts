import sharp from 'sharp';
import { InputError } from '../common/errors.ts';

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

/** Images are analysed at most this large (longer side): enough for a digit, fast on any photo. */
const WORK = 256;

/** A grayscale working image. */
interface Gray {
  data: Float32Array;
  width: number;
  height: number;
}

/** The ink of an image, 0..255, light on dark: alpha where the image is transparent, else its luminance. */
async function inkSource(input: string | Uint8Array, name: string): Promise<{ gray: Gray; alphaInk: boolean; darkInk: boolean }> {
  let raw: { data: Buffer; info: { width: number; height: number; channels: number } };
  try {
    raw = await sharp(input, { limitInputPixels: MAX_INPUT_PIXELS, pages: 1 })
      .resize(WORK, WORK, { fit: 'inside', withoutEnlargement: true })
      .ensureAlpha()
      .raw()
      .toBuffer({ resolveWithObject: true });
  } catch (err) {
    const reason = (err as Error).message.split('\n')[0];
    throw new InputError(`${name}: not a readable image (${reason})`);
  }
  const { width, height, channels } = raw.info;
  const n = width * height;
  const data = new Float32Array(n);
  let transparent = 0;
  for (let i = 0; i < n; i++) if (raw.data[i * channels + channels - 1] < 250) transparent++;
  // A transparent image (a digit on nothing): its alpha is the ink.
  const alphaInk = transparent > n * 0.2;
  let opaque = 0;
  let opaqueLum = 0;
  for (let i = 0; i < n; i++) {
    const p = i * channels;
    const a = raw.data[p + channels - 1];
    const lum = 0.299 * raw.data[p] + 0.587 * raw.data[p + 1] + 0.114 * raw.data[p + 2];
    data[i] = alphaInk ? a : lum;
    if (a > 128) {
      opaque++;
      opaqueLum += lum;
    }
  }
  return { gray: { data, width, height }, alphaInk, darkInk: opaque > 0 && opaqueLum / opaque < 128 };
}

/** A running mean of radius r along rows (step 1) or columns (step w) of a w x h image. */
function boxPass(src: Float32Array, w: number, h: number, r: number, alongRows: boolean): Float32Array {
  const out = new Float32Array(w * h);
  const [lines, length] = alongRows ? [h, w] : [w, h];
  const at = (line: number, i: number) => (alongRows ? line * w + i : i * w + line);
  for (let line = 0; line < lines; line++) {
    let acc = 0;
    let cnt = 0;
    for (let i = -r; i < length; i++) {
      if (i + r < length) {
        acc += src[at(line, i + r)];
        cnt++;
      }
      if (i - r - 1 >= 0) {
        acc -= src[at(line, i - r - 1)];
        cnt--;
      }
      if (i >= 0) out[at(line, i)] = acc / cnt;
    }
  }
  return out;
}

/** A box blur of radius r, twice (close to a Gaussian): the slowly varying background. */
function blur(g: Gray, r: number): Float32Array {
  let v = g.data;
  for (let pass = 0; pass < 2; pass++) v = boxPass(boxPass(v, g.width, g.height, r, true), g.width, g.height, r, false);
  return v;
}

/** Otsu's threshold of values in 0..255: the level that best separates two classes. */
function otsu(v: Float32Array): number {
  const hist = new Float64Array(256);
  for (const x of v) hist[Math.max(0, Math.min(255, Math.round(x)))]++;
  const total = v.length;
  let sum = 0;
  for (let i = 0; i < 256; i++) sum += i * hist[i];
  let sumB = 0;
  let wB = 0;
  let best = 0;
  let level = 128;
  for (let t = 0; t < 256; t++) {
    wB += hist[t];
    if (!wB || wB === total) continue;
    sumB += t * hist[t];
    const mB = sumB / wB;
    const mF = (sum - sumB) / (total - wB);
    const between = wB * (total - wB) * (mB - mF) ** 2;
    if (between > best) {
      best = between;
      level = t;
    }
  }
  return level;
}

/** Connected components (8-neighbours) of a mask: a label per pixel (0: none) and each component's size and box. */
function components(mask: Uint8Array, w: number, h: number): { labels: Int32Array; parts: { size: number; x0: number; y0: number; x1: number; y1: number }[] } {
  const labels = new Int32Array(w * h);
  const parts: { size: number; x0: number; y0: number; x1: number; y1: number }[] = [];
  const stack: number[] = [];
  for (let start = 0; start < w * h; start++) {
    if (!mask[start] || labels[start]) continue;
    const part = { size: 0, x0: w, y0: h, x1: -1, y1: -1 };
    parts.push(part);
    labels[start] = parts.length;
    stack.push(start);
    while (stack.length) {
      const p = stack.pop()!;
      const x = p % w;
      const y = (p - x) / w;
      part.size++;
      part.x0 = Math.min(part.x0, x);
      part.x1 = Math.max(part.x1, x);
      part.y0 = Math.min(part.y0, y);
      part.y1 = Math.max(part.y1, y);
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const nx = x + dx;
          const ny = y + dy;
          if (nx < 0 || ny < 0 || nx >= w || ny >= h) continue;
          const q = ny * w + nx;
          if (mask[q] && !labels[q]) {
            labels[q] = parts.length;
            stack.push(q);
          }
        }
      }
    }
  }
  return { labels, parts };
}

/**
 * The digit's ink from a photo or a drawing, light on dark, 0..255: the background estimated
 * (a wide blur) and removed, the ink's polarity chosen (dark on light paper, or light on a dark
 * board), contrast stretched, Otsu's threshold, and only the digit's connected components kept
 * (the largest away from the border, and those near it of at least a tenth of its size; specks,
 * a sheet's edges and shadows at the border go). Returns the ink image and whether the ink was dark.
 */
function digitInk(g: Gray, alphaInk: boolean): { ink: Uint8Array; inverted: boolean } {
  const { width: w, height: h } = g;
  const n = w * h;
  let signal: Float32Array;
  let inverted = false;
  if (alphaInk) {
    signal = g.data;
  } else {
    const bg = blur(g, Math.max(4, Math.round(Math.max(w, h) / 8)));
    const dark = new Float32Array(n);
    const light = new Float32Array(n);
    for (let i = 0; i < n; i++) {
      dark[i] = Math.max(0, bg[i] - g.data[i]);
      light[i] = Math.max(0, g.data[i] - bg[i]);
    }
    // The polarity whose strongest deviations are stronger: ink stands out more than texture does.
    const top = (v: Float32Array) => Float32Array.from(v).sort()[Math.floor(n * 0.99)];
    inverted = top(dark) >= top(light);
    signal = inverted ? dark : light;
  }
  const sorted = Float32Array.from(signal).sort();
  const hi = Math.max(1e-3, sorted[Math.floor(n * 0.995)]);
  const stretched = new Float32Array(n);
  for (let i = 0; i < n; i++) stretched[i] = Math.min(255, (255 * signal[i]) / hi);
  const level = Math.max(otsu(stretched), 40);
  const mask = new Uint8Array(n);
  for (let i = 0; i < n; i++) mask[i] = stretched[i] > level ? 1 : 0;
  const { labels, parts } = components(mask, w, h);
  const touchesBorder = (p: (typeof parts)[0]) => p.x0 === 0 || p.y0 === 0 || p.x1 === w - 1 || p.y1 === h - 1;
  // Parts touching the border (a sheet's edge, a shadow, the table) are the digit only where nothing else is.
  const all = parts.map((p, i) => ({ ...p, id: i + 1 })).filter((p) => p.size >= 4);
  const inside = all.filter((p) => !touchesBorder(p));
  const candidates = inside.length ? inside : all;
  const main = candidates.reduce<(typeof candidates)[0] | undefined>((a, p) => (!a || p.size > a.size ? p : a), undefined);
  const ink = new Uint8Array(n);
  if (!main) return { ink, inverted };
  const reach = Math.max(main.x1 - main.x0, main.y1 - main.y0) * 0.6;
  const keep = new Set(
    candidates
      .filter((p) => p.id === main.id || (p.size >= main.size / 10 && p.x0 <= main.x1 + reach && p.x1 >= main.x0 - reach && p.y0 <= main.y1 + reach && p.y1 >= main.y0 - reach))
      .map((p) => p.id),
  );
  // The kept components' pixels with a one-pixel margin, so anti-aliased edges keep their grey.
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let near = false;
      for (let dy = -1; dy <= 1 && !near; dy++) for (let dx = -1; dx <= 1 && !near; dx++) {
        const nx = x + dx;
        const ny = y + dy;
        near = nx >= 0 && ny >= 0 && nx < w && ny < h && keep.has(labels[ny * w + nx]);
      }
      if (near) ink[y * w + x] = Math.round(stretched[y * w + x]);
    }
  }
  return { ink, inverted };
}

/**
 * A photo or drawing of a digit prepared as MNIST was: the ink found (see digitInk; a
 * transparent image's alpha is its ink), cropped to it, fitted into 20x20 keeping the aspect
 * ratio, centred by mass in 28x28. PNG, JPEG, WebP and GIF (first frame) of any size.
 */
export async function prepareImage(input: string | Uint8Array, name = typeof input === 'string' ? input : 'image'): Promise<Prepared> {
  const { gray, alphaInk, darkInk } = await inkSource(input, name);
  const found = digitInk(gray, alphaInk);
  const v = found.ink;
  // Inverted: the ink was darker than what surrounds it (a transparent image: its opaque pixels are dark).
  const inverted = alphaInk ? darkInk : found.inverted;
  const { width, height } = gray;
  let x0 = width;
  let y0 = height;
  let x1 = -1;
  let y1 = -1;
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (v[y * width + x] > 0) {
        x0 = Math.min(x0, x);
        x1 = Math.max(x1, x);
        y0 = Math.min(y0, y);
        y1 = Math.max(y1, y);
      }
    }
  }
  if (x1 < 0) throw new InputError(`${name}: the image is blank (no stroke stands out from the background)`);
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
