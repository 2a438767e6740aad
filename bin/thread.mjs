// A worker thread's entry: the hooks the CLI's thread has (bin/hooks.mjs), then the module named
// in workerData.entry (a URL), which does the thread's work.
import { workerData } from 'node:worker_threads';
import { setup } from './hooks.mjs';

await setup();
await import(workerData.entry);
