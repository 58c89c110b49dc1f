/** The ingest progress display: a cli-progress bar on a terminal, summary lines elsewhere. */
import { Writable } from 'node:stream';
import { describe, expect, it } from 'vitest';
import { etaSeconds, formatDuration, PROGRESS_LINE_MS, progressDisplay, progressLine } from '../../../src/commands/ingest-progress.ts';

function sink(isTTY: boolean): Writable & { text: () => string } {
  let text = '';
  const w = new Writable({
    write(chunk, _enc, cb) {
      text += String(chunk);
      cb();
    },
  }) as Writable & { text: () => string; isTTY?: boolean; columns?: number; cursorTo?: unknown; clearLine?: unknown; moveCursor?: unknown };
  if (isTTY) {
    w.isTTY = true;
    w.columns = 200;
    w.cursorTo = (_x: number, _y?: number, cb?: () => void) => (cb?.(), true);
    w.clearLine = (_d: number, cb?: () => void) => (cb?.(), true);
    w.moveCursor = (_x: number, _y: number, cb?: () => void) => (cb?.(), true);
  }
  w.text = () => text;
  return w;
}

describe('progress numbers', () => {
  it('ETA from the pace so far; durations read like people write them', () => {
    expect(etaSeconds({ filesDone: 0, filesTotal: 10, filesFailed: 0, chunksEmbedded: 0, elapsedMs: 500 })).toBeNull();
    expect(etaSeconds({ filesDone: 25, filesTotal: 100, filesFailed: 0, chunksEmbedded: 0, elapsedMs: 10_000 })).toBe(30);
    expect(formatDuration(12.4)).toBe('12 s');
    expect(formatDuration(185)).toBe('3 min 05 s');
    expect(formatDuration(3720)).toBe('1 h 02 min');
    expect(progressLine({ filesDone: 120, filesTotal: 400, filesFailed: 2, chunksEmbedded: 900, elapsedMs: 12_000 })).toBe(
      'ingest: 120/400 files (30%), 2 failed, 900 chunks embedded, ETA 28 s',
    );
  });
});

describe('progressDisplay', () => {
  it('not a terminal: one summary line per PROGRESS_LINE_MS, none before', () => {
    let t = 1_000_000;
    const out = sink(false);
    const d = progressDisplay(out, false, 10, () => t);
    t += 1000;
    d.update({ filesDone: 1, filesFailed: 0, chunksEmbedded: 3 });
    expect(out.text()).toBe('');
    t += PROGRESS_LINE_MS;
    d.update({ filesDone: 5, filesFailed: 1, chunksEmbedded: 30 });
    t += 100;
    d.update({ filesDone: 6, filesFailed: 1, chunksEmbedded: 33 });
    d.stop();
    expect(out.text().trim().split('\n')).toEqual(['ingest: 5/10 files (50%), 1 failed, 30 chunks embedded, ETA 6 s']);
  });

  it('a terminal: a bar with the total, the percentage and the ETA, cleared at the end', async () => {
    const out = sink(true);
    const d = progressDisplay(out, true, 8);
    d.update({ filesDone: 2, filesFailed: 0, chunksEmbedded: 12 });
    await new Promise((r) => setTimeout(r, 250));
    d.update({ filesDone: 4, filesFailed: 1, chunksEmbedded: 20 });
    await new Promise((r) => setTimeout(r, 250));
    const shown = out.text();
    d.stop();
    expect(shown).toMatch(/ingest \|[█░]+\| 50% \| 4\/8 files \| 1 failed \| 20 chunks embedded \| ETA \d+s/);
  });
});
