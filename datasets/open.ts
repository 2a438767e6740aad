import { basename, resolve } from 'node:path';
import { CnnlabError, UsageError } from '../common/errors.ts';
import { folderClasses, isImageFolder, loadImageFolder } from './folder.ts';
import { DATASETS, datasetSpec, FOLDER_PREFIX, type ImageConversion, type ImageShape } from './registry.ts';
import { type Dataset, IDX_SHAPE, loadDataset, type LookupOptions } from './sources.ts';

/** Which data a command reads: `--dataset NAME`, `--data-dir DIR` (IDX files or image folders), or both. */
export interface DataRef {
  dataset?: string;
  dataDir?: string;
}

/** `--data-dir DIR` with train/<class>/ folders, rather than IDX files. */
export function isFolderRef(ref: DataRef): ref is DataRef & { dataDir: string } {
  return ref.dataDir !== undefined && isImageFolder(ref.dataDir);
}

/** The dataset's name: a built-in one, or `folder:<DIR's name>` for an image folder. */
export function datasetName(ref: DataRef, fallback = 'mnist'): string {
  if (isFolderRef(ref)) {
    const name = `${FOLDER_PREFIX}${basename(resolve(ref.dataDir))}`;
    if (ref.dataset !== undefined && ref.dataset !== name) throw new UsageError(`--dataset ${ref.dataset}: --data-dir ${ref.dataDir} is an image folder (train/<class>/...), read as ${name}; leave out --dataset`);
    return name;
  }
  return datasetSpec(ref.dataset ?? fallback).name;
}

/** A run on an image folder that is no longer there. */
function folderGone(ref: DataRef): never {
  throw new CnnlabError(`${ref.dataset}: its image folder ${ref.dataDir ?? '(no --data-dir recorded)'} is not there (train/<class>/ not found)`, 2);
}

/** The class names, without reading any image. */
export function datasetClasses(ref: DataRef, fallback = 'mnist'): readonly string[] {
  if (isFolderRef(ref)) return folderClasses(ref.dataDir);
  if (ref.dataset?.startsWith(FOLDER_PREFIX)) folderGone(ref);
  return datasetSpec(ref.dataset ?? fallback).classes;
}

/** Mean and std where the registry knows them without reading the data (built-in MNIST, Fashion-MNIST). */
export function knownStats(name: string): { mean: number; std: number } | undefined {
  const spec = name in DATASETS ? DATASETS[name as keyof typeof DATASETS] : undefined;
  return spec?.mean !== undefined && spec.std !== undefined ? { mean: spec.mean, std: spec.std } : undefined;
}

/**
 * Opens the data for a model taking `shape` inputs: image folders are converted to it, with
 * `opts.conversion`'s channel order and resizing (and cached); IDX datasets are 1x28x28 grey
 * images, read as they are, and a model taking anything else is one line.
 */
export async function openDataset(ref: DataRef, shape: readonly number[] = IDX_SHAPE, opts: LookupOptions & { warn?: (line: string) => void; conversion?: ImageConversion } = {}): Promise<Dataset> {
  if (isFolderRef(ref)) {
    if (ref.dataset !== undefined && !ref.dataset.startsWith(FOLDER_PREFIX)) datasetName(ref);
    if (shape.length !== 3) throw new CnnlabError(`the model takes [${shape.join(', ')}] inputs; an image folder needs a [C, H, W] image input`, 2);
    return loadImageFolder(ref.dataDir, shape as unknown as ImageShape, { env: opts.env, progress: opts.progress, warn: opts.warn, conversion: opts.conversion });
  }
  if (ref.dataset?.startsWith(FOLDER_PREFIX)) folderGone(ref);
  return loadDataset(datasetSpec(ref.dataset ?? 'mnist').name, { ...opts, dataDir: ref.dataDir });
}
