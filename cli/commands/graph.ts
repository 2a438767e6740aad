import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { DATASET_NAMES, type DatasetName } from '../../datasets/registry.ts';
import { buildArtifacts, type TrainSpec, trainSpecFor } from '../../graph-builder/artifacts/build.ts';
import { type Architecture, loadArchitecture } from '../../graph-builder/dsl/arch.ts';
import { type OptimizerName, PRESET_NAMES, PRESETS } from '../../graph-builder/dsl/presets.ts';
import { receptiveFieldTable, summaryTable } from '../../graph-builder/summary.ts';
import { type OptimizerFlags, real } from '../../training/config.ts';

export interface ArchArgs {
  arch?: string;
  'arch-file'?: string;
}

/** The positional architecture and --arch-file, shared by every command that takes a model. */
export function archOptions<T>(y: Argv<T>): Argv<T & ArchArgs> {
  return y
    .positional('arch', {
      type: 'string',
      describe: `a preset (${PRESET_NAMES.join(', ')}), with options as name:key=value,... (e.g. jhu-net:width=2)`,
    })
    .option('arch-file', { type: 'string', describe: 'your own model: a .json spec or a .ts/.js module exporting a DSL model' }) as Argv<T & ArchArgs>;
}

export function archFromArgs(args: ArchArgs): Promise<Architecture> {
  return loadArchitecture(args.arch, args['arch-file']);
}

export function seedOption(value: number): number {
  if (!Number.isInteger(value) || value < 0 || value > 0xffffffff) throw new UsageError(`--seed: expected a whole number 0..4294967295, got ${value}`);
  return value;
}

const summary: CommandModule<object, ArchArgs & { rf: boolean }> = {
  command: 'summary [arch]',
  describe: 'print the layer table (output shapes, parameter counts); --rf adds receptive fields',
  builder: (y) => archOptions(y).option('rf', { type: 'boolean', default: false, describe: 'add the receptive-field table' }) as Argv<ArchArgs & { rf: boolean }>,
  handler: async (args) => {
    const arch = await archFromArgs(args);
    console.log(summaryTable(arch.model, arch.id));
    if (args.rf) console.log(`\nReceptive field\n${receptiveFieldTable(arch.model)}`);
  },
};

export type OptimizerArgs = OptimizerFlags;

/** Flags that shape the training graphs (and, for training, the schedule's base values). */
export function optimizerOptions<T>(y: Argv<T>): Argv<T & OptimizerArgs> {
  return y
    .option('opt', { type: 'string', choices: ['sgd', 'adam', 'adamw', 'rmsprop'], describe: "optimiser (default: the preset's)" })
    .option('lr', { type: 'number', describe: "learning rate (default: the preset's)" })
    .option('momentum', { type: 'number', describe: 'momentum (SGD, RMSprop) or beta1 (Adam, AdamW)' })
    .option('weight-decay', { type: 'number', describe: 'L2 weight decay (decoupled for AdamW)' })
    .option('nesterov', { type: 'boolean', describe: 'Nesterov momentum (SGD)' })
    .option('label-smoothing', { type: 'number', describe: 'label smoothing for cross-entropy, 0..1' }) as Argv<T & OptimizerArgs>;
}

export function trainSpecFromArgs(arch: Architecture, args: OptimizerArgs): TrainSpec {
  real(args.lr, '--lr', 0, 10);
  return trainSpecFor(arch, {
    opt: args.opt as OptimizerName | undefined,
    momentum: real(args.momentum, '--momentum', 0, 1, true),
    weightDecay: real(args['weight-decay'], '--weight-decay', 0, 1),
    nesterov: args.nesterov,
    smoothing: real(args['label-smoothing'], '--label-smoothing', 0, 1, true),
  });
}

interface BuildArgs extends ArchArgs, OptimizerArgs {
  out?: string;
  seed: number;
  dataset?: string;
}

const buildGraph: CommandModule<object, BuildArgs> = {
  command: 'build-graph [arch]',
  describe: 'write the ONNX artifacts (inference, and training graphs) and a manifest',
  builder: (y) =>
    optimizerOptions(archOptions(y))
      .option('out', { type: 'string', describe: 'output folder (default: out/<arch>)' })
      .option('seed', { type: 'number', default: 0, describe: 'seed of the parameter initialisation' })
      .option('dataset', { type: 'string', choices: DATASET_NAMES, describe: "dataset the model is for (default: the preset's)" }) as Argv<BuildArgs>,
  handler: async (args) => {
    const arch = await archFromArgs(args);
    const dataset = (args.dataset as DatasetName | undefined) ?? arch.recipe.dataset;
    const outDir = args.out ?? `out/${arch.id.replace(/[^A-Za-z0-9._=-]+/g, '_')}`;
    const manifest = buildArtifacts(arch, { outDir, seed: seedOption(args.seed), dataset, train: trainSpecFromArgs(arch, args) });
    console.log(summaryTable(arch.model, arch.id));
    const list = (names: string[]) => (names.length > 6 ? `${names.slice(0, 3).join(', ')}, ... ${names.length - 3} more` : names.join(', '));
    for (const [kind, a] of Object.entries(manifest.artifacts)) console.log(`wrote ${outDir}/${a.file} (${kind}: ${list(a.inputs)} -> ${list(a.outputs)})`);
    console.log(`wrote ${outDir}/${manifest.checkpoint} (initial parameters, seed ${manifest.seed})`);
    console.log(`wrote ${outDir}/manifest.json (${manifest.optimizer.name}, ${manifest.loss} loss; lr, momentum and dropout seeds are fed per step)`);
  },
};

const presets: CommandModule = {
  command: 'presets',
  describe: 'list the named architectures with their seeds, parameters and options',
  handler: async () => {
    for (const p of Object.values(PRESETS)) {
      const arch = await loadArchitecture(p.name);
      console.log(`${p.name.padEnd(10)} ${arch.model.trainableCount.toLocaleString('en-US').padStart(10)} params  seed ${p.seed}  ${p.description}`);
      for (const [k, o] of Object.entries(p.options)) console.log(`${''.padEnd(12)}${`${k}=${String(o.default)}`.padEnd(18)} ${o.describe}`);
    }
  },
};

export const graphCommands: CommandModule[] = [presets, summary as unknown as CommandModule, buildGraph as unknown as CommandModule];
