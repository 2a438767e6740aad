/**
 * predict's accuracy on the photo-like corpus the tests make (test/helpers/photo-corpus.ts): 10
 * digits x 6 kinds x `--seeds` variations. Run: npx tsx bench/photo-predict.ts RUN_OR_MODEL [--seeds 5]
 */
import { loadInferenceModel, openModelSession } from '../inference/model.ts';
import { predictPixels } from '../inference/predict.ts';
import { prepareImage } from '../inference/preprocess.ts';
import { createRuntime } from '../runtime/ort.ts';
import { PHOTO_KINDS, photo } from '../test/helpers/photo-corpus.ts';

const target = process.argv[2];
const at = process.argv.indexOf('--seeds');
const seeds = at > 0 ? Number(process.argv[at + 1]) : 5;
const model = loadInferenceModel(target);
const rt = await createRuntime({ ep: 'cpu' });
const session = await openModelSession(rt, model);
let all = 0;
for (const [k, kind] of PHOTO_KINDS.entries()) {
  let right = 0;
  for (let s = 0; s < seeds; s++) {
    for (let digit = 0; digit < 10; digit++) {
      const { pixels } = await prepareImage(await photo(digit, kind, 1000 * s + 100 * k + digit), `${kind} ${digit}`);
      if ((await predictPixels(rt, session, model, pixels, 1))[0].label === digit) right++;
    }
  }
  all += right;
  console.log(`${kind.padEnd(22)} ${right}/${10 * seeds}`);
}
console.log(`all ${all}/${60 * seeds} = ${((100 * all) / (60 * seeds)).toFixed(1)}% (${model.path})`);
