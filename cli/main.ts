import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CnnlabError } from '../common/errors.ts';
import { commands } from './commands/index.ts';

function fail(message: string, exitCode: number): never {
  process.stderr.write(`cnnlab: ${message}\n`);
  process.exit(exitCode);
}

export async function main(argv: string[]): Promise<void> {
  const cli = yargs(argv)
    .scriptName('cnnlab')
    .usage('$0 <command> [options]\n\nDefine small CNNs, train them as ONNX graphs with onnxruntime, and serve them in the browser.')
    .strict()
    .strictCommands()
    .demandCommand(1, 'name a command; see cnnlab --help')
    .recommendCommands()
    .help()
    .alias('h', 'help')
    .version()
    .wrap(Math.min(110, process.stdout.columns ?? 100))
    .fail((msg, err) => {
      if (err instanceof CnnlabError) fail(err.message, err.exitCode);
      if (err) throw err;
      fail(msg.split('\n')[0], 2);
    });
  for (const command of commands) cli.command(command);
  try {
    await cli.parseAsync();
  } catch (err) {
    if (err instanceof CnnlabError) fail(err.message, err.exitCode);
    // The machine refused (disk full, permissions, a vanished file): one line, not a stack trace.
    const e = err as NodeJS.ErrnoException;
    if (typeof e?.code === 'string' && typeof e.syscall === 'string') fail(`${e.path ?? e.syscall}: ${e.code} (${e.message.split('\n')[0]})`, 1);
    throw err;
  }
}

await main(hideBin(process.argv));
