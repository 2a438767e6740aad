/** onnxruntime-web (wasm) as the page uses it: loaded from this server (page-bundle.ts maps the import to /ort/). */
import * as ort from 'onnxruntime-web/wasm';
import type { Ort } from '../../runtime/ort.ts';

ort.env.wasm.wasmPaths = '/ort/';
// WebAssembly threads need a cross-origin isolated page (the server sends COOP/COEP).
ort.env.wasm.numThreads = self.crossOriginIsolated ? Math.max(1, Math.min(4, navigator.hardwareConcurrency || 1)) : 1;

export { ort };

/**
 * The module feedsFor (runtime/step-runner.ts) takes: it reads only `Tensor`, which is
 * onnxruntime-common's in onnxruntime-web as in onnxruntime-node (the Node module's type also
 * lists Node-only functions, hence the cast).
 */
export const feedsOrt = ort as unknown as Ort;
