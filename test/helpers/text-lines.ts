/**
 * An image folder of printed text lines at 48x192, the input of PaddleOCR's text-direction
 * classifier: each line drawn upright (class `0`) and turned half a turn (`180`), and with
 * `mirrored` a third class, the line flipped left to right. Fonts, sizes, positions, dark or
 * light backgrounds and a little blur vary from a fixed seed, so the pretrained model gets most
 * but not all of them right (92% of 200 test lines), which makes its accuracy a figure worth
 * comparing.
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import sharp from 'sharp';
import { Rng } from '../../common/rng.ts';

const TEXTS = ['invoice', 'total', 'amount', 'date', 'receipt', 'the quick brown fox', 'hello world', 'cnnlab 2026', 'ONNX runtime', 'page 12 of 40', 'Paris 75011', 'Tel 555-0101', 'March 14', 'Order #4821', 'subtotal 19.99', 'shipping', 'thank you', 'signature', 'name', 'address', 'SOS', 'NOON', 'ZMNW', 'pod', 'dollop', 'xo', 'ls -la', 'MWM'];
const FONTS = ['DejaVu Sans', 'DejaVu Serif', 'Liberation Sans', 'DejaVu Sans Mono'];

const TURNS: Record<string, string> = { '0': '', '180': 'rotate(180 96 24)', mirrored: 'matrix(-1 0 0 1 192 0)' };

/** Writes `root/{train,test}/<class>/<i>.png`: `perClass` lines of each split in every class. */
export async function writeTextLines(root: string, perClass: { train: number; test: number }, classes: string[] = ['0', '180'], seed = 7): Promise<void> {
  const rng = Rng.seeded(seed);
  const pick = <T>(xs: T[]) => xs[rng.int(0, xs.length - 1)];
  for (const split of ['train', 'test'] as const) {
    for (const c of classes) mkdirSync(join(root, split, c), { recursive: true });
    for (let i = 0; i < perClass[split]; i++) {
      const dark = rng.float() < 0.5;
      const ink = dark ? rng.int(200, 254) : rng.int(0, 89);
      const paper = dark ? rng.int(0, 59) : rng.int(140, 254);
      const line = `<text x="${rng.int(2, 31)}" y="${rng.int(20, 39)}" font-family="${pick(FONTS)}" font-size="${rng.int(10, 35)}" fill="rgb(${ink},${ink},${ink})">${pick(TEXTS)}</text>`;
      const blur = rng.uniform(0.3, 1.3);
      for (const c of classes) {
        const svg = `<svg width="192" height="48" xmlns="http://www.w3.org/2000/svg"><rect width="192" height="48" fill="rgb(${paper},${paper},${paper})"/><g transform="${TURNS[c]}">${line}</g></svg>`;
        await sharp(Buffer.from(svg)).blur(blur).png().toFile(join(root, split, c, `${i}.png`));
      }
    }
  }
}
