import type { Argv, CommandModule } from 'yargs';
import { CnnlabError } from '../../common/errors.ts';
import { describePreparation, loadInferenceModel, openModelSession } from '../../inference/model.ts';
import { type ForeignArgs, foreignFromArgs, foreignOptions } from './model-options.ts';
import { predictPixels } from '../../inference/predict.ts';
import { prepareImage } from '../../inference/preprocess.ts';
import { createRuntime } from '../../runtime/ort.ts';

interface PredictArgs extends ForeignArgs {
  images: string[];
  model?: string;
  json: boolean;
  top: number;
}

const predict: CommandModule<object, PredictArgs> = {
  command: 'predict <images..>',
  describe: 'classify images (PNG, JPEG, WebP, GIF; any size; MNIST-style preparation)',
  builder: (y) =>
    foreignOptions(y)
      .positional('images', { type: 'string', array: true, demandOption: true })
      .option('model', { type: 'string', describe: 'a run folder or .onnx file (default: the newest run under runs/)' })
      .option('top', { type: 'number', default: 3, describe: 'how many classes to show' })
      .option('json', { type: 'boolean', default: false }) as Argv<PredictArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.top) || args.top < 1 || args.top > 10) throw new CnnlabError(`--top: expected 1..10, got ${args.top}`, 2);
    const model = loadInferenceModel(args.model, foreignFromArgs(args));
    const said = describePreparation(model);
    if (said && !args.json) console.log(said);
    const rt = await createRuntime({ ep: 'cpu' });
    const session = await openModelSession(rt, model);
    const results: Record<string, unknown>[] = [];
    let failed = 0;
    for (const file of args.images) {
      try {
        const { pixels } = await prepareImage(file);
        const top = await predictPixels(rt, session, model, pixels, Math.min(args.top, model.classes.length));
        results.push({ file, top });
        if (!args.json) console.log(`${file}: ${top.map((t) => `${t.name} ${(100 * t.probability).toFixed(1)}%`).join('   ')}`);
      } catch (err) {
        if (!(err instanceof CnnlabError)) throw err;
        failed++;
        results.push({ file, error: err.message });
        if (!args.json) process.stderr.write(`cnnlab: ${err.message}\n`);
      }
    }
    if (args.json) console.log(JSON.stringify({ model: model.path, results }, null, 2));
    if (failed) process.exitCode = 1;
  },
};

export const predictCommands: CommandModule[] = [predict as unknown as CommandModule];
