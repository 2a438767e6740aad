/**
 * Photo-like pictures of digits, made here: a digit rendered in DejaVu Sans onto shaded paper
 * with texture and noise (uneven lighting), in dark, pencil-grey or light-on-dark ink, blurred,
 * rotated, on a sheet that does not fill the frame, or alone on a transparent background.
 */
import sharp from 'sharp';
import { Rng } from '../../common/rng.ts';

export const PHOTO_KINDS = ['shaded paper', 'pencil grey', 'chalk on a board', 'blurred and rotated', 'sheet on a table', 'transparent'] as const;
export type PhotoKind = (typeof PHOTO_KINDS)[number];

const W = 240;
const H = 240;

/** A background of W x H: a lighting gradient plus per-pixel noise and a coarse texture. */
function background(rng: Rng, from: number, to: number, noise: number): Buffer {
  const out = Buffer.alloc(W * H * 3);
  const angle = rng.uniform(0, Math.PI * 2);
  const [cx, cy] = [Math.cos(angle), Math.sin(angle)];
  const texture = Array.from({ length: 64 }, () => rng.uniform(-noise, noise));
  for (let y = 0; y < H; y++) {
    for (let x = 0; x < W; x++) {
      const t = 0.5 + ((x / W - 0.5) * cx + (y / H - 0.5) * cy);
      const v = from + (to - from) * t + texture[((x >> 5) * 8 + (y >> 5)) % 64] + rng.uniform(-noise, noise);
      out.fill(Math.max(0, Math.min(255, Math.round(v))), (y * W + x) * 3, (y * W + x) * 3 + 3);
    }
  }
  return out;
}

const text = (digit: number, fill: string, o: { size?: number; x?: number; y?: number; rotate?: number; opacity?: number } = {}) => {
  const size = o.size ?? 150;
  const x = o.x ?? W / 2;
  const y = o.y ?? H / 2 + size * 0.36;
  return Buffer.from(
    `<svg width="${W}" height="${H}" xmlns="http://www.w3.org/2000/svg"><text x="${x}" y="${y}" font-family="DejaVu Sans" font-size="${size}" text-anchor="middle" fill="${fill}" fill-opacity="${o.opacity ?? 1}" transform="rotate(${o.rotate ?? 0} ${W / 2} ${H / 2})">${digit}</text></svg>`,
  );
};

/** One picture of `digit` of the given kind, as PNG (JPEG for the blurred photo). */
export async function photo(digit: number, kind: PhotoKind, seed: number): Promise<Buffer> {
  const rng = Rng.seeded(seed);
  const raw = (bg: Buffer) => sharp(bg, { raw: { width: W, height: H, channels: 3 } });
  switch (kind) {
    case 'shaded paper':
      return raw(background(rng, 235, 150, 12)).composite([{ input: text(digit, '#1e1e28') }]).png().toBuffer();
    case 'pencil grey':
      return raw(background(rng, 230, 190, 8)).composite([{ input: text(digit, '#7a7a7a', { size: 120 }) }]).png().toBuffer();
    case 'chalk on a board':
      return raw(background(rng, 40, 75, 10)).composite([{ input: text(digit, '#e8e8e8', { opacity: 0.85 }) }]).png().toBuffer();
    case 'blurred and rotated':
      return raw(background(rng, 225, 170, 10))
        .composite([{ input: text(digit, '#202020', { rotate: rng.uniform(-12, 12) }) }])
        .blur(2)
        .jpeg({ quality: 70 })
        .toBuffer();
    case 'sheet on a table': {
      // A dark table around a lighter sheet holding a smaller digit off-centre.
      const table = background(rng, 70, 40, 6);
      const sheet = background(rng, 235, 195, 6);
      for (let y = 30; y < 220; y++) for (let x = 20; x < 200; x++) table.fill(sheet[(y * W + x) * 3], (y * W + x) * 3, (y * W + x) * 3 + 3);
      return raw(table).composite([{ input: text(digit, '#222', { size: 95, x: 105, y: 160 }) }]).png().toBuffer();
    }
    case 'transparent':
      return sharp({ create: { width: W, height: H, channels: 4, background: { r: 0, g: 0, b: 0, alpha: 0 } } }).composite([{ input: text(digit, '#ffffff') }]).png().toBuffer();
  }
}
