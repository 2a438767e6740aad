// What every cnnlab thread needs before it loads cnnlab's code: from a checkout, tsx (the sources
// are TypeScript); everywhere, `import ... from 'cnnlab'` in an architecture file finding this
// cnnlab where no package of that name is installed beside the file (npx from a clone, a global
// install): an ES-module resolve hook, and the same fallback for files tsx loads as CommonJS.
// Module hooks are per thread: bin/cnnlab.js and bin/thread.mjs both call this.
import Module, { register as registerHooks } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

/** True in a checkout (TypeScript sources beside bin/), false in the published package. */
export const checkout = existsSync(fileURLToPath(new URL('../cli/main.ts', import.meta.url)));

export async function setup() {
  registerHooks('./resolve-cnnlab.mjs', import.meta.url);
  const INDEX = fileURLToPath(new URL(checkout ? '../index.ts' : '../dist/index.js', import.meta.url));
  const resolveFilename = Module._resolveFilename;
  Module._resolveFilename = function (request, ...rest) {
    try {
      return resolveFilename.call(this, request, ...rest);
    } catch (err) {
      if (request === 'cnnlab') return INDEX;
      throw err;
    }
  };
  if (checkout) {
    const { register } = await import('tsx/esm/api');
    register();
  }
}
