import type { Argv, CommandModule } from 'yargs';
import { DATASET_NAMES, type DatasetName } from '../../datasets/registry.ts';
import { confusionTable } from '../../inference/evaluate.ts';
import { type ForeignArgs, foreignFromArgs, foreignOptions } from './model-options.ts';
import { EP_NAMES, type EpName } from '../../runtime/ort.ts';
import { evaluate } from '../../training/model-api.ts';
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
      .option('misclassified', { type: 'string', describe: 'PNG of misclassified images (default: misclassified.png in the current folder)' })
      .option('n', { type: 'number', default: 48, describe: 'how many misclassified images to show' })
      .option('ep', { type: 'string', choices: EP_NAMES, default: 'cpu' })
      .option('json', { type: 'boolean', default: false, describe: 'print the report as JSON' }) as Argv<EvalArgs>,
  handler: async (args) => {
    // The current folder, not the model's: a user's model folder is theirs, and may not be writable.
    const misclassified = { file: args.misclassified ?? 'misclassified.png', n: args.n };
    const r = await evaluate({
      ...foreignFromArgs(args),
      model: args.model,
      dataset: args.dataset as DatasetName | undefined,
      dataDir: args['data-dir'],
      split: args.split as 'test' | 'train',
      ep: args.ep as EpName,
      misclassified,
      log: args.json ? undefined : (line) => console.log(line),
    });
    if (args.json) {
      const { model, dataset, split, count, loss, accuracy, perClass, confusion } = r;
      console.log(JSON.stringify({ model, dataset, split, count, loss, accuracy, perClass, confusion, misclassified: r.misclassified }, null, 2));
      return;
    }
    console.log(`${r.model} (${r.architecture}, ${r.trainedOn === 'unknown' ? 'not trained by cnnlab' : `trained on ${r.trainedOn}`}) on ${r.dataset} ${r.split}: ${r.count} images in ${r.seconds.toFixed(1)} s`);
    console.log(`accuracy ${(100 * r.accuracy).toFixed(2)}%   loss ${r.loss.toFixed(4)}\n`);
    console.log('per-class accuracy');
    r.classes.forEach((c, k) => console.log(`  ${classCaption(r.classes, k).padEnd(14)} ${(100 * r.perClass[k]).toFixed(2).padStart(6)}%`));
    console.log(`\nconfusion matrix\n${confusionTable(r, r.classes)}`);
    if (r.misclassified.file) console.log(`\nwrote ${r.misclassified.file} (${r.misclassified.shown} of ${r.misclassified.count} misclassified images)`);
  },
};

export const evalCommands: CommandModule[] = [evalCommand as unknown as CommandModule];
