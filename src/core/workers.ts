import { Worker } from 'node:worker_threads';

/**
 * Starts a worker thread running the module at `entry` (a file URL of a .ts or .js module, usually
 * `new URL('./x-worker.ts', import.meta.url)`), with `data` as its `workerData.data`.
 */
export function startWorker(entry: URL, data: unknown): Worker {
  return new Worker(new URL('./worker-boot.mjs', import.meta.url), {
    workerData: { entry: entry.href, data },
  });
}
