import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CnnlabError } from '../common/errors.ts';
import { plural } from '../common/text.ts';
import type { DatasetName } from '../datasets/registry.ts';
import { loadDataset } from '../datasets/sources.ts';
import { evaluateInference } from '../inference/evaluate.ts';
import { loadInferenceModel, openModelSession } from '../inference/model.ts';
import { readCheckpoint } from '../graph-builder/artifacts/checkpoint.ts';
import { loadRunArchitecture, readRunConfig, type RunConfig } from './config.ts';
import { CHECKPOINT, fit, type FitOptions, paramsOf } from './fit.ts';
import { createRuntime } from '../runtime/ort.ts';

export interface TransferOptions {
  from: string;
  to: DatasetName;
  finetuneEpochs: number;
  lrScale: number;
  freeze?: 'features';
  limitTrain?: number;
  outDir?: string;
  fit: Pick<FitOptions, 'progress' | 'log' | 'stop'>;
}

export interface TransferRow {
  setting: string;
  accuracy: number;
  loss: number;
  steps: number;
  run?: string;
}

/**
 * Seed 004, questions 14 and 15: the unchanged model on the other dataset, the same weights
 * fine-tuned with a scaled learning rate, and the architecture trained from scratch for the
 * same number of steps (same recipe, same normalisation), side by side.
 */
export async function transfer(o: TransferOptions): Promise<TransferRow[]> {
  const configPath = join(o.from, 'config.json');
  if (!existsSync(configPath) || !existsSync(join(o.from, CHECKPOINT))) throw new CnnlabError(`--from ${o.from}: not a run folder (config.json and ${CHECKPOINT} expected)`, 2);
  const source = await readRunConfig(o.from);
  const model = loadInferenceModel(o.from);
  const arch = await loadRunArchitecture(source);
  const data = await loadDataset(o.to);
  if (data.info.classes.length !== model.classes.length) throw new CnnlabError(`--to ${o.to}: has ${data.info.classes.length} classes; ${o.from} scores ${model.classes.length} (transfer moves a model between datasets with the same number of classes)`, 2);
  const rt = await createRuntime({ ep: source.ep === 'wasm' ? 'wasm' : 'cpu', threads: source.threads });
  const session = await openModelSession(rt, model);
  const zero = await evaluateInference(rt, session, model, data.test);
  await session.release();
  const rows: TransferRow[] = [{ setting: `zero-shot: ${model.path} (trained on ${source.dataset}) on ${o.to}`, accuracy: zero.accuracy, loss: zero.loss, steps: 0 }];

  const limitTrain = o.limitTrain ?? source.limitTrain;
  const flags = { ...source.flags, dataset: o.to, 'data-dir': undefined, epochs: o.finetuneEpochs, 'limit-train': limitTrain };
  const base: RunConfig = { ...source, dataset: o.to, dataDir: undefined, epochs: o.finetuneEpochs, limitTrain, freeze: o.freeze, flags };
  const out = o.outDir ?? `${o.from}-to-${o.to}`;
  const init = paramsOf(readCheckpoint(join(o.from, CHECKPOINT)).tensors, arch);
  const tuned = await fit({ ...base, lr: source.lr * o.lrScale, flags: { ...flags, lr: source.lr * o.lrScale } }, { ...o.fit, runDir: `${out}/finetune`, resume: false, init });
  const scratch = await fit({ ...base, freeze: undefined }, { ...o.fit, runDir: `${out}/scratch`, resume: false });
  const last = (r: Awaited<ReturnType<typeof fit>>) => r.epochs[r.epochs.length - 1];
  rows.push({
    setting: `fine-tuned: lr x${o.lrScale} (${+(source.lr * o.lrScale).toPrecision(3)})${o.freeze ? ', features frozen' : ''}, ${plural(o.finetuneEpochs, 'epoch')}`,
    accuracy: last(tuned).testAcc,
    loss: last(tuned).testLoss,
    steps: last(tuned).step,
    run: `${out}/finetune`,
  });
  rows.push({ setting: `from scratch: lr ${source.lr}, ${plural(o.finetuneEpochs, 'epoch')}`, accuracy: last(scratch).testAcc, loss: last(scratch).testLoss, steps: last(scratch).step, run: `${out}/scratch` });
  return rows;
}

export function transferTable(rows: TransferRow[]): string {
  const lines = ['| setting | test accuracy | test loss | training steps |', '|---|---|---|---|'];
  for (const r of rows) lines.push(`| ${r.setting} | ${(100 * r.accuracy).toFixed(2)}% | ${r.loss.toFixed(4)} | ${r.steps} |`);
  return lines.join('\n');
}
