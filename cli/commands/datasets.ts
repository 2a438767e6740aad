import { writeFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { renderGrid } from '../../datasets/grid.ts';
import { DATASET_NAMES, type DatasetName, datasetSpec } from '../../datasets/registry.ts';
import { loadDataset, locate, PIXELS, pixelStats } from '../../datasets/sources.ts';

interface ShowArgs {
  dataset: string;
  split: string;
  n: number;
  offset: number;
  out: string;
  'data-dir'?: string;
}

const dataDirOption = {
  type: 'string',
  describe: 'folder holding the four IDX files (raw or .gz); overrides $CNNLAB_DATA_DIR',
} as const;

/** `7` for digits, `9 Ankle boot` where the class has a name. */
export function classCaption(classes: readonly string[], label: number): string {
  return classes[label] === String(label) ? String(label) : `${label} ${classes[label]}`;
}

function positiveInt(value: number, flag: string): number {
  if (!Number.isInteger(value) || value < 1) throw new UsageError(`${flag}: expected a whole number >= 1, got ${value}`);
  return value;
}

const list: CommandModule<object, { 'data-dir'?: string }> = {
  command: '$0',
  describe: 'list the datasets, where each was found, counts and class names',
  builder: (y) => y.option('data-dir', dataDirOption) as Argv<{ 'data-dir'?: string }>,
  handler: async (args) => {
    for (const name of DATASET_NAMES) {
      const spec = datasetSpec(name);
      const where = locate(spec, { dataDir: args['data-dir'] });
      if (!where) {
        console.log(`${name}: not found (cnnlab downloads it on first use; or ${spec.packagedHint})`);
        continue;
      }
      const ds = await loadDataset(name, { dataDir: args['data-dir'] });
      console.log(`${name} — ${spec.title}`);
      console.log(`  source:  ${ds.source.kind} ${ds.source.dir}`);
      console.log(`  train:   ${ds.train.count} images, test: ${ds.test.count} images, 28x28 uint8`);
      console.log(`  norm:    mean ${spec.mean.toFixed(4)}, std ${spec.std.toFixed(4)}`);
      console.log(`  classes: ${spec.classes.map((c, i) => `${i} ${c}`).join(', ')}`);
    }
  },
};

const show: CommandModule<object, ShowArgs> = {
  command: 'show <dataset>',
  describe: 'write a labelled grid of sample images to a PNG',
  builder: (y) =>
    y
      .positional('dataset', { type: 'string', choices: DATASET_NAMES, demandOption: true })
      .option('split', { type: 'string', choices: ['train', 'test'], default: 'test' })
      .option('n', { type: 'number', default: 64, describe: 'how many images' })
      .option('offset', { type: 'number', default: 0, describe: 'index of the first image' })
      .option('out', { type: 'string', default: 'grid.png', describe: 'PNG file to write' })
      .option('data-dir', dataDirOption) as Argv<ShowArgs>,
  handler: async (args) => {
    const n = positiveInt(args.n, '--n');
    const ds = await loadDataset(args.dataset as DatasetName, { dataDir: args['data-dir'] });
    const split = args.split === 'train' ? ds.train : ds.test;
    if (!Number.isInteger(args.offset) || args.offset < 0 || args.offset >= split.count) {
      throw new UsageError(`--offset: expected 0..${split.count - 1}, got ${args.offset}`);
    }
    const end = Math.min(split.count, args.offset + n);
    const tiles = [];
    for (let i = args.offset; i < end; i++) {
      const label = split.labels[i];
      tiles.push({ pixels: split.images.subarray(i * PIXELS, (i + 1) * PIXELS), caption: classCaption(ds.spec.classes, label) });
    }
    const png = await renderGrid(tiles, { title: `${ds.spec.title}, ${args.split} ${args.offset}..${end - 1}` });
    writeFileSync(args.out, png);
    console.log(`wrote ${args.out} (${tiles.length} images)`);
  },
};

const stats: CommandModule<object, { dataset: string; 'data-dir'?: string }> = {
  command: 'stats <dataset>',
  describe: "compute the training set's pixel mean and std (the normalisation constants)",
  builder: (y) =>
    y
      .positional('dataset', { type: 'string', choices: DATASET_NAMES, demandOption: true })
      .option('data-dir', dataDirOption) as Argv<{ dataset: string; 'data-dir'?: string }>,
  handler: async (args) => {
    const ds = await loadDataset(args.dataset as DatasetName, { dataDir: args['data-dir'] });
    const s = pixelStats(ds.train.images);
    console.log(`${ds.spec.name} train: mean ${s.mean.toFixed(6)} std ${s.std.toFixed(6)} (${ds.train.count} images)`);
  },
};

export const datasetsCommand: CommandModule = {
  command: 'datasets',
  describe: 'list the datasets; show a sample grid; compute normalisation stats',
  builder: (y) => y.command(list).command(show).command(stats),
  handler: () => {},
};
