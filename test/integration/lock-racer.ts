/**
 * Child process for the lock race test: at each scheduled instant (`startAt + round × roundMs`) it
 * tries to take the ingest lock of `dataDir` without waiting; the one that gets it holds it for 60%
 * of the round, releases it and prints `got <round> <held from ms> <held until ms>` (wall clock,
 * read after the lock was taken and before it is released: inside the real holding time).
 * A racer that starts late (a loaded machine) tries its past rounds at once, possibly after that
 * round's holder released: that is a second, later holder of the round, not a double hold.
 * Usage: node --import tsx lock-racer.ts DATA_DIR START_AT_MS ROUND_MS ROUNDS
 */
import { acquireLock } from '../../src/core/lock.ts';

const [dataDir, startAtArg, roundArg, roundsArg] = process.argv.slice(2);
const startAt = Number(startAtArg);
const roundMs = Number(roundArg);
const rounds = Number(roundsArg);

/** Share of a round the winner holds the lock. */
const HOLD_SHARE = 0.6;

for (let round = 0; round < rounds; round++) {
  const at = startAt + round * roundMs;
  // Sleep until just before the instant, then spin so every racer starts within microseconds.
  const sleep = at - Date.now() - 5;
  if (sleep > 0) await new Promise((r) => setTimeout(r, sleep));
  while (Date.now() < at) {
    // spin
  }
  try {
    const lock = await acquireLock(dataDir!, 'ingest', 'racer', 0);
    const from = Date.now();
    await new Promise((r) => setTimeout(r, roundMs * HOLD_SHARE));
    const until = Date.now();
    lock.release();
    process.stdout.write(`got ${round} ${from} ${until}\n`);
  } catch {
    // refused: someone else holds it
  }
}
