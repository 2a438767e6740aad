import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { build, type Plugin } from 'esbuild';
import { CnnlabError } from '../common/errors.ts';

/** The page's entry module (inference/web/app.ts); everything it imports is bundled with it. */
const ENTRY = join(import.meta.dirname, 'web', 'app.ts');

/** Where the page loads onnxruntime-web's wasm build from: the server's copy (ORT_FILES in server.ts), not bundled; web/ort.ts loads the WebGPU build (/ort/ort.webgpu.min.mjs) at run time where it is chosen. */
export const ORT_MODULE = '/ort/ort.wasm.min.mjs';

/** `onnxruntime-web` imports (typed by the package) become an import of the served ORT_MODULE. */
const ortFromServer: Plugin = {
  name: 'ort-from-server',
  setup(b) {
    b.onResolve({ filter: /^onnxruntime-web(\/wasm)?$/ }, () => ({ path: ORT_MODULE, external: true }));
  },
};

/**
 * cnnlab's own modules do nothing when imported but define things, so the bundle keeps only what
 * the page uses of them: train-mode.ts's HASH_MODULUS without graph/onnx.ts's protobuf tables
 * (onnx-proto, 250 KB of the 290 KB bundle without this).
 */
const ownModulesArePure: Plugin = {
  name: 'own-modules-are-pure',
  setup(b) {
    b.onResolve({ filter: /^\.\.?\// }, (args) => (args.importer.includes('node_modules') ? undefined : { path: resolve(dirname(args.importer), args.path), sideEffects: false }));
  },
};

/**
 * The demo page's script: inference/web/app.ts and the modules it imports (the checkpoint codec,
 * the step runner's feedsFor, the shape helpers) bundled by esbuild into one ES module for the
 * browser. A module reaching for Node (node:fs, node:crypto, ...) fails the build, naming it.
 */
export async function bundlePage(): Promise<Uint8Array> {
  try {
    const out = await build({ entryPoints: [ENTRY], bundle: true, format: 'esm', platform: 'browser', target: 'es2022', write: false, plugins: [ortFromServer, ownModulesArePure], logLevel: 'silent', legalComments: 'none' });
    return out.outputFiles[0].contents;
  } catch (err) {
    const errors = (err as { errors?: { text: string; location?: { file: string; line: number } | null }[] }).errors ?? [];
    const first = errors[0];
    throw new CnnlabError(`the demo page does not bundle for the browser: ${first ? `${first.location ? `${first.location.file}:${first.location.line}: ` : ''}${first.text}` : (err as Error).message}${errors.length > 1 ? ` (and ${errors.length - 1} more)` : ''}`);
  }
}

let cached: Promise<Uint8Array> | undefined;

/** The bundle the package's build wrote beside the compiled server (scripts/build.mjs); a checkout has none and bundles its sources. */
const PREBUILT = join(import.meta.dirname, 'web', 'app.bundle.js');

/** The page's script: the package's prebuilt bundle, else bundlePage() once per process (about 0.1 s; the page is the same for every model). */
export function pageBundle(): Promise<Uint8Array> {
  cached ??= existsSync(PREBUILT) ? Promise.resolve(new Uint8Array(readFileSync(PREBUILT))) : bundlePage();
  return cached;
}
