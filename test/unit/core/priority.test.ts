import { execFileSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { REPO } from '../../helpers/cli.ts';

describe('lowerCpuPriority', () => {
  it('lowers the process and the worker threads it starts afterwards; never raises it', () => {
    // In a child process: the nice value cannot be raised back, and the test runner must keep its own.
    const script = `
      import os from 'node:os';
      import { Worker } from 'node:worker_threads';
      import { lowerCpuPriority } from './src/core/priority.ts';
      const first = lowerCpuPriority(7);
      const again = lowerCpuPriority(3);
      const w = new Worker("Promise.all([import('node:os'), import('node:worker_threads')]).then(([os, wt]) => wt.parentPort.postMessage(os.default.getPriority()));", { eval: true });
      w.once('message', (inWorker) => { console.log(JSON.stringify({ first, again, inWorker })); w.terminate(); });
    `;
    const out = execFileSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO, encoding: 'utf8' });
    expect(JSON.parse(out.trim())).toEqual({ first: 7, again: 7, inWorker: 7 });
  });
});
