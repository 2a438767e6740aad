#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so users never need a build step.
import Module, { register as registerHooks } from 'node:module';
import { fileURLToPath } from 'node:url';
import { register } from 'tsx/esm/api';

// An architecture file's `import ... from 'cnnlab'` finds this cnnlab where no package of that
// name is installed beside the file (npx from a clone, a global install): an ES-module resolve
// hook, and the same fallback for files tsx loads as CommonJS (no "type": "module" beside them).
registerHooks('./resolve-cnnlab.mjs', import.meta.url);
const INDEX = fileURLToPath(new URL('../index.ts', import.meta.url));
const resolveFilename = Module._resolveFilename;
Module._resolveFilename = function (request, ...rest) {
  try {
    return resolveFilename.call(this, request, ...rest);
  } catch (err) {
    if (request === 'cnnlab') return INDEX;
    throw err;
  }
};
register();
await import('../cli/main.ts');
