/**
 * Admission control for the CPU-bound part of an answer (features, retrieval, evidence and a local
 * extractive "generation"): at most `limit` answers run it at once, the others wait their turn in
 * arrival order. Under a saturated CPU (many clients, an ingest sharing the cores) every stage of an
 * answer otherwise queues separately (the embedding workers, the reader thread, the event loop) and
 * the unlucky ones pile up seconds; one FIFO turns that into one wait per answer.
 */
import { CancelledError } from '../core/errors.ts';

export class FifoGate {
  private running = 0;
  private readonly waiting: Array<{ go: () => void }> = [];

  /** @param limit answers admitted at once (≥ 1). */
  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`gate limit must be a positive integer, got ${limit}`);
  }

  /** Answers admitted now. */
  active(): number {
    return this.running;
  }

  /** Answers waiting for a turn. */
  depth(): number {
    return this.waiting.length;
  }

  /**
   * Waits for a turn (FIFO); resolves with the function that ends it (call it exactly once; extra
   * calls are ignored).
   * @throws CancelledError when `signal` aborts while waiting (the place in line is given up).
   */
  async enter(signal?: AbortSignal): Promise<() => void> {
    if (signal?.aborted) throw new CancelledError('request cancelled before it was admitted');
    if (this.running < this.limit && this.waiting.length === 0) {
      this.running++;
      return this.leaver();
    }
    await new Promise<void>((resolve, reject) => {
      const entry = {
        go: () => {
          signal?.removeEventListener('abort', onAbort);
          resolve();
        },
      };
      const onAbort = () => {
        const i = this.waiting.indexOf(entry);
        if (i !== -1) this.waiting.splice(i, 1);
        reject(new CancelledError('request cancelled while waiting to be admitted'));
      };
      signal?.addEventListener('abort', onAbort, { once: true });
      this.waiting.push(entry);
    });
    // The slot was handed over by the leaver (running was not decremented for it).
    return this.leaver();
  }

  private leaver(): () => void {
    let left = false;
    return () => {
      if (left) return;
      left = true;
      const next = this.waiting.shift();
      if (next) next.go();
      else this.running--;
    };
  }
}
