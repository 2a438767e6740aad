import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { writeFileAtomic } from '../../common/files.ts';
import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { misclassifiedTiles, renderGrid } from '../../datasets/grid.ts';
import { isFolderRef, openDataset } from '../../datasets/open.ts';
import { DATASET_NAMES, isDatasetName } from '../../datasets/registry.ts';
import { confusionTable, evaluateInference } from '../../inference/evaluate.ts';
import { describePreparation, type LoadedModel, loadInferenceModel, openModelSession } from '../../inference/model.ts';
import { type ForeignArgs, foreignFromArgs, foreignOptions } from './model-options.ts';
import { createRuntime, EP_NAMES, type EpName } from '../../runtime/ort.ts';
import { classCaption } from './datasets.ts';

interface EvalArgs extends ForeignArgs {
  model?: string;
  dataset?: string;
  'data-dir'?: string;
  split: string;
  misclassified?: string;
  n: number;
  ep: string;
  json: boolean;
}

/** The image folders a run trained on, where its model sits in its run folder and the folders are still there. */
function recordedFolder(model: LoadedModel): string | undefined {
  if (!model.dataset.startsWith('folder:')) return undefined;
  const config = join(dirname(model.path), 'config.json');
  try {
    const dir = (JSON.parse(readFileSync(config, 'utf8')) as { flags?: { 'data-dir'?: unknown } }).flags?.['data-dir'];
    return typeof dir === 'string' && existsSync(dir) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** Three planes with the first and last swapped: BGR shown as RGB in the misclassified grid. */
function planesSwapped(pixels: Uint8Array): Uint8Array {
  const n = pixels.length / 3;
  const out = pixels.slice();
  out.set(pixels.subarray(2 * n), 0);
  out.set(pixels.subarray(0, n), 2 * n);
  return out;
}

const evalCommand: CommandModule<object, EvalArgs> = {
  command: 'eval [model]',
  describe: 'evaluate a run or model.onnx: accuracy, loss, per-class accuracy, confusion matrix, misclassified grid',
  builder: (y) =>
    foreignOptions(y)
      .positional('model', { type: 'string', describe: 'a run folder or an .onnx file (default: the newest run under runs/)' })
      .option('dataset', { type: 'string', choices: DATASET_NAMES, describe: 'dataset (default: the one the model was trained on)' })
      .option('data-dir', { type: 'string', describe: 'the dataset’s IDX files, or image folders train/<class>/ and test/<class>/ (converted to the model’s input)' })
      .option('split', { type: 'string', choices: ['test', 'train'], default: 'test' })
      .option('misclassified', { type: 'string', describe: 'PNG of misclassified images (default: misclassified.png in the current folder)' })
      .option('n', { type: 'number', default: 48, describe: 'how many misclassified images to show' })
      .option('ep', { type: 'string', choices: EP_NAMES, default: 'cpu' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }) as Argv<EvalArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.n) || args.n < 0) throw new UsageError(`--n: expected a whole number >= 0, got ${args.n}`);
    const model = loadInferenceModel(args.model, foreignFromArgs(args));
    const said = describePreparation(model);
    if (said && !args.json) console.log(said);
    const dataDir = args['data-dir'] ?? (args.dataset ? undefined : recordedFolder(model));
    const folder = dataDir !== undefined && isFolderRef({ dataDir });
    if (!folder && !args.dataset && model.dataset.startsWith('folder:')) throw new UsageError(`${model.path}: trained on image folders (${model.dataset}); pass them with --data-dir DIR`);
    if (folder && !args['data-dir'] && !args.json) console.log(`the run's images: ${dataDir}`);
    const data = await openDataset({ dataset: folder ? undefined : (args.dataset ?? (isDatasetName(model.dataset) ? model.dataset : 'mnist')), dataDir }, model.input.shape, { conversion: model.conversion });
    const dataset = data.info.name;
    if (data.info.classes.length !== model.classes.length) throw new UsageError(`${model.path}: scores ${model.classes.length} classes; ${dataset} has ${data.info.classes.length}`);
    const split = args.split === 'train' ? data.train : data.test;
    const rt = await createRuntime({ ep: args.ep as EpName });
    const session = await openModelSession(rt, model);
    const t0 = performance.now();
    const r = await evaluateInference(rt, session, model, split);
    const classes = args.classes ? model.classes : data.info.classes;
    const seconds = (performance.now() - t0) / 1000;
    const tiles = misclassifiedTiles(split, r.predicted, classes, args.n).map((t) => (model.conversion.channelOrder === 'bgr' ? { ...t, pixels: planesSwapped(t.pixels) } : t));
    // The current folder, not the model's: a user's model folder is theirs, and may not be writable.
    const png = args.misclassified ?? 'misclassified.png';
    const wrong = r.count - r.confusion.reduce((a, row, k) => a + row[k], 0);
    if (tiles.length) {
      writeFileAtomic(png, await renderGrid(tiles, { columns: 8, title: `${model.architecture} on ${dataset} ${args.split}: misclassified (true → predicted)` }));
    }
    if (args.json) {
      const misclassified = { count: wrong, shown: tiles.length, ...(tiles.length ? { file: png } : {}) };
      console.log(JSON.stringify({ model: model.path, dataset, split: args.split, count: r.count, loss: r.loss, accuracy: r.accuracy, perClass: r.perClass, confusion: r.confusion, misclassified }, null, 2));
      return;
    }
    console.log(`${model.path} (${model.architecture}, ${model.dataset === 'unknown' ? 'not trained by cnnlab' : `trained on ${model.dataset}`}) on ${dataset} ${args.split}: ${r.count} images in ${seconds.toFixed(1)} s`);
    console.log(`accuracy ${(100 * r.accuracy).toFixed(2)}%   loss ${r.loss.toFixed(4)}\n`);
    console.log('per-class accuracy');
    classes.forEach((c, k) => console.log(`  ${classCaption(classes, k).padEnd(14)} ${(100 * r.perClass[k]).toFixed(2).padStart(6)}%`));
    console.log(`\nconfusion matrix\n${confusionTable(r, classes)}`);
    if (tiles.length) console.log(`\nwrote ${png} (${tiles.length} of ${wrong} misclassified images)`);
  },
};

export const evalCommands: CommandModule[] = [evalCommand as unknown as CommandModule];
