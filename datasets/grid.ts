import sharp from 'sharp';
import type { ImageShape } from './registry.ts';
import { exampleAt, exampleSize, IDX_SHAPE, type Split } from './sources.ts';

export interface Tile {
  /** Planar pixels [C, H, W], 0..255 (grey or RGB). */
  pixels: Uint8Array;
  /** Default 1x28x28. */
  shape?: ImageShape;
  caption: string;
  /** Caption drawn in red (e.g. a misclassified example). */
  alert?: boolean;
}

export interface GridOptions {
  columns?: number;
  /** Pixel upscaling factor for each image. */
  scale?: number;
  title?: string;
}

/** Tiles of the first `limit` examples of a split whose prediction is wrong, captioned `true → predicted`. */
export function misclassifiedTiles(split: Split, predicted: ArrayLike<number>, classes: readonly string[], limit: number): Tile[] {
  const tiles: Tile[] = [];
  for (let i = 0; i < split.count && tiles.length < limit; i++) {
    if (predicted[i] === split.labels[i]) continue;
    tiles.push({ pixels: exampleAt(split, i), shape: split.shape, caption: `${classes[split.labels[i]].slice(0, 9)} → ${classes[predicted[i]].slice(0, 9)}`, alert: true });
  }
  return tiles;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', "'": '&apos;', '"': '&quot;' })[c]!);
}

/**
 * A labelled grid of images as PNG bytes: pixels drawn white-on-black as in the dataset,
 * captions rendered from SVG text by sharp (librsvg), so they stay crisp at any scale.
 */
export async function renderGrid(tiles: Tile[], opts: GridOptions = {}): Promise<Buffer> {
  const scale = opts.scale ?? 4;
  const columns = Math.max(1, Math.min(opts.columns ?? 8, tiles.length));
  const rows = Math.max(1, Math.ceil(tiles.length / columns));
  const shapes = tiles.map((t) => t.shape ?? IDX_SHAPE);
  const img = Math.max(1, ...shapes.map((sh) => Math.max(sh[1], sh[2]))) * scale;
  const captionH = 22;
  const pad = 8;
  const cellW = Math.max(img, 120) + pad;
  const cellH = img + captionH + pad;
  const titleH = opts.title ? 34 : 0;
  const width = columns * cellW + pad;
  const height = titleH + rows * cellH + pad;
  const rgb = new Uint8Array(width * height * 3).fill(255);
  tiles.forEach((tile, t) => {
    const [c, h, w] = shapes[t];
    if (tile.pixels.length !== exampleSize(shapes[t])) throw new Error(`tile ${t}: expected ${exampleSize(shapes[t])} pixels (${shapes[t].join('x')}), got ${tile.pixels.length}`);
    const x0 = pad + (t % columns) * cellW + Math.floor((cellW - pad - w * scale) / 2);
    const y0 = titleH + pad + Math.floor(t / columns) * cellH;
    for (let y = 0; y < h * scale; y++) {
      for (let x = 0; x < w * scale; x++) {
        const p = Math.floor(y / scale) * w + Math.floor(x / scale);
        const o = ((y0 + y) * width + x0 + x) * 3;
        for (let ch = 0; ch < 3; ch++) rgb[o + ch] = tile.pixels[Math.min(ch, c - 1) * h * w + p];
      }
    }
  });
  const texts = tiles.map((tile, t) => {
    const cx = pad + (t % columns) * cellW + (cellW - pad) / 2;
    const cy = titleH + pad + Math.floor(t / columns) * cellH + img + 16;
    const fill = tile.alert ? '#c00000' : '#111111';
    return `<text x="${cx}" y="${cy}" text-anchor="middle" fill="${fill}">${escapeXml(tile.caption)}</text>`;
  });
  const title = opts.title
    ? `<text x="${pad}" y="24" font-size="18" font-weight="bold" fill="#111111">${escapeXml(opts.title)}</text>`
    : '';
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="DejaVu Sans, sans-serif" font-size="13">${title}${texts.join('')}</svg>`;
  return sharp(rgb, { raw: { width, height, channels: 3 } })
    .composite([{ input: Buffer.from(svg), top: 0, left: 0 }])
    .png()
    .toBuffer();
}
