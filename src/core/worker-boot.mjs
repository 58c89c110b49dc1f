// Worker entry shim: Node 20 workers do not inherit tsx's loader, so a TypeScript worker entry is
// loaded through tsx's API here. Compiled (.js) entries are imported directly.
import { workerData } from 'node:worker_threads';

if (workerData.entry.endsWith('.ts')) {
  const { register } = await import('tsx/esm/api');
  register();
}
await import(workerData.entry);
