/** What the page holds: the models, the one shown, the image on screen and its prediction, and both kinds of fine-tuning. */
import type { ModelCard } from './api.ts';
import { $ } from './dom.ts';
import type { ImageShape } from './images.ts';
import type { ort } from './ort.ts';
import type { Trainer } from './steps.ts';

/** The whole model's fine-tuning: its train step and the training images it replays. */
export interface WholeTune extends Trainer {
  model: string;
  replay: { labels: number[]; pixels: Uint8Array };
  /** Whether the weights differ from the served ones (predictions then use them). */
  tuned: boolean;
}

/** One example of a new class: its pixels as bytes and its features (computed once, when added). */
export interface HeadExample {
  bytes: Uint8Array;
  label: number;
  features: Float32Array;
}

export interface HeadState {
  /** The new classes' names (2 or more to train). */
  names: string[];
  examples: HeadExample[];
  losses: number[];
  /** The features graph of the current model (the frozen backbone). */
  features: ort.InferenceSession | null;
  /** The trained head (its class count fixed when it was loaded). */
  tune: (Trainer & { classes: number; trained: boolean }) | null;
}

export interface PageState {
  models: ModelCard[];
  current: ModelCard | null;
  /** The current model's inference graph: `image` [N, C, H, W] 0..1 in, `probabilities` out. */
  session: ort.InferenceSession | null;
  /** The image on screen as the model reads it, and its shape. */
  pixels: Float32Array | null;
  shape: ImageShape | null;
  probabilities: number[] | null;
  /** The names of the classes `probabilities` are of (the model's, or the new head's). */
  shownClasses: string[];
  /** The mean colour of the camera frame last predicted (null when the image is not a frame). */
  frameMean: [number, number, number] | null;
  /** Whole-model fine-tuning: the user's examples (drawings, uploads) and the losses so far. */
  examples: { pixels: Float32Array; label: number }[];
  losses: number[];
  tune: WholeTune | null;
  busy: boolean;
  /** Fine-tune without replaying training images (the browser test measures the difference). */
  noReplay: boolean;
  head: HeadState;
  /** Predicts the image on screen again (after the weights changed). */
  refresh: () => Promise<void>;
}

export const state: PageState = {
  models: [],
  current: null,
  session: null,
  pixels: null,
  shape: null,
  probabilities: null,
  shownClasses: [],
  frameMean: null,
  examples: [],
  losses: [],
  tune: null,
  busy: false,
  noReplay: false,
  head: { names: [], examples: [], losses: [], features: null, tune: null },
  refresh: async () => {},
};

/** The model shown (the page selects one before anything else runs). */
export function current(): ModelCard {
  if (!state.current) throw new Error('no model selected yet');
  return state.current;
}

/** Runs a training press unless another is running, its button disabled meanwhile; an error goes to `report`. */
export async function exclusively(button: string, report: (text: string) => void, work: () => Promise<void>): Promise<void> {
  if (state.busy) return;
  state.busy = true;
  $<HTMLButtonElement>(button).disabled = true;
  try {
    await work();
  } catch (err) {
    report((err as Error).message);
  } finally {
    state.busy = false;
    $<HTMLButtonElement>(button).disabled = false;
  }
}
