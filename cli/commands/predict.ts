import type { Argv, CommandModule } from 'yargs';
import { type ForeignArgs, foreignFromArgs, foreignOptions } from './model-options.ts';
import { predict as predictImages } from '../../training/model-api.ts';

interface PredictArgs extends ForeignArgs {
  images: string[];
  model?: string;
  json: boolean;
  top: number;
  'show-input': boolean;
}

const predict: CommandModule<object, PredictArgs> = {
  command: 'predict <images..>',
  describe: 'classify images (PNG, JPEG, WebP, GIF; any size; MNIST-style preparation)',
  builder: (y) =>
    foreignOptions(y)
      .positional('images', { type: 'string', array: true, demandOption: true })
      .option('model', { type: 'string', describe: 'a run folder or .onnx file (default: the newest run under runs/)' })
      .option('top', { type: 'number', default: 3, describe: 'how many classes to show' })
      .option('json', { type: 'boolean', default: false })
      .option('show-input', { type: 'boolean', default: false, describe: 'write what the model sees (the prepared 28x28, shown 4x) beside each image as <image>.input.png' }) as Argv<PredictArgs>,
  handler: async (args) => {
    const log = args.json ? undefined : (line: string) => console.log(line);
    const r = await predictImages(args.images, { ...foreignFromArgs(args), model: args.model, top: args.top, showInput: args['show-input'], log });
    for (const p of r.results) {
      if (args.json) break;
      if (p.error) process.stderr.write(`cnnlab: ${p.error}\n`);
      else console.log(`${p.image}: ${p.top!.map((t) => `${t.name} ${(100 * t.probability).toFixed(1)}%`).join('   ')}${p.input ? `  (input: ${p.input})` : ''}`);
    }
    if (args.json) console.log(JSON.stringify({ model: r.model, results: r.results.map(({ image, ...rest }) => ({ file: image, ...rest })) }, null, 2));
    // An image that cannot be read is a bad input file (exit 2), the others predicted all the same.
    if (r.results.some((p) => p.error)) process.exitCode = 2;
  },
};

export const predictCommands: CommandModule[] = [predict as unknown as CommandModule];
