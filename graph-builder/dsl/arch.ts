import { readFileSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { CnnlabError } from '../../common/errors.ts';
import type { Model } from '../model.ts';
import { LAYER_KINDS, type Layer, layerKind, type Sequential } from './layers.ts';
import { PRESETS, type Recipe, resolvePreset } from './presets.ts';
import { modelFromLayers } from './to-model.ts';

/** A model ready for the graph builder, where it came from and its default recipe. */
export interface Architecture {
  /** Preset id (`partB`, `jhu-net:width=2`) or `file:<name>`. */
  id: string;
  /** The forward graph and its parameters: what every later stage reads. */
  model: Model;
  /** The DSL layers it was built from. */
  layers: Sequential;
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

/** One JSON layer `{ "kind": "conv2d", "inChannels": 1, ... }`, read by its kind's module with the DSL's defaults. */
function layerFromJson(o: unknown, where: string): Layer {
  if (typeof o !== 'object' || o === null || Array.isArray(o)) throw new CnnlabError(`${where}: expected an object with a 'kind'`);
  const j = o as Json;
  const kind = layerKind(j);
  if (!kind) throw new CnnlabError(`${where}: unknown kind ${JSON.stringify(j.kind)}; expected one of ${[...LAYER_KINDS.keys()].join(', ')}`);
  return kind.fromJson({
    num: (k, d) => field(j, k, where, 'number', d) as number,
    bool: (k, d) => field(j, k, where, 'boolean', d) as boolean,
  });
}

function layersFromValue(value: unknown, file: string): { layers: Sequential; recipe?: Partial<Recipe> } {
  const o = (value ?? {}) as Json;
  const layers = Array.isArray(value) ? value : o.layers;
  if (!Array.isArray(layers)) throw new CnnlabError(`${file}: expected { "layers": [...] } or a list of layers`);
  const recipe = !Array.isArray(value) && typeof o.recipe === 'object' ? (o.recipe as Partial<Recipe>) : undefined;
  return { layers: { layers: layers.map((l, i) => layerFromJson(l, `${file}: layer ${i + 1}`)) }, recipe };
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
  const parsed = layersFromValue(value, basename(file));
  const id = `file:${basename(file)}`;
  let model: Model;
  try {
    model = modelFromLayers(parsed.layers, id);
  } catch (err) {
    throw new CnnlabError(`${file}: ${(err as Error).message}`);
  }
  return { id, model, layers: parsed.layers, recipe: { ...FILE_RECIPE, ...parsed.recipe, ...recipe } };
}

/** A preset spelling (`partB`, `mads:filters=64`) or, with `archFile`, a user's file. */
export async function loadArchitecture(spec: string | undefined, archFile?: string, overrides: Record<string, string> = {}): Promise<Architecture> {
  if (archFile) return loadArchFile(archFile);
  if (!spec) throw new CnnlabError('name an architecture (a preset such as partB) or pass --arch-file', 2);
  const r = resolvePreset(spec, overrides);
  return { id: r.id, model: modelFromLayers(r.model, r.id), layers: r.model, recipe: r.preset.recipe };
}
