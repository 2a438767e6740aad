import type { Argv } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import type { ForeignModelOptions, OutputKind } from '../../inference/model.ts';

export interface ForeignArgs {
  'output-kind'?: string;
  'input-range'?: string;
  normalize?: string;
  classes?: string;
}

/** How eval, predict and serve read a model cnnlab did not make (its metadata says otherwise for cnnlab's own). */
export function foreignOptions<T>(y: Argv<T>): Argv<T & ForeignArgs> {
  return y
    .option('output-kind', { type: 'string', choices: ['logits', 'probabilities', 'log-probabilities'], describe: 'what the output holds, where its last op does not say' })
    .option('input-range', { type: 'string', choices: ['0..1', '0..255'], describe: 'what the input expects of a white pixel (default 0..1)' })
    .option('normalize', { type: 'string', describe: 'MEAN,STD applied after scaling (default: none for a model without cnnlab metadata)' })
    .option('classes', { type: 'string', describe: 'class names, comma-separated (default: the metadata, else the dataset’s)' }) as Argv<T & ForeignArgs>;
}

export function foreignFromArgs(args: ForeignArgs): ForeignModelOptions {
  let normalize: ForeignModelOptions['normalize'];
  if (args.normalize !== undefined) {
    const [mean, std, extra] = args.normalize.split(',').map((v) => Number(v.trim()));
    if (extra !== undefined || !Number.isFinite(mean) || !(std > 0)) throw new UsageError(`--normalize: expected MEAN,STD with STD > 0 (e.g. 0.1307,0.3081), got '${args.normalize}'`);
    normalize = { mean, std };
  }
  const classes = args.classes?.split(',').map((c) => c.trim());
  if (classes && (classes.length < 2 || classes.some((c) => !c))) throw new UsageError(`--classes: expected two or more comma-separated names, got '${args.classes}'`);
  return {
    outputKind: args['output-kind'] as OutputKind | undefined,
    inputRange: args['input-range'] === '0..255' ? 255 : args['input-range'] === '0..1' ? 1 : undefined,
    normalize,
    classes,
  };
}
