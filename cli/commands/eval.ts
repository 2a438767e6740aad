import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { misclassifiedTiles, renderGrid } from '../../datasets/grid.ts';
import { isFolderRef, openDataset } from '../../datasets/open.ts';
import { DATASET_NAMES, isDatasetName } from '../../datasets/registry.ts';
import { confusionTable, evaluateInference } from '../../inference/evaluate.ts';
import { describePreparation, loadInferenceModel, openModelSession } from '../../inference/model.ts';
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

const evalCommand: CommandModule<object, EvalArgs> = {
  command: 'eval [model]',
  describe: 'evaluate a run or model.onnx: accuracy, loss, per-class accuracy, confusion matrix, misclassified grid',
  builder: (y) =>
    foreignOptions(y)
      .positional('model', { type: 'string', describe: 'a run folder or an .onnx file (default: the newest run under runs/)' })
      .option('dataset', { type: 'string', choices: DATASET_NAMES, describe: 'dataset (default: the one the model was trained on)' })
      .option('data-dir', { type: 'string', describe: 'the dataset’s IDX files, or image folders train/<class>/ and test/<class>/ (converted to the model’s input)' })
      .option('split', { type: 'string', choices: ['test', 'train'], default: 'test' })
      .option('misclassified', { type: 'string', describe: 'PNG of misclassified images (default: misclassified.png beside the model)' })
      .option('n', { type: 'number', default: 48, describe: 'how many misclassified images to show' })
      .option('ep', { type: 'string', choices: EP_NAMES, default: 'cpu' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }) as Argv<EvalArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.n) || args.n < 0) throw new UsageError(`--n: expected a whole number >= 0, got ${args.n}`);
    const model = loadInferenceModel(args.model, foreignFromArgs(args));
    const said = describePreparation(model);
    if (said && !args.json) console.log(said);
    const folder = args['data-dir'] !== undefined && isFolderRef({ dataDir: args['data-dir'] });
    if (!folder && !args.dataset && model.dataset.startsWith('folder:')) throw new UsageError(`${model.path}: trained on image folders (${model.dataset}); pass them with --data-dir DIR`);
    const data = await openDataset({ dataset: folder ? undefined : (args.dataset ?? (isDatasetName(model.dataset) ? model.dataset : 'mnist')), dataDir: args['data-dir'] }, model.input.shape);
    const dataset = data.info.name;
    if (data.info.classes.length !== model.classes.length) throw new UsageError(`${model.path}: scores ${model.classes.length} classes; ${dataset} has ${data.info.classes.length}`);
    const split = args.split === 'train' ? data.train : data.test;
    const rt = await createRuntime({ ep: args.ep as EpName });
    const session = await openModelSession(rt, model);
    const t0 = performance.now();
    const r = await evaluateInference(rt, session, model, split);
    const classes = args.classes ? model.classes : data.info.classes;
    const seconds = (performance.now() - t0) / 1000;
    const tiles = misclassifiedTiles(split, r.predicted, classes, args.n);
    const png = args.misclassified ?? join(dirname(model.path), 'misclassified.png');
    if (tiles.length) {
      writeFileSync(png, await renderGrid(tiles, { columns: 8, title: `${model.architecture} on ${dataset} ${args.split}: misclassified (true → predicted)` }));
    }
    if (args.json) {
      console.log(JSON.stringify({ model: model.path, dataset, split: args.split, count: r.count, loss: r.loss, accuracy: r.accuracy, perClass: r.perClass, confusion: r.confusion }, null, 2));
      return;
    }
    console.log(`${model.path} (${model.architecture}, ${model.dataset === 'unknown' ? 'not trained by cnnlab' : `trained on ${model.dataset}`}) on ${dataset} ${args.split}: ${r.count} images in ${seconds.toFixed(1)} s`);
    console.log(`accuracy ${(100 * r.accuracy).toFixed(2)}%   loss ${r.loss.toFixed(4)}\n`);
    console.log('per-class accuracy');
    classes.forEach((c, k) => console.log(`  ${classCaption(classes, k).padEnd(14)} ${(100 * r.perClass[k]).toFixed(2).padStart(6)}%`));
    console.log(`\nconfusion matrix\n${confusionTable(r, classes)}`);
    if (tiles.length) console.log(`\nwrote ${png} (${tiles.length} misclassified images)`);
  },
};

export const evalCommands: CommandModule[] = [evalCommand as unknown as CommandModule];
