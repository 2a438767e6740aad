import type { Argv, CommandModule } from 'yargs';
import { EXPORT_FORMATS, type ExportFormat } from '../../inference/export.ts';
import { exportModel } from '../../training/model-api.ts';

interface ExportArgs {
  run: string;
  format: string;
  which: string;
  out?: string;
}

const exportCommand: CommandModule<object, ExportArgs> = {
  command: 'export <run>',
  describe: 'write a run’s trained parameters as safetensors (PyTorch), npz (NumPy) or ONNX',
  builder: (y) =>
    y
      .positional('run', { type: 'string', demandOption: true, describe: 'a run folder, or an .onnx model' })
      .option('format', { type: 'string', choices: EXPORT_FORMATS, default: 'safetensors' })
      .option('which', { type: 'string', choices: ['best', 'last'], default: 'best', describe: 'the best epoch (best.onnx) or the last (last.onnx)' })
      .option('out', { type: 'string', describe: 'output file (default: beside the model, e.g. best.safetensors)' }) as Argv<ExportArgs>,
  handler: (args) => {
    const r = exportModel(args.run, { format: args.format as ExportFormat, which: args.which as 'best' | 'last', out: args.out });
    console.log(`wrote ${r.file}: ${r.tensors} tensors, ${r.values.toLocaleString('en-US')} values from ${r.from}`);
  },
};

export const exportCommands: CommandModule[] = [exportCommand as unknown as CommandModule];
