import sharp from 'sharp';
import type { Argv, CommandModule } from 'yargs';
import { writeFileAtomic } from '../../common/files.ts';
import { CnnlabError, InputError, UsageError } from '../../common/errors.ts';
import { describePreparation, type LoadedModel, loadInferenceModel, openModelSession } from '../../inference/model.ts';
import { imageToPlanes } from '../../datasets/folder.ts';
import { FOLDER_PREFIX } from '../../datasets/registry.ts';
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

/** The prepared input as a PNG beside the image, 4x with hard pixel edges (BGR planes shown in their true colours). */
async function writeInput(file: string, pixels: Float32Array, [c, h, w]: readonly [number, number, number], bgr = false): Promise<string> {
  const out = `${file.replace(/\.[^./\\]+$/, '')}.input.png`;
  const interleaved = Buffer.alloc(c * h * w);
  for (let ch = 0; ch < c; ch++) for (let p = 0; p < h * w; p++) interleaved[p * c + (bgr ? c - 1 - ch : ch)] = Math.round(pixels[ch * h * w + p] * 255);
  const png = await sharp(interleaved, { raw: { width: w, height: h, channels: c as 1 | 3 } })
    .resize(4 * w, 4 * h, { kernel: 'nearest' })
    .png()
    .toBuffer();
  writeFileAtomic(out, png);
  return out;
}

/**
 * What the model sees of an image file: MNIST's preparation of a photographed digit for a
 * 1x28x28 model trained on the built-in datasets; for a model trained on image folders (or
 * taking another input, or given a conversion), the same conversion its training images went
 * through: its channel order and resizing.
 */
async function prepareFor(model: LoadedModel, file: string): Promise<{ pixels: Float32Array; shape: readonly [number, number, number] }> {
  const shape = model.input.shape;
  const converted = model.conversion.channelOrder !== undefined || model.conversion.resize !== undefined;
  if (model.dataset.startsWith(FOLDER_PREFIX) || shape.join('x') !== '1x28x28' || converted) {
    let planes: Uint8Array;
    try {
      planes = await imageToPlanes(file, shape, model.conversion);
    } catch (err) {
      if (err instanceof CnnlabError) throw err;
      throw new InputError(`${file}: not an image sharp can read (${(err as Error).message.split('\n')[0]})`);
    }
    return { pixels: Float32Array.from(planes, (v) => v / 255), shape };
  }
  return { pixels: (await prepareImage(file)).pixels, shape: [1, 28, 28] };
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
    if (!Number.isInteger(args.top) || args.top < 1 || args.top > 10) throw new UsageError(`--top: expected 1..10, got ${args.top}`);
    const model = loadInferenceModel(args.model, foreignFromArgs(args));
    const said = describePreparation(model);
    if (said && !args.json) console.log(said);
    const rt = await createRuntime({ ep: 'cpu' });
    const session = await openModelSession(rt, model);
    const results: Record<string, unknown>[] = [];
    let failed = 0;
    for (const file of args.images) {
      try {
        const { pixels, shape } = await prepareFor(model, file);
        const top = await predictPixels(rt, session, model, pixels, Math.min(args.top, model.classes.length), shape);
        const shown = args['show-input'] ? await writeInput(file, pixels, shape, model.conversion.channelOrder === 'bgr') : undefined;
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
    // An image that cannot be read is a bad input file (exit 2), the others predicted all the same.
    if (failed) process.exitCode = 2;
  },
};

export const predictCommands: CommandModule[] = [predict as unknown as CommandModule];
