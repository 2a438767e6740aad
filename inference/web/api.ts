/**
 * What the demo server answers and the page reads: inference/server.ts writes these, the page
 * (bundled for the browser) reads them. Types and constants only.
 */

/** A new head takes this many classes at most. */
export const MAX_HEAD_CLASSES = 20;

/** One served model, as GET /api/models lists it. */
export interface ModelCard {
  id: string;
  name: string;
  architecture: string;
  dataset: string;
  classes: string[];
  parameters: number;
  testAccuracy: number | null;
  file: string;
  /** [C, H, W] of the image its inference graph takes (`image`, planar pixels 0..1). */
  inputShape: [number, number, number];
  /** Planes in BGR order (the model's own channel order): the page shows them flipped back. */
  bgr: boolean;
  /** A digit model (1x28x28, MNIST-style preparation): the page offers the drawing pad. */
  drawing: boolean;
  /** Test images the gallery shows (0 where the model's data does not fit its input). */
  samples: number;
  /** The whole model fine-tunes in the page (a rebuildable model with training images to replay). */
  fineTuning: boolean;
  /** New classes on the frozen backbone: true, or why not. */
  headTuning: true | string;
}

/** Labelled images: uint8 planes [count, C, H, W], base64 (GET samples, replay). */
export interface LabelledImages {
  labels: number[];
  pixels: string;
}

/** An image prepared as the model reads it (POST prepare): planar pixels 0..1 of `shape`. */
export type Prepared = { pixels: number[]; shape: [number, number, number] } | { error: string };
