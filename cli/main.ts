import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { CnnlabError, UsageError } from '../common/errors.ts';
import { expectedNumber, type FlagSpec, TRAIN_FLAGS } from '../training/flags.ts';
import { commands } from './commands/index.ts';

/** yargs' multi-line messages as one line; a bad choice names the flag and the accepted values. */
function oneLine(message: string): string {
  const choice = /Argument: ([\w-]+), Given: (.+), Choices: (.+)/.exec(message);
  if (choice) return `--${choice[1]}: expected one of ${choice[3].replace(/"/g, '')}, got ${choice[2]}`;
  return message.split('\n').map((l) => l.trim()).filter(Boolean).join(' ');
}

/**
 * A number or string flag given without a value (`--epochs` at the end, or before another flag)
 * is an error; yargs would otherwise leave it unset and run with the default.
 */
function checkValues(raw: string[], options: { number: string[]; string: string[] }): void {
  const valued = new Set([...options.number, ...options.string]);
  for (let i = 0; i < raw.length; i++) {
    const token = raw[i];
    if (token === '--') break;
    if (!token.startsWith('--') || token.includes('=')) continue;
    const name = token.slice(2);
    const next = raw[i + 1];
    if (valued.has(name) && (next === undefined || (next.startsWith('-') && Number.isNaN(Number(next))))) throw new UsageError(`--${name}: expected a value after it`);
  }
}

/**
 * A flag given twice takes its last value, as in most command-line tools. yargs makes an array
 * of a repeated string flag and *adds up* a repeated number flag (`--epochs 1.5 --epochs 1`
 * ran 2.5 epochs), so both are read again from the last occurrence. Array options (--vary) collect.
 */
function lastWins(raw: string[], args: Record<string, unknown>, options: { array: string[]; number: string[] }): void {
  const arrays = new Set(options.array);
  const numbers = new Set(options.number);
  const camel = (k: string) => k.replace(/-([a-z])/g, (_, c: string) => c.toUpperCase());
  for (const [key, value] of Object.entries(args)) {
    if (key === '_' || arrays.has(key)) continue;
    if (Array.isArray(value)) args[key] = value[value.length - 1];
    if (!numbers.has(key)) continue;
    const at = raw.map((t, i) => (t === `--${key}` || t.startsWith(`--${key}=`) ? i : -1)).filter((i) => i >= 0);
    if (at.length < 2) continue;
    const last = raw[at[at.length - 1]];
    const text = last.includes('=') ? last.slice(last.indexOf('=') + 1) : raw[at[at.length - 1] + 1];
    args[key] = Number(text);
    args[camel(key)] = Number(text);
  }
}

/** The text the user gave a flag, the last time it was given (`--lr abc` or `--lr=abc`). */
function typed(raw: string[], key: string): string | undefined {
  let text: string | undefined;
  for (let i = 0; i < raw.length && raw[i] !== '--'; i++) {
    if (raw[i] === `--${key}`) text = raw[i + 1];
    else if (raw[i].startsWith(`--${key}=`)) text = raw[i].slice(key.length + 3);
  }
  return text;
}

/**
 * A number flag given something that is not a number is one line echoing it: yargs reads
 * `--lr abc` as NaN, which the range checks would otherwise print.
 */
function checkNumbers(raw: string[], args: Record<string, unknown>, options: { number: string[] }): void {
  for (const key of options.number) {
    const value = args[key];
    if (typeof value !== 'number' || Number.isFinite(value)) continue;
    const spec = (TRAIN_FLAGS as Record<string, FlagSpec>)[key];
    const expected = spec?.type === 'number' ? expectedNumber(spec.range) : 'a number';
    throw new UsageError(`--${key}: expected ${expected}, got '${typed(raw, key) ?? String(value)}'`);
  }
}

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
      fail(oneLine(msg), 2);
    });
  // getOptions is public in yargs but missing from its type definitions.
  const options = () => (cli as unknown as { getOptions: () => { number: string[]; string: string[]; array: string[] } }).getOptions();
  cli.middleware(() => checkValues(argv, options()), true);
  cli.middleware((args) => lastWins(argv, args, options()), true);
  cli.middleware((args) => checkNumbers(argv, args, options()), true);
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
