import type { Argv, CommandModule } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { DATASET_NAMES, type DatasetName } from '../../datasets/registry.ts';
import { transfer, transferTable } from '../../training/transfer.ts';
import { installStopHandler } from './train.ts';

interface TransferArgs {
  from: string;
  to: string;
  'finetune-epochs': number;
  'lr-scale': number;
  freeze?: string;
  'limit-train'?: number;
  out?: string;
}

const transferCommand: CommandModule<object, TransferArgs> = {
  command: 'transfer',
  describe: 'move a trained run to the other dataset: zero-shot, fine-tuned, and from scratch, in one table',
  builder: (y) =>
    y
      .option('from', { type: 'string', demandOption: true, describe: 'the trained run folder' })
      .option('to', { type: 'string', choices: DATASET_NAMES, demandOption: true, describe: 'the dataset to move to' })
      .option('finetune-epochs', { type: 'number', default: 2 })
      .option('lr-scale', { type: 'number', default: 0.05, describe: 'fine-tuning learning rate = the run’s x this (seed 004: 1/20)' })
      .option('freeze', { type: 'string', choices: ['features'], describe: 'keep the conv layers fixed; train the linear layers only' })
      .option('limit-train', { type: 'number', describe: 'fine-tune on the first N images' })
      .option('out', { type: 'string', describe: 'folder for the two new runs (default <from>-to-<dataset>)' }) as Argv<TransferArgs>,
  handler: async (args) => {
    if (!Number.isInteger(args['finetune-epochs']) || args['finetune-epochs'] < 1) throw new UsageError(`--finetune-epochs: expected a whole number >= 1, got ${args['finetune-epochs']}`);
    if (!(args['lr-scale'] > 0 && args['lr-scale'] <= 10)) throw new UsageError(`--lr-scale: expected a number in (0, 10], got ${args['lr-scale']}`);
    if (args['limit-train'] !== undefined && (!Number.isInteger(args['limit-train']) || args['limit-train'] < 1)) throw new UsageError(`--limit-train: expected a whole number >= 1, got ${args['limit-train']}`);
    const rows = await transfer({
      from: args.from,
      to: args.to as DatasetName,
      finetuneEpochs: args['finetune-epochs'],
      lrScale: args['lr-scale'],
      freeze: args.freeze as 'features' | undefined,
      limitTrain: args['limit-train'],
      outDir: args.out,
      fit: { stop: installStopHandler() },
    });
    console.log(`\n${transferTable(rows)}`);
  },
};

export const transferCommands: CommandModule[] = [transferCommand as unknown as CommandModule];
