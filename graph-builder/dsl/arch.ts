import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CnnlabError } from '../../common/errors.ts';
import {
  avgPool2d,
  batchNorm2d,
  conv2d,
  dropout,
  flatten,
  globalAvgPool,
  LAYER_KINDS,
  type Layer,
  linear,
  logSoftmax,
  maxPool2d,
  type Model,
  relu,
} from './layers.ts';
import { PRESETS, type Recipe, resolvePreset } from './presets.ts';
import { type Analysis, analyse } from './shapes.ts';

/** A model ready for the graph builder: where it came from, its layers, its default recipe. */
export interface Architecture {
  /** Preset id (`partB`, `jhu-net:width=2`) or `file:<name>`. */
  id: string;
  model: Model;
  analysis: Analysis;
  recipe: Recipe;
}

/** The recipe an architecture file gets when it states none: the NTNU one (Adam 1e-3). */
const FILE_RECIPE: Recipe = { ...PRESETS.partA.recipe, shuffle: true };

type Json = Record<string, unknown>;

function field(o: Json, key: string, where: string, kind: 'number' | 'boolean', fallback?: number | boolean): number | boolean {
  const v = o[key];
  if (v === undefined) {
    if (fallback === undefined) throw new CnnlabError(`${where}: missing field '${key}' (${kind})`);
    return fallback;
  }
  if (typeof v !== kind) throw new CnnlabError(`${where}: field '${key}' must be a ${kind}, got ${JSON.stringify(v)}`);
  return v as number | boolean;
}

/** One JSON layer `{ "kind": "conv2d", "inChannels": 1, ... }`, with the DSL's defaults. */
function layerFromJson(o: unknown, where: string): Layer {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new CnnlabError(`${where}: expected an object with a 'kind'`);
  const j = o as Json;
  const kind = j.kind;
  const n = (k: string, d?: number) => field(j, k, where, 'number', d) as number;
  const bool = (k: string, d: boolean) => field(j, k, where, 'boolean', d) as boolean;
  switch (kind) {
    case 'conv2d':
      return conv2d(n('inChannels'), n('outChannels'), n('kernel'), { stride: n('stride', 1), padding: n('padding', 0), bias: bool('bias', true) });
    case 'maxPool2d':
      return maxPool2d(n('kernel'), n('stride', n('kernel')));
    case 'avgPool2d':
      return avgPool2d(n('kernel'), n('stride', n('kernel')));
    case 'globalAvgPool':
      return globalAvgPool();
    case 'relu':
      return relu();
    case 'dropout':
      return dropout(n('p', 0.5));
    case 'batchNorm2d':
      return batchNorm2d(n('channels'), { eps: n('eps', 1e-5), momentum: n('momentum', 0.1) });
    case 'flatten':
      return flatten();
    case 'linear':
      return linear(n('inFeatures'), n('outFeatures'), { bias: bool('bias', true) });
    case 'logSoftmax':
      return logSoftmax();
    default:
      throw new CnnlabError(`${where}: unknown kind ${JSON.stringify(kind)}; expected one of ${LAYER_KINDS.join(', ')}`);
  }
}

function modelFromValue(value: unknown, file: string): { model: Model; recipe?: Partial<Recipe> } {
  const o = (value ?? {}) as Json;
  const layers = Array.isArray(value) ? value : o.layers;
  if (!Array.isArray(layers)) throw new CnnlabError(`${file}: expected { "layers": [...] } or a list of layers`);
  const model = { layers: layers.map((l, i) => layerFromJson(l, `${file}: layer ${i + 1}`)) };
  const recipe = !Array.isArray(value) && typeof o.recipe === 'object' ? (o.recipe as Partial<Recipe>) : undefined;
  return { model, recipe };
}

/**
 * Loads a user's model: a JSON spec, or a TypeScript/JavaScript module whose default export
 * (or `model` export) is a Model built with the DSL, optionally with a `recipe` export.
 */
export async function loadArchFile(file: string): Promise<Architecture> {
  const path = resolve(file);
  let value: unknown;
  let recipe: Partial<Recipe> | undefined;
  if (/\.json$/i.test(file)) {
    let text: string;
    try {
      text = readFileSync(path, 'utf8');
    } catch (err) {
      throw new CnnlabError(`--arch-file ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 2);
    }
    try {
      value = JSON.parse(text);
    } catch (err) {
      throw new CnnlabError(`${file}: not valid JSON (${(err as Error).message})`);
    }
  } else if (/\.(ts|mts|js|mjs)$/i.test(file)) {
    let mod: Json;
    try {
      mod = (await import(pathToFileURL(path).href)) as Json;
    } catch (err) {
      const msg = (err as Error).message.split('\n')[0];
      throw new CnnlabError(`--arch-file ${file}: cannot load (${msg})`);
    }
    value = mod.default ?? mod.model;
    recipe = mod.recipe as Partial<Recipe> | undefined;
    if (value === undefined) throw new CnnlabError(`${file}: export the model as default or as 'model'`);
  } else {
    throw new CnnlabError(`--arch-file ${file}: expected a .json, .ts or .js file`, 2);
  }
  const parsed = modelFromValue(value, basename(file));
  const model = parsed.model;
  let analysis: Analysis;
  try {
    analysis = analyse(model);
  } catch (err) {
    throw new CnnlabError(`${file}: ${(err as Error).message}`);
  }
  return { id: `file:${basename(file)}`, model, analysis, recipe: { ...FILE_RECIPE, ...parsed.recipe, ...recipe } };
}

/** A preset spelling (`partB`, `mads:filters=64`) or, with `archFile`, a user's file. */
export async function loadArchitecture(spec: string | undefined, archFile?: string, overrides: Record<string, string> = {}): Promise<Architecture> {
  if (archFile) return loadArchFile(archFile);
  if (!spec) throw new CnnlabError('name an architecture (a preset such as partB) or pass --arch-file', 2);
  const r = resolvePreset(spec, overrides);
  return { id: r.id, model: r.model, analysis: analyse(r.model), recipe: r.preset.recipe };
}
