#!/usr/bin/env node
// The CLI is TypeScript run through tsx, so users never need a build step.
import { register } from 'tsx/esm/api';

register();
await import('../cli/main.ts');
