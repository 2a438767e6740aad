import { readFileSync, statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tsImport } from 'tsx/esm/api';
import { CnnlabError } from '../../common/errors.ts';
import { CARD_KEYS, readModelCard } from '../artifacts/model-card.ts';
import { readOnnxFile } from '../graph/onnx-file.ts';
import { replaceHead } from '../import/head.ts';
import { type ImportOptions, importOnnxModel } from '../import/onnx-model.ts';
import type { Model } from '../model.ts';
import { LAYER_KINDS, type Layer, layerKind, type Sequential } from './layers.ts';
import { PRESETS, type Recipe, resolvePreset } from './presets.ts';
import { modelFromLayers, withClasses } from './to-model.ts';

/** A model ready for the graph builder, where it came from and its default recipe. */
export interface Architecture {
  /** Preset id (`partB`, `jhu-net:width=2`) or `file:<name>`. */
  id: string;
  /** The forward graph and its parameters: what every later stage reads. */
  model: Model;
  /** The DSL layers it was built from (absent for an imported model). */
  layers?: Sequential;
  recipe: Recipe;
  /** What loading did that a run should say (an imported model's replaced head). */
  notes?: string[];
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
  const input = Array.isArray(value) || o.input === undefined ? undefined : o.input;
  if (input !== undefined && !(Array.isArray(input) && input.length === 3 && input.every((d) => typeof d === 'number'))) {
    throw new CnnlabError(`${file}: "input" must be [C, H, W] (e.g. [3, 32, 32]), got ${JSON.stringify(input)}`);
  }
  const seq: Sequential = { layers: layers.map((l, i) => layerFromJson(l, `${file}: layer ${i + 1}`)) };
  if (input) seq.input = input as [number, number, number];
  return { layers: seq, recipe };
}

/**
 * Why a module did not load, in one line: esbuild's syntax errors (`Transform failed with 1
 * error:\n/x/net.ts:4:0: ERROR: Unexpected ";"`) as `/x/net.ts:4:1: Unexpected ";"` (columns
 * counted from 1, as tsc and editors count them), the first of several with how many follow;
 * anything else (an error thrown while the module ran) as its first line.
 */
export function loadFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err);
  const located = [...message.matchAll(/^(.+):(\d+):(\d+): (?:ERROR: )?(.+)$/gm)];
  if (!/^Transform failed/.test(message) || !located.length) return message.split('\n')[0];
  const [, file, line, column, text] = located[0];
  return `${file}:${line}:${Number(column) + 1}: ${text}${located.length > 1 ? ` (and ${located.length - 1} more)` : ''}`;
}

/**
 * Builds the architecture of a DSL model made in code, as if read from an architecture file
 * named `fileName` (`file:<fileName>`, the architecture file recipe), its head made `classes` wide.
 */
export function architectureFromLayers(seq: Sequential, fileName: string, classes?: number): Architecture {
  const id = `file:${fileName}`;
  const layers = classes ? withClasses(seq, classes) : seq;
  let model: Model;
  try {
    model = modelFromLayers(layers, id, classes);
  } catch (err) {
    throw new CnnlabError(`${fileName}: ${(err as Error).message}`, 2);
  }
  return { id, model, layers, recipe: FILE_RECIPE };
}

/**
 * Loads a user's model: a JSON spec, or a TypeScript/JavaScript module whose default export
 * (or `model` export) is a Model built with the DSL, optionally with a `recipe` export.
 */
export async function loadArchFile(file: string, classes?: number): Promise<Architecture> {
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
      // As ES module whatever the folder's package.json says (tsx would load a .ts file outside a
      // "type": "module" package as CommonJS, and its import of cnnlab then fails as a cycle).
      mod = (await tsImport(pathToFileURL(path).href, import.meta.url)) as Json;
    } catch (err) {
      throw new CnnlabError(`--arch-file ${file}: cannot load: ${loadFailure(err)}`);
    }
    // A file loaded as CommonJS arrives wrapped: its exports are the namespace's default.
    const inner = mod.default as Json | undefined;
    if (inner && typeof inner === 'object' && !('layers' in inner) && ('default' in inner || 'model' in inner)) mod = inner;
    value = mod.default ?? mod.model;
    recipe = mod.recipe as Partial<Recipe> | undefined;
    if (value === undefined) throw new CnnlabError(`${file}: export the model as default or as 'model'`);
  } else {
    throw new CnnlabError(`--arch-file ${file}: expected a .json, .ts or .js file`, 2);
  }
  const parsed = layersFromValue(value, basename(file));
  const id = `file:${basename(file)}`;
  const layers = classes ? withClasses(parsed.layers, classes) : parsed.layers;
  let model: Model;
  try {
    model = modelFromLayers(layers, id, classes);
  } catch (err) {
    throw new CnnlabError(`${file}: ${(err as Error).message}`);
  }
  return { id, model, layers, recipe: { ...FILE_RECIPE, ...parsed.recipe, ...recipe } };
}

/**
 * The architecture a cnnlab model's metadata names: a preset id, or the layers an
 * architecture-file model carries; undefined where it names neither.
 */
export function architectureFromMetadata(md: Record<string, string>, file: string): Architecture | undefined {
  const card = readModelCard(md, file);
  const id = card.architecture;
  if (!id) return undefined;
  const classes = card.classes?.length;
  if (card.layers) {
    const parsed = layersFromValue(card.layers, `${file} (metadata ${CARD_KEYS.layers})`);
    return { id, model: modelFromLayers(parsed.layers, id, classes), layers: parsed.layers, recipe: FILE_RECIPE };
  }
  if (id.startsWith('file:') || id.startsWith('onnx:')) return undefined;
  try {
    return presetArchitecture(id, {}, classes);
  } catch {
    return undefined;
  }
}

/** An ONNX model file is at most this large (the largest CNN cnnlab would train is far smaller). */
const MAX_ONNX_BYTES = 512 * 1024 * 1024;

/** The recipe an imported model gets (flags override it): Adam 1e-3, batch 64, 5 epochs, pixels 0..1, no normalisation. */
const IMPORT_RECIPE: Recipe = { ...FILE_RECIPE, batch: 64, normalize: { mean: 0, std: 1 }, inputRange: 1 };

/** What a run asks of an imported model's head: the dataset's class count, and whether to start a fresh head even where the width fits. */
export interface HeadOptions {
  classes?: number;
  newHead?: boolean;
}

/** An ONNX classifier from PyTorch or elsewhere (`--model`); a model cnnlab trained keeps the input preparation its metadata records. */
export function loadModelFile(file: string, opts: ImportOptions & HeadOptions = {}): Architecture {
  let bytes: Uint8Array;
  try {
    const size = statSync(file).size;
    if (size > MAX_ONNX_BYTES) throw new CnnlabError(`--model ${file}: ${size} bytes is over the ${MAX_ONNX_BYTES}-byte limit`, 2);
    bytes = readFileSync(file);
  } catch (err) {
    if (err instanceof CnnlabError) throw err;
    throw new CnnlabError(`--model ${file}: cannot read (${(err as NodeJS.ErrnoException).code ?? 'error'})`, 2);
  }
  const onnxFile = readOnnxFile(file, bytes);
  const imported = importOnnxModel(onnxFile.bytes, file, { ...opts, layout: onnxFile.layout });
  const notes: string[] = [];
  let model = imported;
  if (opts.classes !== undefined && (opts.classes !== imported.classes || opts.newHead)) {
    const replaced = replaceHead(imported, opts.classes);
    model = replaced.model;
    notes.push(replaced.note);
  }
  const recipe = { ...IMPORT_RECIPE };
  const card = readModelCard(model.source!.metadata, file);
  const saved = card.preprocess;
  if (saved) Object.assign(recipe, { normalize: { mean: saved.mean, std: saved.std }, inputRange: saved.range });
  const { channelOrder, resize } = card.image ?? {};
  if (channelOrder || resize) recipe.conversion = { ...(channelOrder ? { channelOrder } : {}), ...(resize ? { resize } : {}) };
  return { id: model.id, model, recipe, notes };
}

/** A preset spelling (`partB`, `mads:filters=64`) or, with `archFile`, a user's file, or with `modelFile`, an ONNX model. */
/** A preset's architecture, its head made `classes` wide where that is given (image folders). */
function presetArchitecture(spec: string, overrides: Record<string, string>, classes?: number): Architecture {
  const r = resolvePreset(spec, overrides);
  const layers = classes ? withClasses(r.model, classes) : r.model;
  return { id: r.id, model: modelFromLayers(layers, r.id, classes), layers, recipe: r.preset.recipe };
}

/**
 * A preset spelling (`partB`, `mads:filters=64`) or, with `archFile`, a user's file, or with
 * `modelFile`, an ONNX model. `classes`: the dataset's class count, which a preset's or file's
 * head is made to fit (an imported model's output is what it is; training checks it).
 */
export async function loadArchitecture(spec: string | undefined, archFile?: string, overrides: Record<string, string> = {}, model?: { file: string } & ImportOptions & HeadOptions, classes?: number): Promise<Architecture> {
  if (model) return loadModelFile(model.file, model);
  if (archFile) return loadArchFile(archFile, classes);
  if (!spec) throw new CnnlabError('name an architecture (a preset such as partB) or pass --arch-file', 2);
  return presetArchitecture(spec, overrides, classes);
}
