#!/usr/bin/env node
// From a checkout the CLI is its TypeScript run through tsx, so no build step comes between an
// edit and a run; from the published package it is the compiled JavaScript in dist/, run by plain
// Node (tsx then only loads architecture files written in TypeScript).
import Module, { register as registerHooks } from 'node:module';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const checkout = existsSync(fileURLToPath(new URL('../cli/main.ts', import.meta.url)));

// An architecture file's `import ... from 'cnnlab'` finds this cnnlab where no package of that
// name is installed beside the file (npx from a clone, a global install): an ES-module resolve
// hook, and the same fallback for files tsx loads as CommonJS (no "type": "module" beside them).
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
  await import('../cli/main.ts');
} else {
  await import('../dist/cli/main.js');
}
