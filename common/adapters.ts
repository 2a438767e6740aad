/** Which WebGPU adapters are GPUs: one list for `--ep auto` (runtime/webgpu-adapter.ts) and the page (inference/web/ort.ts). */

export type AdapterKind = 'hardware' | 'software';

/**
 * Adapters that run on the CPU: Mesa's lavapipe (Vulkan name "llvmpipe (LLVM ...)") and softpipe,
 * Google's SwiftShader ("SwiftShader Device (Subzero)", "Google SwiftShader"), Windows' WARP
 * ("Microsoft Basic Render Driver"), and any adapter WebGPU marks as a fallback one.
 */
const SOFTWARE = /llvmpipe|lavapipe|softpipe|swiftshader|microsoft basic render|\bwarp\b|fallback/i;

/** Whether an adapter (by the name its driver or browser gives it) is a GPU or runs on the CPU. */
export function adapterKind(name: string): AdapterKind {
  return SOFTWARE.test(name) ? 'software' : 'hardware';
}
