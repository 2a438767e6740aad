import { writeFileSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { CnnlabError, UsageError } from '../../common/errors.ts';
import { listImageFolder, loadImageFolder, skippedSummary } from '../../datasets/folder.ts';
import { renderGrid } from '../../datasets/grid.ts';
import { isFolderRef, openDataset } from '../../datasets/open.ts';
import { DATASET_NAMES, datasetSpec, type ImageShape } from '../../datasets/registry.ts';
import { exampleAt, locate, pixelStats } from '../../datasets/sources.ts';

interface DataArgs {
  'data-dir'?: string;
  shape: string;
}

interface ShowArgs extends DataArgs {
  dataset?: string;
  split: string;
  n: number;
  offset: number;
  out: string;
}

const dataOptions = <T>(y: Argv<T>) =>
  y
    .option('data-dir', { type: 'string', describe: "a dataset's four IDX files, or image folders train/<class>/ and test/<class>/; overrides $CNNLAB_DATA_DIR" })
    .option('shape', { type: 'string', default: '1x28x28', describe: 'CxHxW an image folder is converted to (the input of the model you will train)' }) as Argv<T & DataArgs>;

/** `--shape 3x32x32`. */
function parseShape(text: string): ImageShape {
  const dims = text.split('x').map(Number);
  if (dims.length !== 3 || !dims.every((d) => Number.isInteger(d) && d >= 1 && d <= 4096) || (dims[0] !== 1 && dims[0] !== 3)) {
    throw new UsageError(`--shape: expected CxHxW with C 1 or 3 (e.g. 1x28x28, 3x32x32), got '${text}'`);
  }
  return dims as unknown as ImageShape;
}

/** `7` for digits, `9 Ankle boot` where the class has a name. */
export function classCaption(classes: readonly string[], label: number): string {
  return classes[label] === String(label) ? String(label) : `${label} ${classes[label]}`;
}

function positiveInt(value: number, flag: string): number {
  if (!Number.isInteger(value) || value < 1) throw new UsageError(`${flag}: expected a whole number >= 1, got ${value}`);
  return value;
}

/** An image folder: classes with their image counts per split, the conversion's statistics, the cache and what was skipped. */
async function describeFolder(dir: string, shape: ImageShape): Promise<void> {
  const listing = listImageFolder(dir);
  const ds = await loadImageFolder(dir, shape, { warn: () => {} });
  const count = (split: 'train' | 'test', label: number) => ds[split].labels.filter((l) => l === label).length;
  console.log(`${listing.name} — image folders in ${listing.dir}`);
  console.log(`  train:   ${ds.train.count} images, test: ${ds.test.count} images, converted to ${shape.join('x')} uint8`);
  console.log(`  norm:    mean ${ds.info.mean.toFixed(4)}, std ${ds.info.std.toFixed(4)} (measured on the converted training images)`);
  console.log(`  cache:   ${ds.cacheFile} (${ds.cached ? 'read from the cache' : 'made now'}; remade when a file is added, removed or changed)`);
  console.log(`  classes: ${listing.classes.map((c, i) => `${i} ${c} (${count('train', i)}/${count('test', i)})`).join(', ')}`);
  const skipped = skippedSummary(listing.dir, ds.skipped, listing.ignored);
  if (skipped) console.log(`  skipped: ${skipped.slice(listing.dir.length + 2)}`);
}

const list: CommandModule<object, DataArgs> = {
  command: '$0',
  describe: 'list the datasets, where each was found, counts and class names; with --data-dir DIR of image folders, that folder',
  builder: (y) => dataOptions(y),
  handler: async (args) => {
    if (args['data-dir'] && isFolderRef({ dataDir: args['data-dir'] })) return describeFolder(args['data-dir'], parseShape(args.shape));
    for (const name of DATASET_NAMES) {
      const spec = datasetSpec(name);
      let where;
      try {
        where = locate(spec, { dataDir: args['data-dir'] });
      } catch (err) {
        // A --data-dir holds one dataset; the others are looked up as usual.
        if (!(err instanceof CnnlabError)) throw err;
        where = locate(spec);
      }
      if (!where) {
        console.log(`${name}: not found (cnnlab downloads it on first use; or ${spec.packagedHint})`);
        continue;
      }
      const ds = await openDataset({ dataset: name, dataDir: where.kind === 'data-dir' ? args['data-dir'] : undefined });
      console.log(`${name} — ${spec.title}`);
      console.log(`  source:  ${ds.source.kind} ${ds.source.dir}`);
      console.log(`  train:   ${ds.train.count} images, test: ${ds.test.count} images, 28x28 uint8`);
      console.log(`  norm:    mean ${ds.info.mean.toFixed(4)}, std ${ds.info.std.toFixed(4)}${spec.mean === undefined ? ' (measured)' : ''}`);
      console.log(`  classes: ${spec.classes.map((c, i) => `${i} ${c}`).join(', ')}`);
    }
  },
};

const show: CommandModule<object, ShowArgs> = {
  command: 'show [dataset]',
  describe: 'write a labelled grid of sample images to a PNG (a built-in dataset, or --data-dir image folders)',
  builder: (y) =>
    dataOptions(y)
      .positional('dataset', { type: 'string', choices: DATASET_NAMES })
      .option('split', { type: 'string', choices: ['train', 'test'], default: 'test' })
      .option('n', { type: 'number', default: 64, describe: 'how many images' })
      .option('offset', { type: 'number', default: 0, describe: 'index of the first image' })
      .option('out', { type: 'string', default: 'grid.png', describe: 'PNG file to write' }) as Argv<ShowArgs>,
  handler: async (args) => {
    const n = positiveInt(args.n, '--n');
    const folder = args['data-dir'] !== undefined && isFolderRef({ dataDir: args['data-dir'] });
    if (!args.dataset && !folder) throw new UsageError('name a dataset (mnist, fashion-mnist, ...) or pass --data-dir DIR with image folders');
    const ds = await openDataset({ dataset: folder ? undefined : args.dataset, dataDir: args['data-dir'] }, parseShape(args.shape));
    const split = args.split === 'train' ? ds.train : ds.test;
    if (!Number.isInteger(args.offset) || args.offset < 0 || args.offset >= split.count) {
      throw new UsageError(`--offset: expected 0..${split.count - 1}, got ${args.offset}`);
    }
    const end = Math.min(split.count, args.offset + n);
    const tiles = [];
    for (let i = args.offset; i < end; i++) tiles.push({ pixels: exampleAt(split, i), shape: split.shape, caption: classCaption(ds.info.classes, split.labels[i]) });
    const png = await renderGrid(tiles, { title: `${ds.info.title}, ${args.split} ${args.offset}..${end - 1}` });
    writeFileSync(args.out, png);
    console.log(`wrote ${args.out} (${tiles.length} images)`);
  },
};

const stats: CommandModule<object, DataArgs & { dataset?: string }> = {
  command: 'stats [dataset]',
  describe: "compute the training set's pixel mean and std (the normalisation constants)",
  builder: (y) => dataOptions(y).positional('dataset', { type: 'string', choices: DATASET_NAMES }) as Argv<DataArgs & { dataset?: string }>,
  handler: async (args) => {
    const folder = args['data-dir'] !== undefined && isFolderRef({ dataDir: args['data-dir'] });
    if (!args.dataset && !folder) throw new UsageError('name a dataset (mnist, fashion-mnist, ...) or pass --data-dir DIR with image folders');
    const ds = await openDataset({ dataset: folder ? undefined : args.dataset, dataDir: args['data-dir'] }, parseShape(args.shape));
    const s = pixelStats(ds.train.images);
    console.log(`${ds.info.name} train: mean ${s.mean.toFixed(6)} std ${s.std.toFixed(6)} (${ds.train.count} images)`);
  },
};

export const datasetsCommand: CommandModule = {
  command: 'datasets',
  describe: 'list the datasets (or an image folder); show a sample grid; compute normalisation stats',
  builder: (y) => y.command(list).command(show).command(stats),
  handler: () => {},
};
