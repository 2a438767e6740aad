import type { Argv, CommandModule } from 'yargs';
import { CnnlabError } from '../../common/errors.ts';
import { pageBundle } from '../../inference/page-bundle.ts';
import { createDemoServer, loadServedModels } from '../../inference/server.ts';
import { type ForeignArgs, foreignFromArgs, foreignOptions } from './model-options.ts';

interface ServeArgs extends ForeignArgs {
  model?: string[];
  port: number;
  host: string;
}

const serve: CommandModule<object, ServeArgs> = {
  command: 'serve',
  describe: 'the in-browser demo: draw a digit, upload images or use the camera, browse test samples, fine-tune (new classes too) in the browser',
  builder: (y) =>
    foreignOptions(y)
      .option('model', { type: 'string', array: true, describe: 'run folders or .onnx files (repeat for several; default: the newest run)' })
      .option('port', { type: 'number', default: 8080 })
      .option('host', { type: 'string', default: '127.0.0.1', describe: 'address to bind (default: this machine only)' }) as Argv<ServeArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args.port) || args.port < 0 || args.port > 65535) throw new CnnlabError(`--port: expected 0..65535, got ${args.port}`, 2);
    const models = await loadServedModels(args.model?.length ? args.model : [undefined], foreignFromArgs(args));
    // The page's script is bundled before the server listens: a page that cannot be built is an error now, not a blank page later.
    await pageBundle();
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
