import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { datasetClasses, knownStats } from '../../datasets/open.ts';
import { DATASET_NAMES, type DatasetName, DATASETS } from '../../datasets/registry.ts';
import { buildArtifacts, type TrainSpec } from '../../graph-builder/artifacts/build.ts';
import { type Architecture, loadArchitecture } from '../../graph-builder/dsl/arch.ts';
import type { OutputKind } from '../../graph-builder/model.ts';
import { parseInputSize } from '../../graph-builder/import/onnx-model.ts';
import { foreignFromArgs, foreignOptions } from './model-options.ts';
import { PRESET_NAMES, PRESETS } from '../../graph-builder/dsl/presets.ts';
import { receptiveFieldTable, summaryTable } from '../../graph-builder/summary.ts';
import { loadModelSource, type ModelSource } from '../../training/api.ts';
import { inspectModel } from '../../training/model-api.ts';
import { type OptimizerName, optimizerKind, trainSpecFor } from '../../training/optimizers/index.ts';
import { checkFlags, checkNumber, type FlagName, type FlagSpec, GRAPH_FLAGS, type OptimizerFlags, TRAIN_FLAGS } from '../../training/flags.ts';

export interface ArchArgs {
  arch?: string;
  'arch-file'?: string;
  model?: string;
  'output-kind'?: string;
  'input-size'?: string;
}

/** The positional architecture and --arch-file, shared by every command that takes a model. */
export function archOptions<T>(y: Argv<T>): Argv<T & ArchArgs> {
  return y
    .positional('arch', {
      type: 'string',
      describe: `a preset (${PRESET_NAMES.join(', ')}), with options as name:key=value,... (e.g. jhu-net:width=2)`,
    })
    .option('arch-file', { type: 'string', describe: 'your own model: a .json spec or a .ts/.js module exporting a DSL model' })
    .option('model', { type: 'string', describe: 'an ONNX classifier to train or fine-tune (exported by PyTorch or other tools)' }) as Argv<T & ArchArgs>;
}

/** The model the arguments name: a preset, --arch-file or --model (one at most; none leaves it to the command). */
export function modelFromArgs(args: ArchArgs): ModelSource | undefined {
  const given = [args.arch && 'a preset', args['arch-file'] && '--arch-file', args.model && '--model'].filter(Boolean);
  if (given.length > 1) throw new UsageError(`name one model: ${given.join(' and ')} were given`);
  return args['arch-file'] ? { archFile: args['arch-file'] } : args.model ? { modelFile: args.model } : args.arch;
}

/** The model the arguments name; `classes`: the dataset's class count, which a preset's or file's head is made to fit. */
export function archFromArgs(args: ArchArgs, classes?: number): Promise<Architecture> {
  return loadModelSource(modelFromArgs(args), { outputKind: args['output-kind'] as OutputKind | undefined, inputSize: parseInputSize(args['input-size']) }, classes);
}

/** The class count of the data that --dataset and --data-dir name (every preset's own dataset has ten). */
export function classesFor(args: { dataset?: string; 'data-dir'?: string }): number {
  return datasetClasses({ dataset: args.dataset, dataDir: args['data-dir'] }).length;
}

export function seedOption(value: number): number {
  return checkNumber(value, '--seed', TRAIN_FLAGS.seed.range)!;
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

/** yargs options for the named training flags, from the one table (training/flags.ts). */
export function flagOptions<T, F>(y: Argv<T>, names: readonly FlagName[]): Argv<T & F> {
  let out: Argv<unknown> = y;
  for (const name of names) {
    const spec: FlagSpec = TRAIN_FLAGS[name];
    const choices = spec.type === 'string' ? spec.choices : undefined;
    const dflt = spec.type === 'string' ? spec.default : undefined;
    out = out.option(name, { type: spec.type, describe: spec.describe, ...(choices ? { choices: [...choices] } : {}), ...(dflt !== undefined ? { default: dflt } : {}) });
  }
  return out as Argv<T & F>;
}

/** Flags that shape the training graphs (and, for training, the schedule's base values). */
export function optimizerOptions<T>(y: Argv<T>): Argv<T & OptimizerArgs> {
  return flagOptions<T, OptimizerArgs>(y, GRAPH_FLAGS);
}

export function trainSpecFromArgs(arch: Architecture, args: OptimizerArgs): TrainSpec {
  checkFlags(args);
  return trainSpecFor(arch, {
    opt: args.opt as OptimizerName | undefined,
    momentum: args.momentum,
    weightDecay: args['weight-decay'],
    nesterov: args.nesterov,
    smoothing: args['label-smoothing'],
  });
}

interface BuildArgs extends ArchArgs, OptimizerArgs {
  out?: string;
  seed: number;
  dataset?: string;
}

/** Writes an architecture's artifacts and says what it wrote (build-graph and import). */
function writeArtifacts(arch: Architecture, args: BuildArgs): void {
  const name = (args.dataset as DatasetName | undefined) ?? arch.recipe.dataset;
  const dataset = { ...DATASETS[name], ...knownStats(name) };
  const outDir = args.out ?? `out/${arch.id.replace(/[^A-Za-z0-9._=-]+/g, '_')}`;
  const train = trainSpecFromArgs(arch, args);
  const manifest = buildArtifacts(arch, { outDir, seed: seedOption(args.seed), dataset, train, optimizerKind: optimizerKind(train.optimizer) });
  console.log(summaryTable(arch.model, arch.id));
  const list = (names: string[]) => (names.length > 6 ? `${names.slice(0, 3).join(', ')}, ... ${names.length - 3} more` : names.join(', '));
  for (const [kind, a] of Object.entries(manifest.artifacts)) console.log(`wrote ${outDir}/${a.file} (${kind}: ${list(a.inputs)} -> ${list(a.outputs)})`);
  console.log(`wrote ${outDir}/${manifest.checkpoint} (initial parameters${arch.model.source ? ' from the model file' : `, seed ${manifest.seed}`})`);
  console.log(`wrote ${outDir}/manifest.json (${manifest.optimizer.name}, ${manifest.loss} loss; lr, momentum and dropout seeds are fed per step)`);
}

const buildOptions = <T>(y: Argv<T>) =>
  optimizerOptions(y)
    .option('out', { type: 'string', describe: 'output folder (default: out/<arch>)' })
    .option('seed', { type: 'number', default: 0, describe: 'seed of the parameter initialisation' })
    .option('dataset', { type: 'string', choices: DATASET_NAMES, describe: "dataset the model is for (default: the preset's)" });

const buildGraph: CommandModule<object, BuildArgs> = {
  command: 'build-graph [arch]',
  describe: 'write the ONNX artifacts (inference, and training graphs) and a manifest',
  builder: (y) => buildOptions(archOptions(y)) as Argv<BuildArgs>,
  handler: async (args) => writeArtifacts(await archFromArgs(args, classesFor(args)), args),
};

interface ImportArgs extends BuildArgs {
  file: string;
  'input-range'?: string;
  normalize?: string;
}

/** An imported model's recipe with --input-range and --normalize applied. */
function withPreparation(arch: Architecture, args: ImportArgs): Architecture {
  const prep = foreignFromArgs(args);
  return { ...arch, recipe: { ...arch.recipe, ...(prep.inputRange ? { inputRange: prep.inputRange } : {}), ...(prep.normalize ? { normalize: prep.normalize } : {}) } };
}

const importCommand: CommandModule<object, ImportArgs> = {
  command: 'import <file>',
  describe: 'write training artifacts (train step, eval, inference, initial checkpoint, manifest) for an ONNX classifier',
  builder: (y) =>
    buildOptions(foreignOptions(y).positional('file', { type: 'string', demandOption: true, describe: 'the .onnx model (from PyTorch or other tools)' })).option('out', {
      type: 'string',
      describe: 'output folder (default: out/<model>)',
    }) as Argv<ImportArgs>,
  handler: async (args) => writeArtifacts(withPreparation(await archFromArgs({ model: args.file, 'output-kind': args['output-kind'], 'input-size': args['input-size'] }), args), args),
};

interface InspectArgs {
  file: string;
  'input-size'?: string;
  freeze?: string;
}

const inspect: CommandModule<object, InspectArgs> = {
  command: 'inspect <file>',
  describe: 'what an ONNX model holds (inputs, outputs, ops, parameters) and what cnnlab can do with it',
  builder: (y) =>
    y
      .positional('file', { type: 'string', demandOption: true })
      .option('input-size', { type: 'string', describe: 'HxW, for a model whose input height and width are symbolic' })
      .option('freeze', { type: 'string', describe: "mark what train's --freeze GLOBS|backbone would keep fixed, with the counts" }) as Argv<InspectArgs>,
  handler: (args) => console.log(inspectModel(args.file, { inputSize: parseInputSize(args['input-size']), freeze: args.freeze }).report),
};

const presets: CommandModule = {
  command: 'presets',
  describe: 'list the named architectures with their seeds, parameters and options',
  handler: async () => {
    // Columns as wide as the longest name (fashion-best), so none shifts.
    const width = Math.max(...Object.values(PRESETS).map((p) => p.name.length));
    const seedWidth = Math.max(...Object.values(PRESETS).map((p) => String(p.seed).length));
    for (const p of Object.values(PRESETS)) {
      const arch = await loadArchitecture(p.name);
      console.log(`${p.name.padEnd(width)} ${arch.model.trainableCount.toLocaleString('en-US').padStart(10)} params  seed ${String(p.seed).padEnd(seedWidth)}  ${p.description}`);
      for (const [k, o] of Object.entries(p.options)) console.log(`${''.padEnd(width + 2)}${`${k}=${String(o.default)}`.padEnd(18)} ${o.describe}`);
    }
  },
};

export const graphCommands: CommandModule[] = [
  presets,
  summary as unknown as CommandModule,
  buildGraph as unknown as CommandModule,
  importCommand as unknown as CommandModule,
  inspect as unknown as CommandModule,
];
