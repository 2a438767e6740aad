import type { Argv } from 'yargs';
import { UsageError } from '../../common/errors.ts';
import { parseInputSize } from '../../graph-builder/import/onnx-model.ts';
import type { ForeignModelOptions, OutputKind } from '../../inference/model.ts';
import { CHANNEL_ORDERS, type ChannelOrder, RESIZE_MODES, type ResizeMode } from '../../datasets/registry.ts';
import { parseNormalize } from '../../training/flags.ts';

export interface ForeignArgs {
  'output-kind'?: string;
  'input-range'?: string;
  normalize?: string;
  classes?: string;
  'input-size'?: string;
  'channel-order'?: string;
  resize?: string;
}

/** How eval, predict and serve read a model: for one cnnlab did not make; for cnnlab's own, its metadata says unless these are given. */
export function foreignOptions<T>(y: Argv<T>): Argv<T & ForeignArgs> {
  return y
    .option('output-kind', { type: 'string', choices: ['logits', 'probabilities', 'log-probabilities'], describe: 'what the output holds, where its last op does not say' })
    .option('input-range', { type: 'string', choices: ['0..1', '0..255'], describe: 'what the input expects of a white pixel (default 0..1)' })
    .option('normalize', { type: 'string', describe: 'MEAN,STD, or per channel M1,M2,M3/S1,S2,S3, applied after scaling (default: the metadata; none for a model without cnnlab metadata)' })
    .option('channel-order', { type: 'string', choices: [...CHANNEL_ORDERS], describe: 'a 3-channel input: the order it takes the colour planes in (default: the metadata, else rgb)' })
    .option('resize', { type: 'string', choices: [...RESIZE_MODES], describe: 'image files: stretch to the input size, or crop: scale to cover it and cut out the centre (default: the metadata, else stretch)' })
    .option('classes', { type: 'string', describe: 'class names, comma-separated (default: the metadata, else the dataset’s)' })
    .option('input-size', { type: 'string', describe: 'HxW, for a model whose input height and width are symbolic' }) as Argv<T & ForeignArgs>;
}

export function foreignFromArgs(args: ForeignArgs): ForeignModelOptions {
  const normalize = parseNormalize(args.normalize);
  const classes = args.classes?.split(',').map((c) => c.trim());
  if (classes && (classes.length < 2 || classes.some((c) => !c))) throw new UsageError(`--classes: expected two or more comma-separated names, got '${args.classes}'`);
  return {
    outputKind: args['output-kind'] as OutputKind | undefined,
    inputRange: args['input-range'] === '0..255' ? 255 : args['input-range'] === '0..1' ? 1 : undefined,
    normalize,
    classes,
    inputSize: parseInputSize(args['input-size']),
    channelOrder: args['channel-order'] as ChannelOrder | undefined,
    resize: args.resize as ResizeMode | undefined,
  };
}
