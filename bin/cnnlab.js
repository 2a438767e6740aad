#!/usr/bin/env node
// From a checkout the CLI is its TypeScript run through tsx, so no build step comes between an
// edit and a run; from the published package it is the compiled JavaScript in dist/, run by plain
// Node (tsx then only loads architecture files written in TypeScript).
import { checkout, setup } from './hooks.mjs';

await setup();
if (checkout) await import('../cli/main.ts');
else await import('../dist/cli/main.js');
