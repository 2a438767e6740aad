import sharp from 'sharp';
import type { Argv, CommandModule } from 'yargs';
import { writeFileAtomic } from '../../common/files.ts';
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
  'show-input': boolean;
}

/** The prepared 28x28 input as a PNG beside the image, 4x with hard pixel edges. */
async function writeInput(file: string, pixels: Float32Array): Promise<string> {
  const out = `${file.replace(/\.[^./\\]+$/, '')}.input.png`;
  const png = await sharp(Buffer.from(pixels.map((v) => Math.round(v * 255))), { raw: { width: 28, height: 28, channels: 1 } })
    .resize(112, 112, { kernel: 'nearest' })
    .png()
    .toBuffer();
  writeFileAtomic(out, png);
  return out;
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
        const shown = args['show-input'] ? await writeInput(file, pixels) : undefined;
        results.push({ file, top, ...(shown ? { input: shown } : {}) });
        if (!args.json) console.log(`${file}: ${top.map((t) => `${t.name} ${(100 * t.probability).toFixed(1)}%`).join('   ')}${shown ? `  (input: ${shown})` : ''}`);
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
