import { existsSync, rmSync } from 'node:fs';
import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { loadArchitecture } from '../../graph-builder/dsl/arch.ts';
import { settingsOf, train as trainRun } from '../../training/api.ts';
import { readRunConfig, recipeDifferences, recipeOf, resolveRunConfig, type RunConfig } from '../../training/config.ts';
import { FLAG_NAMES, pickFlags, type TrainFlags } from '../../training/flags.ts';
import { fit } from '../../training/fit.ts';
import { type ReproduceGroup, type ReproduceRow, reproduceTable, SEED_RESULTS } from '../../training/reproduce.ts';
import { EP_NAMES } from '../../runtime/ort.ts';
import { type ArchArgs, archOptions, flagOptions, modelFromArgs } from './graph.ts';

export interface TrainArgs extends ArchArgs, TrainFlags {
  out?: string;
  resume: boolean;
}

/** The training flags, shared by train, sweep and search. */
export function trainOptions<T>(y: Argv<T>): Argv<T & TrainFlags> {
  return flagOptions<T, TrainFlags>(y, FLAG_NAMES);
}

/** A stop request from a signal, and the exit code that reports it (128 + the signal's number). */
export interface StopRequest {
  requested: boolean;
  exitCode: number;
  /** Starts catching the signals (until then they end the process at once, set-up included). */
  arm: () => void;
  /** Set by fit while it trains: writes a checkpoint of the steps no checkpoint holds yet, and says so. */
  saveNow?: () => string | undefined;
}

/**
 * SIGINT (Ctrl-C) and SIGTERM (docker stop, Kubernetes, Slurm) both finish the current chunk of
 * K steps, save a checkpoint and exit 130 or 143; a second signal exits at once, after writing a
 * checkpoint of the steps done before the current chunk where none holds them yet (a Ctrl-C under
 * npx arrives twice: from the terminal, and forwarded by npm). Every file is written atomically,
 * so the last checkpoint stays whole.
 * Unarmed (`armed: false`), the signals keep their default action until `arm()`: set-up (import,
 * graph building, session creation, much of it synchronous) has nothing to save and stops at once.
 */
export function installStopHandler(o: { armed?: boolean } = {}): StopRequest {
  let armed = false;
  const stop: StopRequest = {
    requested: false,
    exitCode: 130,
    arm: () => {
      if (armed) return;
      armed = true;
      on('SIGINT', 130, 'Ctrl-C');
      on('SIGTERM', 143, 'SIGTERM');
    },
  };
  const on = (signal: NodeJS.Signals, code: number, name: string) =>
    process.on(signal, () => {
      if (stop.requested) quitNow(stop, code);
      stop.requested = true;
      stop.exitCode = code;
      process.stderr.write(`\ncnnlab: ${name}: finishing the current chunk and saving a checkpoint (again to quit at once)\n`);
    });
  if (o.armed ?? true) stop.arm();
  return stop;
}

/** A second signal: the steps no checkpoint holds yet are saved (one checkpoint write), then the process ends. */
function quitNow(stop: StopRequest, code: number): never {
  try {
    const saved = stop.saveNow?.();
    if (saved) process.stderr.write(`cnnlab: ${saved}\n`);
  } catch (err) {
    process.stderr.write(`cnnlab: quitting without a checkpoint of the last steps: ${(err as Error).message.split('\n')[0]}\n`);
  }
  process.exit(code);
}

const train: CommandModule<object, TrainArgs> = {
  command: 'train [arch]',
  describe: 'train a preset or --arch-file model; writes a run folder (checkpoint, metrics, models)',
  builder: (y) =>
    trainOptions(archOptions(y))
      .option('out', { type: 'string', describe: 'run folder (default runs/<arch>-<dataset>)' })
      .option('resume', { type: 'boolean', default: false, describe: 'continue the run in --out from its checkpoint' }) as Argv<TrainArgs>,
  handler: async (args) => {
    const stop = installStopHandler({ armed: false });
    const result = await trainRun({ ...settingsOf(pickFlags(args)), model: modelFromArgs(args), out: args.out, resume: args.resume, stop });
    if (result.interrupted) process.exitCode = stop.exitCode;
    else if (result.best) {
      const best = result.best;
      const by = best.valAcc === undefined ? 'best test accuracy' : `best validation accuracy ${(100 * best.valAcc).toFixed(2)}% at epoch ${best.epoch}, where the test accuracy is`;
      console.log(`${by} ${(100 * best.testAcc).toFixed(2)}%${best.valAcc === undefined ? ` (epoch ${best.epoch})` : ''}; models: ${result.models.best}, ${result.models.last}`);
    }
  },
};

/**
 * A run folder is reused (finished) or resumed (unfinished) only when it holds the same recipe;
 * one that holds another is one line naming what differs, or with --force is trained again.
 */
async function checkReuse(dir: string, cfg: RunConfig, force: boolean): Promise<void> {
  if (!existsSync(`${dir}/config.json`)) return;
  const saved = await readRunConfig(dir, { continuing: true });
  if (recipeOf(saved) === recipeOf(cfg)) return;
  if (force) return rmSync(dir, { recursive: true, force: true });
  const d = recipeDifferences(saved.flags, cfg.flags);
  throw new UsageError(`${dir}: holds a run ${d.saved.length ? `with ${d.saved.join(', ')}` : 'of another recipe'}, not this one${d.wanted.length ? ` (${d.wanted.join(', ')})` : ''}: use another --out, or --force to train it again`);
}

interface ReproduceArgs {
  force: boolean;
  group: string;
  ep: string;
  threads?: number;
  epochs?: number;
  out: string;
}

const reproduce: CommandModule<object, ReproduceArgs> = {
  command: 'reproduce <group>',
  describe: 'benchmark: train the seeds’ presets with their recipes and print our accuracy beside theirs',
  builder: (y) =>
    y
      .positional('group', { type: 'string', choices: Object.keys(SEED_RESULTS), demandOption: true, describe: 'ntnu (seed 000), eva (001, 003), jhu (004), or fashion (our fashion-best against the public anchor)' })
      .option('ep', { type: 'string', choices: EP_NAMES, default: 'cpu' })
      .option('threads', { type: 'number' })
      .option('epochs', { type: 'number', describe: 'override the recipes’ epochs (a quick look; targets assume the full count)' })
      .option('out', { type: 'string', default: 'runs/reproduce', describe: 'parent folder of the runs (runs of the same recipe are reused or resumed)' })
      .option('force', { type: 'boolean', default: false, describe: 'train again the runs whose folders hold another recipe' }) as Argv<ReproduceArgs>,
  handler: async (args) => {
    const rows: ReproduceRow[] = [];
    const stop = installStopHandler();
    const t0 = performance.now();
    for (const e of SEED_RESULTS[args.group as ReproduceGroup]) {
      const arch = await loadArchitecture(e.preset);
      // The seeds' own protocol: no validation split, every epoch measured on the test set.
      const cfg = resolveRunConfig(arch, { dataset: e.dataset, ep: args.ep, threads: args.threads, epochs: args.epochs, 'val-split': 0 });
      const dir = `${args.out}/${args.group}/${e.preset}-${e.dataset}${args.epochs ? `-e${args.epochs}` : ''}`;
      await checkReuse(dir, cfg, args.force);
      console.log(`\n== ${e.preset} on ${e.dataset} (${e.source}) -> ${dir}`);
      const started = performance.now();
      const result = await fit(cfg, { runDir: dir, resume: existsSync(`${dir}/checkpoint.ckpt`), stop });
      if (result.interrupted) {
        process.exitCode = stop.exitCode;
        return;
      }
      const seconds = result.epochs.reduce((a, m) => a + m.seconds, 0) || (performance.now() - started) / 1000;
      rows.push({ experiment: e, ours: result.epochs.map((m) => 100 * m.testAcc), seconds });
    }
    console.log(`\n${reproduceTable(rows)}\n\nwall time ${((performance.now() - t0) / 60000).toFixed(1)} min (${args.ep}); time = training seconds of each run; the seeds' protocol: no validation split, every epoch measured on the test set`);
  },
};

export const trainCommands: CommandModule[] = [train as unknown as CommandModule, reproduce as unknown as CommandModule];
