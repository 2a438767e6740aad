/**
 * The model card: what cnnlab writes into the metadata_props of the ONNX files it makes
 * (`cnnlab.*` keys, string values) and reads back from them. Every writer and reader goes
 * through writeModelCard and readModelCard; no other file spells a key. The keys and the value
 * formats are those models trained by earlier builds carry, so they read the same.
 * Browser-safe (the demo page may import it): type imports only, besides the error class.
 */
import { InputError } from '../../common/errors.ts';
import type { ImageConversion } from '../../datasets/registry.ts';
import type { Layer } from '../dsl/layers.ts';
import type { InputRange, Normalization, OutputKind } from '../model.ts';
import type { OptimizerConfig } from '../optimizers.ts';

/** How an image file becomes the input planes, and (an imported model) the input size [H, W] it was trained at. */
export type CardImage = ImageConversion & { size?: [number, number] };

/** An imported model's input preparation, done outside its graph: pixels scaled to 0..range, then (x - mean) / std. */
export type CardPreparation = { range: InputRange } & Normalization;

/** Which training graph a file is (absent: an inference model). */
export type CardArtifact = 'features' | 'eval' | 'train_step';

/** An architecture file's layers: the list alone (a 1x28x28 input, as builds before wrote every one), or with the file's input. */
export type CardLayers = Layer[] | { input: [number, number, number]; layers: Layer[] };

/** Everything a cnnlab model's metadata says; the first six every inference model cnnlab writes carries. */
export interface ModelCard {
  /** Preset id (`partB`), `file:<name>` or an imported model's id. */
  architecture: string;
  /** The dataset it was trained on (`mnist`, `folder:shapes`). */
  dataset: string;
  classes: string[];
  /** (x - mean) / std, applied inside cnnlab's own graphs. */
  normalization: Normalization;
  /** Trainable parameter count. */
  parameters: number;
  /** The input in words (`image: float32 [N,1,28,28], pixels 0..1, ...`). */
  input: string;
  /** Where the conversion differs from RGB stretched to the input, or the model is imported. */
  image?: CardImage;
  /** An imported model's preparation (cnnlab's own models normalise inside the graph). */
  preprocess?: CardPreparation;
  /** What an imported model's output holds. */
  outputKind?: OutputKind;
  /**
   * An architecture-file model's layers, with its [C, H, W] input where that is not 1x28x28 (as
   * the file gives them; each layer's own fields are checked by architectureFromMetadata).
   */
  layers?: CardLayers;
  artifact?: CardArtifact;
  /** A features graph's cut: the value it ends at and its per-example shape. */
  features?: { cut: string; shape: number[] };
  /** A train step's optimiser. */
  optimizer?: OptimizerConfig;
  /** The run folder it was trained in. */
  run?: string;
  /** Written to 4 decimals (NaN: the split was empty). */
  testAccuracy?: number;
  valAccuracy?: number;
  /** The epoch the model was saved after. */
  epoch?: number;
  /** Where it was fine-tuned (`in the demo page`). */
  fineTuned?: string;
}

/** Every key, in one place, in the order writeModelCard writes them. */
export const CARD_KEYS = {
  architecture: 'cnnlab.architecture',
  dataset: 'cnnlab.dataset',
  classes: 'cnnlab.classes',
  normalization: 'cnnlab.normalization',
  parameters: 'cnnlab.parameters',
  input: 'cnnlab.input',
  preprocess: 'cnnlab.preprocess',
  image: 'cnnlab.image',
  outputKind: 'cnnlab.output_kind',
  layers: 'cnnlab.layers',
  artifact: 'cnnlab.artifact',
  features: 'cnnlab.features',
  optimizer: 'cnnlab.optimizer',
  run: 'cnnlab.run',
  testAccuracy: 'cnnlab.test_accuracy',
  valAccuracy: 'cnnlab.val_accuracy',
  epoch: 'cnnlab.epoch',
  fineTuned: 'cnnlab.fine_tuned',
} as const satisfies { [K in keyof ModelCard]-?: string };

/** Every key starts with it. */
const PREFIX = 'cnnlab.';

type Field = keyof ModelCard;
type Value<K extends Field> = NonNullable<ModelCard[K]>;

/** One field's value format: how it is written, what it reads as (undefined: malformed), and the format in words. */
interface FieldCodec<T> {
  expected: string;
  write(v: T): string;
  read(text: string): T | undefined;
}

const finite = (x: unknown): x is number => typeof x === 'number' && Number.isFinite(x);
const isCount = (x: unknown): x is number => Number.isInteger(x) && (x as number) >= 0;

/** JSON text as a value, undefined where it is not JSON. */
function json(text: string): unknown {
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return undefined;
  }
}

/** An object's own fields, or undefined for anything else. */
function record(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** A mean (or, `positive`, a std): a finite number, or a list of them (`minLength` at least). */
function isStat(v: unknown, positive: boolean, minLength: number): v is number | number[] {
  const ok = (x: unknown) => finite(x) && (!positive || x > 0);
  return ok(v) || (Array.isArray(v) && v.length >= minLength && v.every(ok));
}

const text: FieldCodec<string> = { expected: 'text', write: (v) => v, read: (t) => t };

/** A string that is one of `values`. */
function oneOf<T extends string>(values: readonly T[]): FieldCodec<T> {
  return { expected: values.map((v) => `"${v}"`).join(' or '), write: (v) => v, read: (t) => (values.includes(t as T) ? (t as T) : undefined) };
}

/** A JSON value that `check` accepts (and may normalise). */
function jsonOf<T>(expected: string, check: (v: unknown) => T | undefined): FieldCodec<T> {
  return { expected, write: (v) => JSON.stringify(v), read: (t) => check(json(t)) };
}

/** A whole number >= 0, written in decimal. */
const count: FieldCodec<number> = { expected: 'a whole number >= 0', write: (v) => String(v), read: (t) => (/^\d+$/.test(t) ? Number(t) : undefined) };

/** An accuracy in 0..1, written to 4 decimals; NaN (an empty split's, written `NaN`) reads back as NaN. */
const accuracy: FieldCodec<number> = {
  expected: 'an accuracy between 0 and 1',
  write: (v) => v.toFixed(4),
  read: (t) => {
    if (t === 'NaN') return NaN;
    const v = t.trim() === '' ? NaN : Number(t);
    return v >= 0 && v <= 1 ? v : undefined;
  },
};

const isLayerList = (v: unknown): v is Layer[] => Array.isArray(v) && v.every((l) => typeof record(l)?.kind === 'string');

function readLayers(v: unknown): CardLayers | undefined {
  if (isLayerList(v)) return v;
  const o = record(v);
  const input = o?.input;
  return o && isLayerList(o.layers) && Array.isArray(input) && input.length === 3 && input.every((d) => Number.isInteger(d) && d > 0) ? { input: input as [number, number, number], layers: o.layers } : undefined;
}

function readImage(v: unknown): CardImage | undefined {
  const c = record(v);
  if (!c) return undefined;
  const size = Array.isArray(c.size) && c.size.length === 2 && c.size.every((d) => Number.isInteger(d) && d > 0) ? (c.size as [number, number]) : undefined;
  const ok = [undefined, 'rgb', 'bgr'].includes(c.channelOrder as string) && [undefined, 'stretch', 'crop'].includes(c.resize as string) && (c.size === undefined || size);
  // The defaults (rgb, stretch) are left out, as a conversion leaves them out everywhere.
  return ok ? { ...(c.channelOrder === 'bgr' ? { channelOrder: 'bgr' } : {}), ...(c.resize === 'crop' ? { resize: 'crop' } : {}), ...(size ? { size } : {}) } : undefined;
}

function readPreprocess(v: unknown): CardPreparation | undefined {
  const p = record(v);
  return p && (p.range === 1 || p.range === 255) && isStat(p.mean, false, 2) && isStat(p.std, true, 2) ? { range: p.range, mean: p.mean, std: p.std } : undefined;
}

function readNormalization(v: unknown): Normalization | undefined {
  const n = record(v);
  return n && isStat(n.mean, false, 1) && isStat(n.std, false, 1) ? { mean: n.mean, std: n.std } : undefined;
}

function readOptimizer(v: unknown): OptimizerConfig | undefined {
  const o = record(v);
  const ok = o && typeof o.name === 'string' && typeof o.momentum === 'boolean' && typeof o.nesterov === 'boolean' && [o.weightDecay, o.beta2, o.eps, o.alpha].every(finite);
  return ok ? (o as unknown as OptimizerConfig) : undefined;
}

function readFeatures(v: unknown): ModelCard['features'] {
  const f = record(v);
  return f && typeof f.cut === 'string' && Array.isArray(f.shape) && f.shape.every((d) => Number.isInteger(d) && d > 0) ? { cut: f.cut, shape: f.shape as number[] } : undefined;
}

const CODECS: { [K in Field]-?: FieldCodec<Value<K>> } = {
  architecture: text,
  dataset: text,
  classes: jsonOf('a JSON list of class names', (v) => (Array.isArray(v) && v.every((c) => typeof c === 'string') ? v : undefined)),
  normalization: jsonOf('{"mean":..,"std":..} (numbers or lists of them)', readNormalization),
  parameters: count,
  input: text,
  image: jsonOf('{"channelOrder":"rgb"|"bgr","resize":"stretch"|"crop","size":[H,W]}', readImage),
  preprocess: jsonOf('{"range":1|255,"mean":..,"std":..} (mean and std numbers or lists of them)', readPreprocess),
  outputKind: oneOf(['logits', 'probabilities', 'log-probabilities']),
  layers: jsonOf('a JSON list of layers ({"kind":..}), or {"input":[C,H,W],"layers":[..]}', readLayers),
  artifact: oneOf(['features', 'eval', 'train_step']),
  features: jsonOf('{"cut":"<value name>","shape":[..]}', readFeatures),
  optimizer: jsonOf('an optimiser as JSON ({"name":..,"weightDecay":..,"momentum":..,"nesterov":..,"beta2":..,"eps":..,"alpha":..})', readOptimizer),
  run: text,
  testAccuracy: accuracy,
  valAccuracy: accuracy,
  epoch: count,
  fineTuned: text,
};

const FIELDS = Object.keys(CARD_KEYS) as Field[];

/** The metadata_props of a card (of a whole model, or the few fields another file carries): fields left undefined are left out. */
export function writeModelCard(card: Partial<ModelCard>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const f of FIELDS) {
    const v = card[f];
    if (v !== undefined) out[CARD_KEYS[f]] = (CODECS[f] as FieldCodec<typeof v>).write(v);
  }
  return out;
}

/** What a run adds to its saved model: the run folder, its test (and, where split off, validation) accuracy and the epoch. */
export function runCardEntries(r: { run: string; testAccuracy: number; valAccuracy?: number; epoch: number }): Record<string, string> {
  return writeModelCard({ run: r.run, testAccuracy: r.testAccuracy, valAccuracy: r.valAccuracy, epoch: r.epoch });
}

/** A value as an error line shows it: quoted, cut at 60 characters. */
function shown(value: string): string {
  return JSON.stringify(value.length > 60 ? `${value.slice(0, 60)}...` : value);
}

/**
 * The card a model's metadata holds: each field whose key is present, checked (a model cnnlab
 * did not make has none). A malformed value is an InputError of one line naming the file, the
 * key, what was expected and what was found.
 */
export function readModelCard(metadata: Record<string, string>, file: string): Partial<ModelCard> {
  const card: Partial<Record<Field, unknown>> = {};
  for (const f of FIELDS) {
    const t = metadata[CARD_KEYS[f]];
    if (t === undefined) continue;
    const codec = CODECS[f];
    const v = codec.read(t);
    if (v === undefined) throw new InputError(`${file}: metadata ${CARD_KEYS[f]} is not ${codec.expected}; found ${shown(t)}`);
    card[f] = v;
  }
  return card as Partial<ModelCard>;
}

/** The card's entries of a metadata map, as they are (unknown `cnnlab.` keys too), without those of `omit`. */
export function cardEntries(metadata: Record<string, string>, omit: readonly Field[] = []): Record<string, string> {
  const dropped = new Set<string>(omit.map((f) => CARD_KEYS[f]));
  return Object.fromEntries(Object.entries(metadata).filter(([k]) => k.startsWith(PREFIX) && !dropped.has(k)));
}
