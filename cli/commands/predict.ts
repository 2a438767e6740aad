import type { Argv, CommandModule } from 'yargs';
import { CnnlabError } from '../../common/errors.ts';
import { loadInferenceModel, openModelSession } from '../../inference/model.ts';
import { predictPixels } from '../../inference/predict.ts';
import { createDemoServer, loadServedModels } from '../../inference/server.ts';
import { prepareImage } from '../../inference/preprocess.ts';
import { createRuntime } from '../../training/runtime.ts';

interface PredictArgs {
  images: string[];
  model?: string;
  json: boolean;
  top: number;
}

const predict: CommandModule<object, PredictArgs> = {
  command: 'predict <images..>',
  describe: 'classify images (PNG, JPEG, WebP, GIF; any size; MNIST-style preparation)',
  builder: (y) =>
    y
      .positional('images', { type: 'string', array: true, demandOption: true })
      .option('model', { type: 'string', describe: 'a run folder or .onnx file (default: the newest run under runs/)' })
      .option('top', { type: 'number', default: 3, describe: 'how many classes to show' })
      .option('json', { type: 'boolean', default: false }) as Argv<PredictArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.top) || args.top < 1 || args.top > 10) throw new CnnlabError(`--top: expected 1..10, got ${args.top}`, 2);
    const model = loadInferenceModel(args.model);
    const rt = await createRuntime({ ep: 'cpu' });
    const session = await openModelSession(rt, model);
    const results: Record<string, unknown>[] = [];
    let failed = 0;
    for (const file of args.images) {
      try {
        const { pixels } = await prepareImage(file);
        const top = await predictPixels(rt, session, pixels, model.classes, args.top);
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

interface ServeArgs {
  model?: string[];
  port: number;
  host: string;
}

const serve: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'the in-browser demo: draw a digit, upload images, browse test samples, fine-tune in the browser',
  builder: (y) =>
    y
      .option('model', { type: 'string', array: true, describe: 'run folders or .onnx files (repeat for several; default: the newest run)' })
      .option('port', { type: 'number', default: 8080 })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to bind (default: this machine only)' }) as Argv<ServeArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) throw new CnnlabError(`--port: expected 0..65535, got ${args.port}`, 2);
    const models = await loadServedModels(args.model?.length ? args.model : [undefined]);
    const server = createDemoServer(models);
    await new Promise<void>((resolve, reject) => {
      server.once('error', (err: NodeJS.ErrnoException) => reject(new CnnlabError(`--port ${args.port}: cannot listen on ${args.host} (${err.code ?? err.message})`)));
      server.listen(args.port, args.host, resolve);
    });
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : args.port;
    console.log(`cnnlab demo on http://${args.host}:${port}/ serving ${models.map((m) => (m.card as { name: string }).name).join(', ')} (Ctrl-C to stop)`);
  },
};

export const serveCommands: CommandModule[] = [serve as unknown as CommandModule];
