import { basename } from 'node:path';
import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { plural } from '../../common/text.ts';
import { collectEntries, writeReport } from '../../training/report.ts';
import { grid, jhuQuestions, parseAxis, runSearch, runSweep, scoreText, shard, splitSettings, trialScore } from '../../training/sweep.ts';
import { parseSpace } from '../../training/tpe.ts';
import { checkFlags, pickFlags, TRAIN_FLAGS } from '../../training/flags.ts';
import { installStopHandler, trainOptions, type TrainArgs } from './train.ts';
import { parseQueueAddress, queueStatus } from '../../training/queue.ts';
import { runQueuedSearch, runQueuedSweep } from '../../training/queue-coordinator.ts';
import { runWorker } from '../../training/queue-worker.ts';

interface SweepArgs extends Omit<TrainArgs, 'resume'> {
  model?: string;
  force: boolean;
  vary?: string[];
  preset?: string;
  shard?: string;
  report: boolean;
  queue?: string;
  status: boolean;
}

/** --queue and --status, shared by sweep and search. */
const queueOptions = <T>(y: Argv<T>): Argv<T> =>
  y
    .option('queue', { type: 'string', describe: 'redis://HOST:PORT/NAME: enqueue the trials for `cnnlab worker`s on any machines (the folder must be on a filesystem they share)' })
    .option('status', { type: 'boolean', default: false, describe: "with --queue: list the queue's trials (queued, running, done, diverged, failed) and exit" }) as Argv<T>;

/** `--status`: prints the queue's listing; true when it did. */
async function printedStatus(args: { queue?: string; status: boolean }): Promise<boolean> {
  if (!args.status) return false;
  if (!args.queue) throw new UsageError('--status: name the queue with --queue redis://HOST:PORT/NAME');
  for (const line of await queueStatus(parseQueueAddress(args.queue))) console.log(line);
  return true;
}

/** Ctrl-C / SIGTERM on a queue's coordinator: it stops following; the queue keeps every trial and workers go on. */
function coordinatorStop(): { requested: boolean; exitCode: number } {
  const stop = { requested: false, exitCode: 130 };
  for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const)
    process.on(signal, () => {
      if (stop.requested) process.exit(code);
      Object.assign(stop, { requested: true, exitCode: code });
      process.stderr.write('\ncnnlab: the queue keeps its trials and workers go on; run the same command again to follow and collect them\n');
    });
  return stop;
}

const sweep: CommandModule<object, SweepArgs> = {
  command: 'sweep [arch]',
  describe: 'a grid of runs (--vary key=v1,v2 ...), or --preset jhu-questions; re-runs skip finished trials',
  builder: (y) =>
    queueOptions(trainOptions(y))
      .positional('arch', { type: 'string', describe: 'a preset (with options), as for train' })
      .option('model', { type: 'string', describe: 'an ONNX classifier to sweep instead of a preset' })
      .option('arch-file', { type: 'string', describe: 'your own model (.json, .ts, .js) to sweep instead of a preset' })
      .option('vary', { type: 'string', array: true, describe: 'key=v1,v2,...: a training flag (lr, opt, batch, epochs, ...) or a preset option (width, dropout, ...)' })
      .option('preset', { type: 'string', choices: ['jhu-questions'], describe: "seed 004's questions on jhu-net, Fashion-MNIST" })
      .option('shard', { type: 'string', describe: 'i/n: run every n-th trial starting at the i-th (split a grid over machines)' })
      .option('out', { type: 'string', describe: 'sweep folder (default runs/sweeps/<name>)' })
      .option('report', { type: 'boolean', default: true, describe: 'write report.html and PNGs when done' })
      .option('force', { type: 'boolean', default: false, describe: 'run again the trials whose folders hold another recipe (changed shared flags)' }) as Argv<SweepArgs>,
  handler: async (args) => {
    if (await printedStatus(args)) return;
    if (args.queue && args.shard) throw new UsageError('--shard: a queue hands every trial to whichever worker is free; leave --shard out with --queue');
    let arch = args.arch;
    let trials;
    const base = pickFlags(args);
    if (args.preset === 'jhu-questions') {
      if (arch && arch !== 'jhu-net') throw new UsageError('--preset jhu-questions: it sweeps jhu-net; leave the architecture out');
      arch = 'jhu-net';
      base.dataset ??= 'fashion-mnist';
      trials = jhuQuestions(base.epochs ?? 10);
    } else {
      const named = [arch && `a preset (${arch})`, args.model && '--model', args['arch-file'] && '--arch-file'].filter(Boolean);
      if (named.length > 1) throw new UsageError(`sweep: name one model: ${named.join(' and ')} were given`);
      if (args.model) arch = `onnx:${basename(args.model)}`;
      if (args['arch-file']) arch = `file:${basename(args['arch-file'])}`;
      if (!arch) throw new UsageError('sweep: name an architecture, or --model net.onnx, or --preset jhu-questions');
      if (!args.vary?.length) throw new UsageError('sweep: give at least one --vary key=v1,v2');
      trials = grid(args.vary.map(parseAxis));
    }
    const mine = shard(trials, args.shard);
    const dir = args.out ?? `runs/sweeps/${args.preset ?? arch!.replace(/[^A-Za-z0-9._=-]+/g, '_')}`;
    console.log(`sweep ${arch}: ${plural(trials.length, 'trial')}${args.shard ? `, shard ${args.shard}: ${mine.length}` : ''} -> ${dir}`);
    const stop = args.queue ? coordinatorStop() : installStopHandler();
    const o = { arch: arch!, model: args.model, archFile: args['arch-file'], base, trials: mine, dir, fit: { stop }, force: args.force };
    const m = args.queue ? await runQueuedSweep(o, { address: parseQueueAddress(args.queue), stop }) : await runSweep(o);
    if (stop.requested || !m) return void (process.exitCode = stop.exitCode);
    const done = m.trials.filter((t) => t.status === 'done').sort((a, b) => trialScore(b) - trialScore(a));
    console.log(`\n${done.length} done, ${m.trials.filter((t) => t.status === 'diverged').length} diverged, ${m.trials.filter((t) => t.status === 'invalid').length} invalid`);
    for (const t of done.slice(0, 5)) console.log(`  ${scoreText(t)}  ${t.id}`);
    if (args.report) {
      const r = await writeReport(collectEntries([dir]), dir, `cnnlab sweep: ${args.preset ?? arch}`);
      console.log(`report: ${r.html} (${r.pngs.length} PNGs)`);
    }
  },
};

interface ReportArgs {
  targets: string[];
  out?: string;
  title?: string;
}

const report: CommandModule<object, ReportArgs> = {
  command: 'report <targets..>',
  describe: 'HTML report with curves (vega-lite, SVG and PNG) and tables from a sweep folder or run folders',
  builder: (y) =>
    y
      .positional('targets', { type: 'string', array: true, demandOption: true, describe: 'a sweep folder, or run folders' })
      .option('out', { type: 'string', describe: 'output folder (default: the sweep folder, or runs/report)' })
      .option('title', { type: 'string' }) as Argv<ReportArgs>,
  handler: async (args) => {
    const entries = collectEntries(args.targets);
    const out = args.out ?? (args.targets.length === 1 && entries.some((e) => e.group !== 'runs') ? args.targets[0] : 'runs/report');
    const r = await writeReport(entries, out, args.title ?? `cnnlab report: ${args.targets.join(', ')}`);
    console.log(`wrote ${r.html} and ${r.pngs.length} PNGs in ${out}`);
  },
};

interface SearchArgs extends Omit<TrainArgs, 'resume'> {
  force: boolean;
  space: string;
  trials: number;
  algo: string;
  queue?: string;
  status: boolean;
  parallel?: number;
}

const search: CommandModule<object, SearchArgs> = {
  command: 'search [arch]',
  describe: 'hyperparameter search (TPE or random) over preset options and flags; every trial tracked as a run',
  builder: (y) =>
    queueOptions(trainOptions(y))
      .positional('arch', { type: 'string', describe: 'a preset, e.g. mads' })
      .option('arch-file', { type: 'string', describe: 'your own model (.json, .ts, .js) instead of a preset' })
      .option('model', { type: 'string', describe: 'an ONNX classifier instead of a preset' })
      .option('space', { type: 'string', demandOption: true, describe: 'key=lo:hi[:step] or key=a|b, comma-separated (seed 002: filters=16:128:8,kernel=2:5,layers=1:10)' })
      .option('trials', { type: 'number', default: 20 })
      .option('algo', { type: 'string', choices: ['tpe', 'random'], default: 'tpe' })
      .option('out', { type: 'string', describe: 'search folder (default runs/search/<arch>-<algo>)' })
      .option('force', { type: 'boolean', default: false, describe: 'run again the trials whose folders hold another recipe' })
      .option('parallel', { type: 'number', describe: 'with --queue: trials in flight at once (default: the workers connected)' }) as Argv<SearchArgs>,
  handler: async (args) => {
    if (await printedStatus(args)) return;
    if (args.parallel !== undefined && (!Number.isInteger(args.parallel) || args.parallel < 1 || !args.queue)) throw new UsageError(`--parallel ${args.parallel}: expected a whole number >= 1, with --queue`);
    if (!Number.isInteger(args.trials) || args.trials < 1) throw new UsageError(`--trials: expected a whole number >= 1, got ${args.trials}`);
    const base = pickFlags(args);
    const named = [args.arch && `a preset (${args.arch})`, args.model && '--model', args['arch-file'] && '--arch-file'].filter(Boolean);
    if (named.length !== 1) throw new UsageError(`search: name one model (a preset, --arch-file or --model)${named.length ? `: ${named.join(' and ')} were given` : ''}`);
    const arch = args.model ? `onnx:${basename(args.model)}` : args['arch-file'] ? `file:${basename(args['arch-file'])}` : args.arch!;
    const space = parseSpace(args.space);
    for (const key of Object.keys(space)) splitSettings(arch, { [key]: space[key].kind === 'int' ? String((space[key] as { lo: number }).lo) : (space[key] as { values: string[] }).values[0] });
    const dir = args.out ?? `runs/search/${arch.replace(/[^A-Za-z0-9._=-]+/g, '_')}-${args.algo}`;
    console.log(`search ${arch} (${args.algo}, ${plural(args.trials, 'trial')}) over ${args.space} -> ${dir}`);
    const stop = args.queue ? coordinatorStop() : installStopHandler();
    const o = { arch, model: args.model, archFile: args['arch-file'], base, space, trials: args.trials, algo: args.algo as 'tpe' | 'random', seed: args.seed ?? 0, dir, fit: { stop }, force: args.force, parallel: args.parallel };
    const m = args.queue ? await runQueuedSearch(o, { address: parseQueueAddress(args.queue), stop }) : await runSearch(o);
    if (stop.requested || !m) return void (process.exitCode = stop.exitCode);
    const done = m.trials.filter((t) => t.status === 'done').sort((a, b) => trialScore(b) - trialScore(a));
    if (done[0]) console.log(`\nbest: ${scoreText(done[0])} with ${Object.entries(done[0].settings).map(([k, v]) => `${k}=${v}`).join(', ')} (${done[0].parameters?.toLocaleString('en-US')} parameters, run ${done[0].run})`);
    const r = await writeReport(collectEntries([dir]), dir, `cnnlab search: ${arch} (${args.algo})`);
    console.log(`report: ${r.html}`);
  },
};

interface WorkerArgs {
  queue: string;
  'stall-timeout': number;
  'until-done': boolean;
  ep?: string;
  threads?: number;
}

const worker: CommandModule<object, WorkerArgs> = {
  command: 'worker',
  describe: "take trials from a sweep's or search's queue and run them (any number of machines; see docs/cluster.md)",
  builder: (y) =>
    y
      .option('queue', { type: 'string', demandOption: true, describe: 'redis://HOST:PORT/NAME, as given to sweep or search --queue' })
      .option('stall-timeout', { type: 'number', default: 60, describe: "seconds after which a silent worker's trial is taken by another (it resumes from its checkpoint)" })
      .option('until-done', { type: 'boolean', default: false, describe: 'exit once the queue is finished (for job arrays); otherwise run until Ctrl-C' })
      .option('ep', { type: 'string', choices: TRAIN_FLAGS.ep.choices, describe: "this machine's execution provider (overrides the queue's)" })
      .option('threads', { type: 'number', describe: "this machine's threads (overrides the queue's)" }) as Argv<WorkerArgs>,
  handler: async (args) => {
    const s = args['stall-timeout'];
    if (!Number.isFinite(s) || s < 2) throw new UsageError(`--stall-timeout ${s}: expected seconds >= 2`);
    const machine = checkFlags(pickFlags({ ep: args.ep, threads: args.threads }));
    const stop = installStopHandler();
    await runWorker({ address: parseQueueAddress(args.queue), stallSeconds: s, untilDone: args['until-done'], machine, stop });
    if (stop.requested) process.exitCode = stop.exitCode;
  },
};

export const sweepCommands: CommandModule[] = [sweep as unknown as CommandModule, search as unknown as CommandModule, report as unknown as CommandModule, worker as unknown as CommandModule];
