import { CnnlabError, InputError } from '../common/errors.ts';
import { imageToPlanes } from '../datasets/folder.ts';
import { FOLDER_PREFIX } from '../datasets/registry.ts';
import type { LoadedModel } from './model.ts';
import { prepareImage } from './preprocess.ts';

/** Whether a model reads photographed digits as MNIST does (a 1x28x28 model of the built-in datasets, no conversion given). */
export function takesDigits(model: LoadedModel): boolean {
  const converted = model.conversion.channelOrder !== undefined || model.conversion.resize !== undefined;
  return !model.dataset.startsWith(FOLDER_PREFIX) && model.input.shape.join('x') === '1x28x28' && !converted;
}

/**
 * What the model sees of an image (a file or its bytes; `name` for messages): MNIST's
 * preparation of a photographed digit for a model that takes digits; for any other (a model of
 * image folders, another input, a conversion given), the conversion its training images went
 * through: its channel order and resizing. Planar [C, H, W] pixels in 0..1.
 */
export async function prepareFor(model: LoadedModel, input: string | Uint8Array, name = typeof input === 'string' ? input : 'image'): Promise<{ pixels: Float32Array; shape: readonly [number, number, number] }> {
  if (takesDigits(model)) return { pixels: (await prepareImage(input, name)).pixels, shape: [1, 28, 28] };
  const shape = model.input.shape;
  let planes: Uint8Array;
  try {
    planes = await imageToPlanes(input, shape, model.conversion);
  } catch (err) {
    if (err instanceof CnnlabError) throw err;
    throw new InputError(`${name}: not an image sharp can read (${(err as Error).message.split('\n')[0]})`);
  }
  return { pixels: Float32Array.from(planes, (v) => v / 255), shape };
}
