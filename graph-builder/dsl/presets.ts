import { UsageError } from '../../common/errors.ts';
import type { DatasetName, ImageConversion } from '../../datasets/registry.ts';
import type { InputRange, Normalization } from '../model.ts';
import {
  avgPool2d,
  batchNorm2d,
  conv2d,
  dropout,
  flatten,
  type Layer,
  linear,
  logSoftmax,
  maxPool2d,
  type Sequential,
  relu,
  sequential,
} from './layers.ts';


/** The training settings a preset's seed used; every one can be overridden by a flag. */
export interface Recipe {
  dataset: DatasetName;
  /** An optimiser of training/optimizers' table (test/optimizers.test.ts checks every preset's). */
  optimizer: string;
  lr: number;
  momentum: number;
  weightDecay: number;
  batch: number;
  epochs: number;
  /** A schedule of training/schedule.ts's table (test/training.test.ts checks every preset's). */
  schedule: string;
  /** 'dataset': the training set's own mean/std; or fixed constants. */
  normalize: 'dataset' | Normalization;
  shuffle: boolean;
  /** The value a white pixel has at the model's input (default 1: pixels 0..1). */
  inputRange?: InputRange;
  /** How image files become its input planes (channel order, resizing), where not the default (a model cnnlab trained records it). */
  conversion?: ImageConversion;
  /** Random rotation (degrees), translation (pixels) and brightness/contrast jitter, or none. */
  augment?: { rotate: number; translate: number; jitter: number; flip?: boolean; pil?: boolean; erase?: number };
  /** Label smoothing of the loss's target (PyTorch's CrossEntropyLoss label_smoothing), default 0. */
  labelSmoothing?: number;
  /** OneCycle settings (PyTorch's OneCycleLR). */
  onecycle?: { pctStart: number; divFactor: number; finalDivFactor: number; momentumRange: [number, number] };
}

export type PresetOptionValue = number | string | boolean;
export type PresetOptions = Record<string, PresetOptionValue>;

export interface OptionSpec {
  describe: string;
  default: PresetOptionValue;
  /** Accepted values where they are a closed set. */
  choices?: readonly PresetOptionValue[];
}

export interface Preset {
  name: string;
  description: string;
  /** The course experiment it reproduces: 000 NTNU, 001 EVA session 5, 002 MADS Fashion-MNIST, 003 EVA step by step, 004 JHU; 'ours' where cnnlab's own (docs/reproducing.md). */
  seed: string;
  recipe: Recipe;
  options: Record<string, OptionSpec>;
  build: (opts: PresetOptions) => Sequential;
}

const ntnuRecipe = (dataset: DatasetName): Recipe => ({
  dataset,
  optimizer: 'adam',
  lr: 1e-3,
  momentum: 0,
  weightDecay: 0,
  batch: 600,
  epochs: 5,
  schedule: 'constant',
  normalize: 'dataset',
  shuffle: false,
});

const MNIST_NORM = { mean: 0.1307, std: 0.3081 };

const evaStepRecipe: Recipe = {
  dataset: 'mnist',
  optimizer: 'sgd',
  lr: 0.01,
  momentum: 0.9,
  weightDecay: 0,
  batch: 128,
  epochs: 15,
  schedule: 'constant',
  normalize: MNIST_NORM,
  shuffle: true,
};

/** eva-best's seed: SGD, OneCycle to 0.017 over 15 epochs of batch 128, its transforms as torchvision ran them. */
const evaBestRecipe: Recipe = {
  dataset: 'mnist',
  optimizer: 'sgd',
  lr: 0.017,
  momentum: 0.9,
  weightDecay: 0,
  batch: 128,
  epochs: 15,
  schedule: 'onecycle',
  normalize: MNIST_NORM,
  shuffle: true,
  // The seed's transforms: ColorJitter(brightness 0.4, contrast 0.4) then RandomRotation(5), on PIL images.
  augment: { rotate: 5, translate: 0, jitter: 0.4, pil: true },
  onecycle: { pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4, momentumRange: [0.85, 0.95] },
};

/** conv(k, no padding, no bias) → ReLU, the unit the EVA presets are made of. */
function cr(inC: number, outC: number, k = 3): Layer[] {
  return [conv2d(inC, outC, k, { bias: false }), relu()];
}

/** conv → BatchNorm → ReLU (→ Dropout), the unit of eva-best. */
function cbr(inC: number, outC: number, k: number, p: number): Layer[] {
  const layers: Layer[] = [conv2d(inC, outC, k, { bias: false }), batchNorm2d(outC), relu()];
  if (p > 0) layers.push(dropout(p));
  return layers;
}

/** 3x3 conv with padding 1 (size kept) → BatchNorm → ReLU, the unit of fashion-best. */
function cbrPadded(inC: number, outC: number): Layer[] {
  return [conv2d(inC, outC, 3, { padding: 1, bias: false }), batchNorm2d(outC), relu()];
}

function num(opts: PresetOptions, key: string): number {
  return opts[key] as number;
}

export const PRESETS: Record<string, Preset> = {
  baseline: {
    name: 'baseline',
    description: 'NTNU example: one 5x5 conv, max pool, linear',
    seed: '000',
    recipe: ntnuRecipe('mnist'),
    options: {},
    build: () => sequential(conv2d(1, 32, 5, { padding: 2 }), maxPool2d(2), flatten(), linear(6272, 10)),
  },
  partA: {
    name: 'partA',
    description: 'NTNU part A: two 5x5 convs with max pools, linear',
    seed: '000',
    recipe: ntnuRecipe('mnist'),
    options: {},
    build: () =>
      sequential(conv2d(1, 32, 5, { padding: 2 }), maxPool2d(2), conv2d(32, 64, 5, { padding: 2 }), maxPool2d(2), flatten(), linear(3136, 10)),
  },
  partB: {
    name: 'partB',
    description: 'NTNU part B: part A with a 1024-wide hidden linear layer',
    seed: '000',
    recipe: ntnuRecipe('mnist'),
    options: {},
    build: () =>
      sequential(
        conv2d(1, 32, 5, { padding: 2 }),
        maxPool2d(2),
        conv2d(32, 64, 5, { padding: 2 }),
        maxPool2d(2),
        flatten(),
        linear(3136, 1024),
        linear(1024, 10),
      ),
  },
  partC: {
    name: 'partC',
    description: 'NTNU part C: part B with ReLU and Dropout(0.3)',
    seed: '000',
    recipe: ntnuRecipe('mnist'),
    options: {},
    build: () =>
      sequential(
        conv2d(1, 32, 5, { padding: 2 }),
        relu(),
        dropout(0.3),
        maxPool2d(2),
        conv2d(32, 64, 5, { padding: 2 }),
        relu(),
        maxPool2d(2),
        flatten(),
        linear(3136, 1024),
        linear(1024, 10),
      ),
  },
  partD: {
    name: 'partD',
    description: 'NTNU part D (Fashion-MNIST): two convs with ReLU and Dropout(0.2)',
    seed: '000',
    recipe: ntnuRecipe('fashion-mnist'),
    options: {},
    build: () =>
      sequential(
        conv2d(1, 32, 5, { padding: 2 }),
        maxPool2d(2),
        relu(),
        dropout(0.2),
        conv2d(32, 64, 5, { padding: 2 }),
        relu(),
        maxPool2d(2),
        flatten(),
        linear(3136, 10),
      ),
  },
  'eva-step1': {
    name: 'eva-step1',
    description: 'EVA step 1: nine bias-free convs, 13,312 parameters',
    seed: '001',
    recipe: evaStepRecipe,
    options: {},
    build: () =>
      sequential(cr(1, 12), cr(12, 12), cr(12, 24), maxPool2d(2), cr(24, 12, 1), cr(12, 12), cr(12, 24), cr(24, 10, 1), conv2d(10, 10, 7, { bias: false }), flatten(), logSoftmax()),
  },
  'eva-step2': {
    name: 'eva-step2',
    description: 'EVA step 2: step 1 with the 7x7 conv replaced by global average pooling, 8,412 parameters',
    seed: '001',
    recipe: evaStepRecipe,
    options: {},
    build: () =>
      sequential(cr(1, 12), cr(12, 12), cr(12, 24), maxPool2d(2), cr(24, 12, 1), cr(12, 12), cr(12, 24), cr(24, 10, 1), avgPool2d(7), flatten(), logSoftmax()),
  },
  'eva-step3': {
    name: 'eva-step3',
    description: 'EVA step 3: max pool after two convs, 7,216 parameters',
    seed: '001',
    recipe: evaStepRecipe,
    options: {},
    build: () =>
      sequential(cr(1, 12), cr(12, 24), cr(24, 12, 1), maxPool2d(2), cr(12, 12), cr(12, 24), cr(24, 10, 1), cr(10, 10, 1), avgPool2d(8), flatten(), logSoftmax()),
  },
  'eva-best': {
    name: 'eva-best',
    description: 'EVA best: BatchNorm + Dropout, 7,496 parameters, 99.56% in 15 epochs',
    seed: '003',
    recipe: evaBestRecipe,
    options: { dropout: { describe: 'dropout rate after each block', default: 0.025 } },
    build: (o) => {
      const p = num(o, 'dropout');
      return sequential(
        cbr(1, 8, 3, p),
        cbr(8, 16, 3, p),
        maxPool2d(2),
        cbr(16, 8, 1, 0),
        cbr(8, 12, 3, p),
        cbr(12, 16, 3, p),
        cbr(16, 20, 3, p),
        avgPool2d(6),
        cbr(20, 16, 1, p),
        conv2d(16, 10, 1, { bias: false }),
        flatten(),
        logSoftmax(),
      );
    },
  },
  'fashion-best': {
    name: 'fashion-best',
    description: 'ours for Fashion-MNIST: two VGG-style BatchNorm stages (32, 64 channels) and one linear layer, 96,554 parameters',
    seed: 'ours',
    recipe: {
      dataset: 'fashion-mnist',
      optimizer: 'sgd',
      lr: 0.05,
      momentum: 0.9,
      weightDecay: 5e-4,
      batch: 128,
      // 30 epochs and label smoothing 0.1: 94.12% (seed 0); 20 epochs without it gave 93.76%,
      // 30 without it 93.91%, 30 with random erasing 0.5 instead 93.88% (docs/accuracy.md).
      epochs: 30,
      labelSmoothing: 0.1,
      schedule: 'onecycle',
      normalize: 'dataset',
      shuffle: true,
      augment: { rotate: 0, translate: 1, jitter: 0, flip: true },
      onecycle: { pctStart: 0.25, divFactor: 25, finalDivFactor: 1e4, momentumRange: [0.85, 0.95] },
    },
    options: { dropout: { describe: 'dropout rate after each stage (0: none)', default: 0 } },
    build: (o) => {
      const p = num(o, 'dropout');
      const stage = (inC: number, outC: number): Layer[] => [...cbrPadded(inC, outC), ...cbrPadded(outC, outC), maxPool2d(2), ...(p > 0 ? [dropout(p)] : [])];
      return sequential(stage(1, 32), stage(32, 64), flatten(), linear(64 * 7 * 7, 10), logSoftmax());
    },
  },
  'jhu-net': {
    name: 'jhu-net',
    description: 'JHU course net: two 5x5 convs, two linear layers, with the seed-004 variants as options',
    seed: '004',
    recipe: {
      dataset: 'mnist',
      optimizer: 'sgd',
      lr: 0.01,
      momentum: 0.5,
      weightDecay: 0,
      batch: 256,
      epochs: 10,
      schedule: 'constant',
      normalize: MNIST_NORM,
      shuffle: true,
    },
    options: {
      width: { describe: 'channel and hidden-width multiplier (seed: 0.5, 1, 2)', default: 1 },
      dropout: { describe: 'dropout rate before the last linear layer', default: 0.5 },
      bn: {
        describe: "BatchNorm after conv1: 'none', 'bn' (BatchNorm), 'bn-dropout' (Dropout after it), 'dropout-bn' (BatchNorm below the Dropout)",
        default: 'none',
        choices: ['none', 'bn', 'bn-dropout', 'dropout-bn'],
      },
      convDropout: { describe: "dropout rate of the conv1 Dropout in 'bn-dropout' and 'dropout-bn'", default: 0.2 },
      extraConv: { describe: 'one extra 3x3 conv (20 -> 30 channels at width 1, padding 1, no pool) after conv2', default: false },
      fc2: { describe: 'keep the second linear layer (false: Linear(320, 10) alone)', default: true },
    },
    build: (o) => {
      const w = num(o, 'width');
      const c1 = Math.round(10 * w);
      const c2 = Math.round(20 * w);
      const c3 = Math.round(30 * w);
      const hidden = Math.round(50 * w);
      const layers: Layer[] = [conv2d(1, c1, 5)];
      const bn = o.bn as string;
      const pc = num(o, 'convDropout');
      if (bn === 'bn') layers.push(batchNorm2d(c1));
      if (bn === 'bn-dropout') layers.push(batchNorm2d(c1), dropout(pc));
      if (bn === 'dropout-bn') layers.push(dropout(pc), batchNorm2d(c1));
      layers.push(maxPool2d(2), relu(), conv2d(c1, c2, 5), maxPool2d(2), relu());
      let channels = c2;
      if (o.extraConv) {
        layers.push(conv2d(c2, c3, 3, { padding: 1 }), relu());
        channels = c3;
      }
      const features = channels * 16;
      layers.push(flatten());
      if (o.fc2) layers.push(linear(features, hidden), relu(), dropout(num(o, 'dropout')), linear(hidden, 10));
      else layers.push(linear(features, 10));
      layers.push(logSoftmax());
      return sequential(layers);
    },
  },
  'mnist-8k': {
    name: 'mnist-8k',
    description: "ours: eva-best's plan, widths found by cnnlab search, 7,962 parameters (every width an option; 8,000 or more is refused)",
    seed: 'ours',
    // eva-best's recipe with the peak the search chose (0.08, the top of its range: 0.12 measured
    // lower) and a little more augmentation; docs/accuracy.md has the search and the seeds.
    recipe: { ...evaBestRecipe, lr: 0.08, augment: { rotate: 7, translate: 1, jitter: 0.4, pil: true } },
    options: {
      c1: { describe: 'channels of the first 3x3 conv', default: 10 },
      c2: { describe: 'channels of the second 3x3 conv', default: 14 },
      t: { describe: 'channels of the 1x1 transition after the max pool (0: none)', default: 12 },
      c3: { describe: 'channels of the third 3x3 conv', default: 14 },
      c4: { describe: 'channels of the fourth 3x3 conv', default: 16 },
      c5: { describe: 'channels of the fifth 3x3 conv, before global average pooling', default: 16 },
      pool: { describe: 'the 3x3 conv (1-4) the max pool and the transition follow (2: 28 -> 26 -> 24, pooled to 12, -> 10 -> 8 -> 6)', default: 2 },
      head: { describe: 'channels of the 1x1 conv between the pooling and the 10 scores (0: none)', default: 16 },
      dropout: { describe: 'dropout rate after each 3x3 block', default: 0 },
    },
    build: (o) => {
      const p = num(o, 'dropout');
      const [t, pool, head] = ['t', 'pool', 'head'].map((k) => num(o, k));
      const widths = ['c1', 'c2', 'c3', 'c4', 'c5'].map((k) => num(o, k));
      if (![1, 2, 3, 4].includes(pool)) throw new UsageError(`mnist-8k: pool=${pool}: expected the number of the 3x3 conv the max pool follows, 1 to 4`);
      // Unpadded 3x3 convs take 2 off the side, the pool halves it: the size global pooling sees.
      let size = 28;
      let inC = 1;
      const layers: Layer[] = [];
      widths.forEach((c, i) => {
        layers.push(...cbr(inC, c, 3, p));
        size -= 2;
        inC = c;
        if (i + 1 === pool) {
          layers.push(maxPool2d(2));
          size = Math.floor(size / 2);
          if (t > 0) layers.push(...cbr(inC, t, 1, 0));
          inC = t > 0 ? t : inC;
        }
      });
      layers.push(avgPool2d(size));
      if (head > 0) layers.push(...cbr(inC, head, 1, p));
      layers.push(conv2d(head > 0 ? head : inC, 10, 1, { bias: false }), flatten(), logSoftmax());
      const seq = sequential(layers);
      // Weights of the bias-free convs plus BatchNorm's scale and shift: the budget is the preset's point.
      const count = layers.reduce((a, l) => a + (l.kind === 'conv2d' ? l.kernel * l.kernel * l.inChannels * l.outChannels : l.kind === 'batchNorm2d' ? 2 * l.channels : 0), 0);
      if (count >= 8000) throw new UsageError(`mnist-8k: these widths make ${count.toLocaleString('en-US')} parameters; the preset stays under 8,000`);
      return seq;
    },
  },
  mads: {
    name: 'mads',
    description: 'MADS search family mads(filters, kernel, layers): conv blocks with MaxPool(3), two linear layers',
    seed: '002',
    recipe: {
      dataset: 'fashion-mnist',
      optimizer: 'adam',
      lr: 1e-3,
      momentum: 0,
      weightDecay: 1e-5,
      batch: 64,
      epochs: 3,
      schedule: 'constant',
      normalize: 'dataset',
      shuffle: true,
    },
    options: {
      filters: { describe: 'channels of every conv (search: 16..128 step 8)', default: 64 },
      kernel: { describe: 'conv kernel size, padding 1 (search: 2..5)', default: 3 },
      layers: { describe: 'conv blocks after the first (search: 1..10)', default: 3 },
    },
    build: (o) => {
      const h = num(o, 'filters');
      const k = num(o, 'kernel');
      const n = num(o, 'layers');
      const block = (inC: number): Layer[] => [conv2d(inC, h, k, { padding: 1 }), relu(), conv2d(h, h, k, { padding: 1 }), relu()];
      const layers: Layer[] = block(1);
      // Each conv maps size s to s + 3 - k; MaxPool(3) follows blocks 0, 2, ... while the map is >= 3 wide.
      let size = 28 + 2 * (3 - k);
      for (let i = 0; i < n; i++) {
        layers.push(...block(h), relu());
        size += 2 * (3 - k);
        if (i % 2 === 0 && size >= 3) {
          layers.push(maxPool2d(3));
          size = Math.floor(size / 3);
        }
      }
      layers.push(flatten(), linear(h * Math.max(size, 0) ** 2, h), relu(), linear(h, 10));
      return sequential(layers);
    },
  },
};

export const PRESET_NAMES = Object.keys(PRESETS);

function parseOptionValue(preset: Preset, key: string, raw: string): PresetOptionValue {
  const spec = preset.options[key];
  if (!spec) {
    const known = Object.keys(preset.options);
    throw new UsageError(`${preset.name}: unknown option '${key}'; ${known.length ? `expected one of ${known.join(', ')}` : 'it takes no options'}`);
  }
  let value: PresetOptionValue;
  if (typeof spec.default === 'number') {
    value = Number(raw);
    if (raw.trim() === '' || !Number.isFinite(value)) throw new UsageError(`${preset.name}: option ${key} expects a number, got '${raw}'`);
  } else if (typeof spec.default === 'boolean') {
    if (!['true', 'false', '1', '0'].includes(raw)) throw new UsageError(`${preset.name}: option ${key} expects true or false, got '${raw}'`);
    value = raw === 'true' || raw === '1';
  } else {
    value = raw;
  }
  if (spec.choices && !spec.choices.includes(value)) {
    throw new UsageError(`${preset.name}: option ${key} expects one of ${spec.choices.join(', ')}, got '${raw}'`);
  }
  return value;
}

export interface ResolvedPreset {
  preset: Preset;
  options: PresetOptions;
  /** Canonical spelling, e.g. `jhu-net:width=2,bn=bn` (only options that differ from defaults). */
  id: string;
  model: Sequential;
}

/**
 * Resolves `name` or `name:key=value,key=value` (e.g. `mads:filters=88,kernel=3,layers=4`),
 * overlaid with `overrides` (from flags or a sweep).
 */
export function resolvePreset(spec: string, overrides: Record<string, string> = {}): ResolvedPreset {
  const [name, rest] = spec.split(/:(.*)/s, 2);
  const preset = PRESETS[name];
  if (!preset) throw new UsageError(`unknown architecture '${name}'; expected one of ${PRESET_NAMES.join(', ')} (or --arch-file)`);
  const options: PresetOptions = Object.fromEntries(Object.entries(preset.options).map(([k, o]) => [k, o.default]));
  const pairs: [string, string][] = [];
  if (rest) {
    for (const part of rest.split(',')) {
      const eq = part.indexOf('=');
      if (eq < 1) throw new UsageError(`${name}: option '${part}' must be key=value`);
      pairs.push([part.slice(0, eq).trim(), part.slice(eq + 1).trim()]);
    }
  }
  pairs.push(...Object.entries(overrides));
  for (const [k, v] of pairs) options[k] = parseOptionValue(preset, k, v);
  const changed = Object.entries(options).filter(([k, v]) => v !== preset.options[k].default);
  const id = changed.length ? `${name}:${changed.map(([k, v]) => `${k}=${v}`).join(',')}` : name;
  return { preset, options, id, model: preset.build(options) };
}
