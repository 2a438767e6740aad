/** Images as the model reads them: planar [C, H, W] pixels, grey or RGB (or BGR, the model's own order). */
import { byteImageDims, elementCount } from '../../graph-builder/model.ts';

export type ImageShape = [number, number, number];

/** Pixels per image of this shape. */
export const pixelCount = (shape: ImageShape) => elementCount(shape);

/** The uint8 layout the train step and the features graph take for one image (byteImageDims: [H, W] grey, else [C, H, W]). */
export const byteDims = (shape: ImageShape) => byteImageDims({ inputShape: shape });

/** Pixels 0..1 as the 0..255 bytes the train step and features graph take. */
export function toBytes(pixels: ArrayLike<number>): Uint8Array {
  return Uint8Array.from(pixels as ArrayLike<number>, (v) => Math.max(0, Math.min(255, Math.round(v * 255))));
}

/**
 * Draws planar pixels (`scale` 1 for 0..1, 255 for bytes) onto `canvas`, `size` pixels on its
 * longer side with hard pixel edges; BGR planes shown in their true colours.
 */
export function drawPlanes(canvas: HTMLCanvasElement, pixels: ArrayLike<number>, [c, h, w]: ImageShape, scale: number, bgr = false, size = Math.max(56, 2 * Math.max(h, w))): void {
  const img = new ImageData(w, h);
  for (let p = 0; p < h * w; p++) {
    for (let k = 0; k < 3; k++) {
      const ch = c === 1 ? 0 : bgr ? 2 - k : k;
      img.data[p * 4 + k] = Math.round((pixels[ch * h * w + p] * 255) / scale);
    }
    img.data[p * 4 + 3] = 255;
  }
  const tmp = document.createElement('canvas');
  [tmp.width, tmp.height] = [w, h];
  tmp.getContext('2d')!.putImageData(img, 0, 0);
  const k = size / Math.max(h, w);
  [canvas.width, canvas.height] = [Math.round(w * k), Math.round(h * k)];
  const g = canvas.getContext('2d')!;
  g.imageSmoothingEnabled = false;
  g.drawImage(tmp, 0, 0, canvas.width, canvas.height);
}

/** The mean red, green and blue (0..255) of an image on a canvas: what the tests read of a camera frame. */
export function meanColour(canvas: HTMLCanvasElement): [number, number, number] {
  const { data } = canvas.getContext('2d')!.getImageData(0, 0, canvas.width, canvas.height);
  const sum = [0, 0, 0];
  for (let i = 0; i < data.length; i += 4) for (let k = 0; k < 3; k++) sum[k] += data[i + k];
  const n = data.length / 4;
  return [sum[0] / n, sum[1] / n, sum[2] / n];
}
