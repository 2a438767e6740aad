import type { Argv, CommandModule } from 'yargs';
import { EXPORT_FORMATS, type ExportFormat, exportModel, runModelFile } from '../../inference/export.ts';

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
    const file = runModelFile(args.run, args.which as 'best' | 'last');
    const format = args.format as ExportFormat;
    const out = args.out ?? file.replace(/\.onnx$/i, '') + (format === 'onnx' ? '.export.onnx' : `.${format}`);
    const r = exportModel(file, format, out);
    console.log(`wrote ${out}: ${r.tensors} tensors, ${r.values.toLocaleString('en-US')} values from ${file}`);
  },
};

export const exportCommands: CommandModule[] = [exportCommand as unknown as CommandModule];
